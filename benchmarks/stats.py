"""Bootstrap confidence intervals, paired comparisons and tie groups for scores of seeds x expressions.

Seeds and expressions are crossed: every seed of every method scores the same expressions, and a seed fixes
the data order and initial draws for every method. A score matrix is therefore [seeds, expressions], and one
bootstrap replicate resamples seeds, then expressions (one draw of each, shared by all rows and columns: the
crossed, "pigeonhole" bootstrap). Comparing two methods uses the same replicate on both, so what their seeds
and expressions share cancels. For records without per-expression data the matrix is [seeds, 1] (per-seed
mean), and the bootstrap is over seeds only.

With few seeds the seed level cannot be estimated well: resampling 3 values covers a true mean only about 3
times in 4. With expressions present the crossed bootstrap errs the other way (it counts the seed x
expression noise at both levels), so its intervals are conservative; tests/test_stats.py measures both.

Every replicate is drawn from a fixed seed, so a report built from the same records is byte-identical; the
draws are counts (how often each seed / expression is taken), so a replicate's mean is one matrix product.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
RNG_SEED = 14
_LEVELS = {"seeds": 0, "expressions": 1}


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval (NaN bounds when nothing can be resampled)."""

    value: float
    low: float
    high: float

    @property
    def has_interval(self) -> bool:
        return not (np.isnan(self.low) or np.isnan(self.high))

    def covers(self, x: float) -> bool:
        """True also without an interval: a single value cannot tell anything apart."""
        return not self.has_interval or self.low <= x <= self.high


@dataclass(frozen=True)
class Comparison:
    """Method a against method b on the same seeds and expressions."""

    difference: Estimate  # mean of a minus mean of b
    improvement: Estimate  # probability that a scores higher than b on a random seed and expression (ties: 1/2)
    seeds: int
    expressions: int

    @property
    def separated(self) -> bool:
        """The interval of the difference excludes 0: the gap is unlikely to be noise."""
        return self.difference.has_interval and not self.difference.covers(0.0)


@functools.lru_cache(maxsize=64)
def resample_counts(n: int, level: str, resamples: int = RESAMPLES) -> np.ndarray:
    """[resamples, n] counts of how often each of n units is drawn (n draws with replacement per replicate).

    Fixed per (n, level): every matrix of that shape is resampled alike, and seeds and expressions never
    share draws even when their numbers are equal."""
    rng = np.random.default_rng([RNG_SEED, _LEVELS[level], n])
    draws = rng.integers(0, n, size=(resamples, n))
    offsets = (np.arange(resamples) * n)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=resamples * n).reshape(resamples, n)
    counts.setflags(write=False)
    return counts


def _replicate_sums(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each seed's sum over the drawn expressions in every replicate [seeds, resamples], and the seed draws
    [resamples, seeds]: the two levels of the crossed bootstrap."""
    n_seeds, n_items = scores.shape
    return scores @ resample_counts(n_items, "expressions").T, resample_counts(n_seeds, "seeds")


def _over_drawn_seeds(per_seed: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """[seeds, resamples] per-seed statistics -> [resamples]: their mean over each replicate's drawn seeds."""
    return np.einsum("rs,sr->r", seeds, per_seed) / seeds.shape[1]


def bootstrap_means(scores: np.ndarray) -> np.ndarray:
    """The mean of `scores` [seeds, expressions] in each bootstrap replicate (seeds, then expressions)."""
    scores = _matrix(scores)
    sums, seeds = _replicate_sums(scores)
    return _over_drawn_seeds(sums, seeds) / scores.shape[1]


def _percentile(value: float, replicates: np.ndarray) -> Estimate:
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return Estimate(value, float(low), float(high))


def interval(scores: np.ndarray) -> Estimate:
    """Mean of `scores` [seeds, expressions] with its percentile bootstrap interval."""
    scores = _matrix(scores)
    value = float(scores.mean())
    if scores.size < 2:
        return Estimate(value, np.nan, np.nan)
    return _percentile(value, bootstrap_means(scores))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 1 where the denominator is 0 (an empty union is a correct "nothing")."""
    return np.divide(numerator, denominator, out=np.ones_like(numerator, dtype=np.float64), where=denominator != 0)


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray) -> Estimate:
    """Mean over seeds of each seed's ratio of sums over expressions, with the crossed bootstrap's interval.

    oIoU is such a ratio (total intersection / total union), so it cannot be bootstrapped as a mean of
    per-expression scores: each replicate sums both counts over the same drawn expressions, takes each seed's
    ratio, then averages the drawn seeds, as the point estimate averages the seeds' recorded oIoU."""
    numerator, denominator = _matrix(numerator), _matrix(denominator)
    if numerator.shape != denominator.shape:
        raise ValueError(f"numerator and denominator differ in shape: {numerator.shape} and {denominator.shape}")
    value = float(_ratio(numerator.sum(axis=1), denominator.sum(axis=1)).mean())
    if numerator.size < 2:
        return Estimate(value, np.nan, np.nan)
    (top, seeds), (bottom, _) = _replicate_sums(numerator), _replicate_sums(denominator)
    return _percentile(value, _over_drawn_seeds(_ratio(top, bottom), seeds))


def compare(a: np.ndarray, b: np.ndarray) -> Comparison:
    """a against b, both [seeds, expressions] on the same seeds and expressions in the same order."""
    a, b = _matrix(a), _matrix(b)
    if a.shape != b.shape:
        raise ValueError(f"paired scores must have the same shape, got {a.shape} and {b.shape}")
    wins = (a > b) + 0.5 * (a == b)
    return Comparison(interval(a - b), interval(wins), *a.shape)


def tie_groups(order: Sequence[str], tied: Callable[[str, str], bool]) -> dict[str, int]:
    """Competition ranks of tie groups: `order` is best-first by mean; the best remaining item and every
    remaining item `tied` to it (its difference's interval covers 0) share a rank, then the rest go on from
    the next position (1, 1, 3, ...)."""
    ranks: dict[str, int] = {}
    remaining = list(order)
    while remaining:
        leader, rank = remaining[0], len(ranks) + 1
        group = [leader] + [other for other in remaining[1:] if tied(leader, other)]
        ranks.update(dict.fromkeys(group, rank))
        remaining = [name for name in remaining if name not in ranks]
    return ranks


def _matrix(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"scores must be a non-empty [seeds, expressions] matrix, got shape {scores.shape}")
    return scores
