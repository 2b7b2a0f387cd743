"""The statistics protocol on simulated records whose truth is known: coverage, ties, power, exactness."""

import numpy as np
import pytest

from benchmarks.stats import (
    RESAMPLES,
    bootstrap_means,
    compare,
    interval,
    ratio_interval,
    resample_counts,
    tie_groups,
)

SEEDS, EXPRESSIONS, DATASETS = 3, 300, 100


def simulated_pair(rng: np.random.Generator, difference: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-expression IoU (percent) of two methods under one seed set, shaped like a shapes evaluation: each
    expression's difficulty (shared), each seed's luck (shared: seeds move all methods together), and what
    belongs to one method: its seed x method and expression x method effects and per-(seed, expression) noise.
    The true mean difference is `difference`."""
    item = rng.normal(40, 25, EXPRESSIONS)
    seed = rng.normal(0, 2, (SEEDS, 1))

    def method(shift: float) -> np.ndarray:
        own_item = rng.normal(0, 10, EXPRESSIONS)
        own_item -= own_item.mean()  # the expression x method effect of the population is zero by definition
        return shift + item + own_item + seed + rng.normal(0, 0.7, (SEEDS, 1)) + rng.normal(0, 15, (SEEDS, EXPRESSIONS))

    return method(difference), method(0.0)


def test_the_interval_of_a_known_difference_covers_it_in_at_least_90_of_100_datasets():
    rng = np.random.default_rng(0)
    covered = sum(compare(*simulated_pair(rng, 2.0)).difference.covers(2.0) for _ in range(DATASETS))
    assert covered >= 90, covered


def test_two_methods_from_the_same_distribution_tie_in_at_least_90_of_100_datasets():
    rng = np.random.default_rng(1)
    tied = 0
    for _ in range(DATASETS):
        a, b = simulated_pair(rng, 0.0)
        order = ["a", "b"] if a.mean() >= b.mean() else ["b", "a"]
        scores = {"a": a, "b": b}
        ranks = tie_groups(order, lambda x, y, s=scores: not compare(s[x], s[y]).separated)
        tied += ranks == {"a": 1, "b": 1}
    assert tied >= 90, tied


def test_a_real_gap_separates_so_the_intervals_are_not_simply_wide():
    rng = np.random.default_rng(2)
    separated = sum(compare(*simulated_pair(rng, 6.0)).separated for _ in range(DATASETS))
    assert separated >= 90, separated


def test_vectorised_replicates_equal_explicit_resampling():
    scores = np.random.default_rng(3).normal(size=(4, 7))
    seeds, items = resample_counts(4, "seeds"), resample_counts(7, "expressions")
    means = bootstrap_means(scores)
    assert means.shape == (RESAMPLES,)
    for r in (0, 1, RESAMPLES - 1):
        picked = scores[np.repeat(np.arange(4), seeds[r])][:, np.repeat(np.arange(7), items[r])]
        assert means[r] == pytest.approx(picked.mean(), rel=1e-12)


def test_ratio_interval_resamples_both_counts_alike_and_averages_the_drawn_seeds():
    rng = np.random.default_rng(4)
    union = rng.integers(50, 400, size=(3, 9)).astype(float)
    inter = np.floor(union * rng.uniform(0.0, 1.0, size=union.shape))
    inter[:, 2] = union[:, 2] = 0  # an expression whose prediction and target are both empty
    estimate = ratio_interval(inter, union)
    assert estimate.value == pytest.approx(np.mean(inter.sum(axis=1) / union.sum(axis=1)), rel=1e-12)
    seeds, items = resample_counts(3, "seeds"), resample_counts(9, "expressions")
    replicates = []
    for r in range(RESAMPLES):
        rows, cols = np.repeat(np.arange(3), seeds[r]), np.repeat(np.arange(9), items[r])
        replicates.append(np.mean([inter[s, cols].sum() / union[s, cols].sum() for s in rows]))
    low, high = np.quantile(replicates, [0.025, 0.975])
    assert (estimate.low, estimate.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert estimate.low < estimate.value < estimate.high


def test_ratio_interval_is_not_the_interval_of_per_expression_ratios():
    """A large object weighs more in oIoU than in mIoU: the two estimates and their intervals differ."""
    union = np.array([[1000.0, 10.0, 10.0, 10.0]] * 2)
    inter = np.array([[900.0, 0.0, 0.0, 0.0]] * 2)
    pooled, mean = ratio_interval(inter, union), interval(inter / union)
    assert pooled.value == pytest.approx(900 / 1030)
    assert mean.value == pytest.approx(0.225)
    assert pooled.has_interval and (pooled.low, pooled.high) != (mean.low, mean.high)


def test_ratio_interval_of_a_constant_ratio_is_a_point_and_of_one_value_is_none():
    union = np.arange(1.0, 13.0).reshape(3, 4)
    constant = ratio_interval(0.5 * union, union)
    assert (constant.value, constant.low, constant.high) == pytest.approx((0.5, 0.5, 0.5))
    assert not ratio_interval(np.array([[3.0]]), np.array([[4.0]])).has_interval
    with pytest.raises(ValueError, match="differ in shape"):
        ratio_interval(union, union[:, :2])


def test_draws_are_fixed_and_differ_between_levels():
    assert interval(np.arange(12.0).reshape(3, 4)) == interval(np.arange(12.0).reshape(3, 4))
    assert not np.array_equal(resample_counts(5, "seeds"), resample_counts(5, "expressions"))


def test_probability_of_improvement_counts_wins_and_half_ties():
    a = np.array([[3.0, 1.0, 2.0, 5.0]])
    b = np.array([[1.0, 1.0, 4.0, 0.0]])
    result = compare(a, b)
    assert result.improvement.value == (1 + 0.5 + 0 + 1) / 4
    assert result.difference.value == pytest.approx(np.mean(a - b))


def test_a_single_value_has_no_interval_and_ties_everything():
    single = interval(np.array([[37.0]]))
    assert single.value == 37.0 and not single.has_interval and single.covers(99.0)
    assert not compare(np.array([[40.0]]), np.array([[30.0]])).separated


def test_tie_groups_rank_like_a_competition():
    separated = {("a", "c"), ("a", "d"), ("c", "d"), ("b", "d")}
    ranks = tie_groups(["a", "b", "c", "d"], lambda x, y: (x, y) not in separated)
    assert ranks == {"a": 1, "b": 1, "c": 3, "d": 4}
