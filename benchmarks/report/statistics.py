"""The statistics protocol on report rows: intervals, tie groups and paired comparisons per split.

A row (a leaderboard method, or an ablation table's knob value) stands for its ok runs at the chosen
learning rate. Its scores are per-seed, per-expression IoU where every run kept them, else per-seed mIoU
(older records): the bootstrap is then over seeds only, and the page says so.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmarks.per_expression import PerExpression
from benchmarks.stats import RESAMPLES, Comparison, Estimate, compare, interval, ratio_interval, tie_groups

METHOD_NOTE = (f"95% intervals come from a bootstrap ({RESAMPLES} resamples, fixed seed) over seeds, then over "
               "expressions, shared between the methods compared: a seed fixes the data order and initial draws "
               "for every method, and every method scores the same expressions.")
SEEDS_ONLY_NOTE = ("their intervals resample seeds only, and with 3 seeds such an interval covers the true mean "
                   "only about 3 times in 4 (tests/test_stats.py): read them as optimistic, and nothing is bold "
                   "on them")


@dataclass(frozen=True)
class Scores:
    """One row's scores on one split, in percent."""

    seeds: tuple[int, ...]
    seed_means: np.ndarray  # [seeds]: each run's recorded mIoU
    items: np.ndarray | None  # dataset indices of the expressions, sorted; None without per-expression data
    matrix: np.ndarray | None  # [seeds, items]: per-expression IoU

    @property
    def per_expression(self) -> bool:
        return self.items is not None

    def seeds_only(self, seeds: list[int]) -> np.ndarray:
        return self.seed_means[[self.seeds.index(s) for s in seeds], None]


@dataclass(frozen=True, eq=False)  # holds frames and arrays: identity, not value, equality
class SplitRuns:
    """A row's ok runs on one split, selected once and shared by every statistic of that split."""

    split: str
    ok: pd.DataFrame  # the newest ok record per seed, by seed
    items: np.ndarray | None  # the expressions every run scored (sorted); None when a run kept none
    columns: list[tuple[PerExpression, np.ndarray]] | None  # per run: its table, and where `items` sit in it

    @property
    def per_expression(self) -> bool:
        return self.columns is not None


def split_runs(group: pd.DataFrame, split: str) -> SplitRuns | None:
    """The ok runs of one row on `split` with their shared expressions, or None without an ok run."""
    ok = _ok_runs(group, f"{split}/mIoU")
    if ok is None:
        return None
    tables = _tables(ok, split)
    items, columns = tables if tables is not None else (None, None)
    return SplitRuns(split, ok, items, columns)


def selected_runs(groups: Mapping[str, pd.DataFrame], split: str) -> dict[str, SplitRuns]:
    """label -> that row's runs on `split`, for the rows (`groups`: label -> runs) with an ok run there."""
    return {label: runs for label, group in groups.items() if (runs := split_runs(group, split)) is not None}


def row_scores(runs: SplitRuns) -> Scores:
    """The scores of a row's selected runs on their split."""
    seeds = tuple(int(s) for s in runs.ok["seed"])
    means = runs.ok[f"{runs.split}/mIoU"].to_numpy(dtype=np.float64)
    if not runs.per_expression:
        return Scores(seeds, means, None, None)
    return Scores(seeds, means, runs.items, np.stack([100 * t.iou[c] for t, c in runs.columns]))


def metric_interval(runs: SplitRuns, metric: str) -> Estimate | None:
    """The 95% interval of a row's oIoU or `prec@t` on its split, from the same runs and bootstrap as its mIoU:
    oIoU as a ratio of summed counts (stats.ratio_interval), Prec@t as the mean of `IoU > t` indicators; the
    seeds' recorded values (seeds only) for records without per-expression data. None where a run lacks it."""
    column = f"{runs.split}/{metric}"
    if column not in runs.ok or runs.ok[column].isna().any():
        return None
    if not runs.per_expression:
        return interval(runs.ok[column].to_numpy(dtype=np.float64)[:, None])
    if metric == "oIoU":
        return ratio_interval(100 * np.stack([t.intersection[c] for t, c in runs.columns]),
                              np.stack([t.union[c] for t, c in runs.columns]))
    threshold = float(metric.removeprefix("prec@"))
    return interval(np.stack([100 * (t.iou[c] > threshold) for t, c in runs.columns]))


def metric_columns(selected: Mapping[str, Mapping[str, SplitRuns]], label: str,
                   metrics: list[tuple[str, str]]) -> pd.DataFrame:
    """Per row label (column `label`): `{split}/{metric}:low` and `:high` for each (split, metric) in `metrics`,
    from `selected` (split -> selected_runs), the runs the split's SplitStats were computed on."""
    splits = list(dict.fromkeys(split for split, _ in metrics))
    rows = []
    for name in dict.fromkeys(name for split in splits for name in selected[split]):
        row: dict[str, object] = {label: name}
        for split, metric in metrics:
            runs = selected[split].get(name)
            estimate = None if runs is None else metric_interval(runs, metric)
            if estimate is not None:
                row[f"{split}/{metric}:low"], row[f"{split}/{metric}:high"] = estimate.low, estimate.high
        rows.append(row)
    return pd.DataFrame(rows, columns=[label] if not rows else None)


def _ok_runs(group: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """The ok runs with `metric`, the newest record per seed, by seed; None without any."""
    if metric not in group:
        return None
    ok = group[(group["status"] == "ok") & group[metric].notna()]
    ok = ok.sort_values(["started_at", "path"]).drop_duplicates("seed", keep="last").sort_values("seed")
    return None if ok.empty else ok


def _tables(ok: pd.DataFrame, split: str) -> tuple[np.ndarray, list[tuple[PerExpression, np.ndarray]]] | None:
    """The expressions every run scored (sorted dataset indices) and each run's per-expression table with the
    positions of those expressions in it; None when a run kept no per-expression data."""
    column = f"{split}/per_expression"
    if column not in ok or ok[column].isna().any():
        return None
    tables = list(ok[column])
    items = functools.reduce(np.intersect1d, [t.index for t in tables])
    return items, [(t, _positions(t.index, items)) for t in tables]


def _positions(index: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of `wanted` (all present in `index`) sits in `index`."""
    order = np.argsort(index, kind="stable")
    return order[np.searchsorted(index, wanted, sorter=order)]


def paired(a: Scores, b: Scores) -> tuple[np.ndarray, np.ndarray] | None:
    """Both rows' scores on the seeds (and expressions) they share; per-seed means when either lacks
    per-expression data; None when they share no seed."""
    seeds = sorted(set(a.seeds) & set(b.seeds))
    if not seeds:
        return None
    if a.per_expression and b.per_expression:
        items = np.intersect1d(a.items, b.items)
        if len(items):
            rows_a, rows_b = [a.seeds.index(s) for s in seeds], [b.seeds.index(s) for s in seeds]
            return (a.matrix[rows_a][:, _positions(a.items, items)], b.matrix[rows_b][:, _positions(b.items, items)])
    return a.seeds_only(seeds), b.seeds_only(seeds)


@dataclass
class SplitStats:
    """Intervals, comparisons and tie groups of a set of rows on one split."""

    split: str
    scores: dict[str, Scores]
    unranked: frozenset[str] = frozenset()  # rows shown with their intervals but not ranked or compared
    order: list[str] = field(init=False)  # the ranked labels, best mean first
    intervals: dict[str, Estimate] = field(init=False)
    ranks: dict[str, int] = field(init=False)
    _compared: dict[tuple[str, str], Comparison | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.intervals = {label: interval(s.matrix if s.per_expression else s.seed_means[:, None])
                          for label, s in self.scores.items()}
        self.order = sorted(set(self.scores) - self.unranked, key=lambda label: (-self.intervals[label].value, label))
        self.ranks = tie_groups(self.order, lambda a, b: not self.separated(a, b))

    def comparison(self, a: str, b: str) -> Comparison | None:
        if (a, b) not in self._compared:
            pair = paired(self.scores[a], self.scores[b])
            self._compared[(a, b)] = None if pair is None else compare(*pair)
        return self._compared[(a, b)]

    def separated(self, a: str, b: str) -> bool:
        result = self.comparison(a, b)
        return result is not None and result.separated

    def significantly_best(self, label: str) -> bool:
        """Alone in the first tie group of at least two rows: its difference to every other row has an interval
        that excludes 0. Never on seeds-only intervals: with 3 seeds they cover the truth about 3 times in 4."""
        alone = len(self.ranks) > 1 and self.ranks.get(label) == 1 and list(self.ranks.values()).count(1) == 1
        return alone and not self.seeds_only()

    def seeds_only(self) -> list[str]:
        return sorted(label for label, s in self.scores.items() if not s.per_expression)

    def columns(self) -> pd.DataFrame:
        """Per label: `{split}/mIoU:low`, `:high`, `:best` (bold) and `{split}/rank` (NaN: not ranked)."""
        key = f"{self.split}/mIoU"
        return pd.DataFrame([{"label": label, f"{key}:low": self.intervals[label].low,
                              f"{key}:high": self.intervals[label].high,
                              f"{key}:best": self.significantly_best(label),
                              f"{self.split}/rank": self.ranks.get(label, np.nan)}
                             for label in self.order + sorted(self.unranked & set(self.scores))])


def split_stats(groups: Mapping[str, pd.DataFrame], split: str, unranked: frozenset[str] = frozenset()) -> SplitStats:
    """Statistics of the rows `groups` (label -> that row's runs) that have an ok run on `split`."""
    return stats_of(selected_runs(groups, split), split, unranked)


def stats_of(selected: Mapping[str, SplitRuns], split: str, unranked: frozenset[str] = frozenset()) -> SplitStats:
    """Statistics of rows whose runs on `split` are already selected (selected_runs); `unranked` rows get
    intervals only."""
    return SplitStats(split, {label: row_scores(runs) for label, runs in selected.items()}, unranked)


def annotate(rows: pd.DataFrame, label: str, stats: list[SplitStats]) -> pd.DataFrame:
    """`rows` with each split's interval, bold flag and rank joined on the `label` column."""
    for one in stats:
        columns = one.columns()
        if len(columns):
            rows = rows.merge(columns.rename(columns={"label": label}), on=label, how="left")
    return rows


def seeds_only_labels(stats: list[SplitStats]) -> list[str]:
    """The rows whose intervals rest on seeds only (no per-expression data) on any of these splits, sorted."""
    return sorted({label for one in stats for label in one.seeds_only()})


def basis_note(stats: list[SplitStats], what: str) -> str:
    """What the intervals rest on, naming the rows whose records lack per-expression data."""
    older = seeds_only_labels(stats)
    if not older:
        return METHOD_NOTE
    if len(older) == len({label for one in stats for label in one.scores}):
        return (f"{METHOD_NOTE} These records predate per-expression results (they keep only each split's "
                f"aggregates), so {SEEDS_ONLY_NOTE}.")
    return (f"{METHOD_NOTE} The records of {what} {', '.join(older)} predate per-expression results, so "
            f"{SEEDS_ONLY_NOTE}.")


def comparisons_table(stats: SplitStats) -> pd.DataFrame:
    """Per row in rank order: paired difference and probability of improvement against the leader and
    against the row ranked just above it, and seeds won against the leader."""
    leader, rows = stats.order[0], []
    for position, label in enumerate(stats.order[1:], start=1):
        row = {"label": label, "rank": stats.ranks[label]}
        for prefix, other in (("leader", leader), ("above", stats.order[position - 1])):
            result = stats.comparison(label, other)
            row[f"{prefix}:other"] = other
            if result is None:
                continue
            row.update({f"{prefix}:diff": result.difference.value, f"{prefix}:diff:low": result.difference.low,
                        f"{prefix}:diff:high": result.difference.high, f"{prefix}:poi": result.improvement.value,
                        f"{prefix}:seeds": result.seeds, f"{prefix}:expressions": result.expressions})
        pair = paired(stats.scores[label], stats.scores[leader])
        if pair is not None:
            wins = (pair[0].mean(axis=1) > pair[1].mean(axis=1)).sum()
            row["wins"] = f"{int(wins)} of {len(pair[0])}"
        rows.append(row)
    return pd.DataFrame(rows)
