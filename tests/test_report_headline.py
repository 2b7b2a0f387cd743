"""The leaderboard's opening sentences: tiers, resolved pairs and the comparison with ETRIS's Table 2 order."""

import numpy as np
import pytest

from benchmarks.report.headline import sentences, tiers
from benchmarks.report.statistics import Scores, SplitStats


def stats_of(means: dict[str, float], noise: float = 0.5, seed: int = 0) -> SplitStats:
    """Three seeds x 400 expressions per method; methods share the per-expression difficulty (as in a suite)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 20, size=(1, 400))
    scores = {}
    for label, mean in means.items():
        matrix = mean + difficulty + rng.normal(0, noise, size=(3, 400))
        scores[label] = Scores((0, 1, 2), matrix.mean(axis=1), np.arange(400), matrix)
    return SplitStats("val", scores)


@pytest.mark.parametrize("seed", range(5))
def test_far_apart_methods_are_separate_tiers_and_identical_ones_share_one(seed):
    stats = stats_of({"full": 60.0, "bridger": 60.0, "frozen": 40.0}, seed=seed)
    assert [sorted(t) for t in tiers(stats)] == [["bridger", "full"], ["frozen"]]
    first, second, third = sentences(stats)
    assert "fall into 2 tiers" in first
    assert second.startswith("2 of the 3 method pairs are resolved (per-expression")
    assert "not resolved: " in second and ("full vs bridger" in second or "bridger vs full" in second)


def test_the_paper_comparison_counts_pairs_in_order_and_reversed():
    stats = stats_of({"full": 70.0, "bridger": 60.0, "lora": 50.0, "frozen": 40.0, "ia3": 45.0})
    third = sentences(stats)[2]
    assert "here the same methods rank full > bridger > lora > frozen" in third
    assert "of their 6 pairs, 5 (5 resolved) follow the paper's order and 1 (1 resolved) are reversed" in third
    assert "(full above bridger)" in third


def test_one_method_has_no_opening():
    assert sentences(stats_of({"full": 50.0})) == []
