"""The paper page's measured cells: a row's mean with its 95% interval, computed by the leaderboard's own
statistics (benchmarks.report.statistics) on the same runs, so a cell never disagrees with the leaderboard.

A row is a (method, variant) of one suite at the learning rate its search chose. Where a suite's runs select
their checkpoint as ETRIS does (`selected:SPLIT/mIoU`), the page compares that checkpoint with the paper;
those scores are per seed only, so their intervals resample seeds.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from benchmarks.report.markdown import Column
from benchmarks.report.runs import current_budget, leaderboard_runs, seeds_pending, seeds_to_go, status_counts
from benchmarks.report.statistics import (
    SEEDS_ONLY_NOTE,
    SplitRuns,
    SplitStats,
    metric_interval,
    seeds_only_labels,
    split_stats,
)
from benchmarks.stats import Estimate

NOT_RUN = "not run"
NO_SEED_SPREAD = "1 seed: no seed spread"
EXPRESSIONS_ONLY = "1 seed: interval over expressions only, no seed spread"


def chosen_runs(runs: pd.DataFrame, suite: str) -> pd.DataFrame:
    """The suite's runs the leaderboard would use: current budget, suite seeds, chosen learning rate."""
    mine = runs[runs["suite"] == suite] if len(runs) else runs
    return leaderboard_runs(current_budget(mine)) if len(mine) else pd.DataFrame()


def etris_split(chosen: pd.DataFrame, split: str) -> str:
    """The split name whose scores compare with ETRIS's: `selected:SPLIT` where the runs selected a
    checkpoint by ETRIS's rule, else SPLIT (the last step, as leaderboards show)."""
    column = f"selected:{split}/mIoU"
    return f"selected:{split}" if column in chosen and chosen[column].notna().any() else split


def row_groups(chosen: pd.DataFrame, rows: Mapping[str, tuple[str, str]]) -> dict[str, pd.DataFrame]:
    """label -> that row's runs, for rows given as label -> (method, variant); empty frames for rows not run."""
    if chosen.empty:
        return {label: pd.DataFrame() for label in rows}
    return {label: chosen[(chosen["method"] == method) & (chosen["variant"] == variant)]
            for label, (method, variant) in rows.items()}


def row_stats(groups: Mapping[str, pd.DataFrame], chosen: pd.DataFrame, split: str) -> SplitStats:
    """The leaderboard's intervals and paired comparisons of these rows on `split` (ETRIS's checkpoint where
    selected); a row with suite seeds still to run is not compared, as on the leaderboard."""
    return split_stats({label: group for label, group in groups.items() if len(group)},
                       etris_split(chosen, split), frozenset(seeds_pending(groups)))


def cell(stats: SplitStats, label: str, group: pd.DataFrame) -> str:
    """'mean [low, high]' (the leaderboard's 95% interval), saying so where one seed gives no seed spread;
    `not run`, or why no run counts."""
    if group.empty:
        return NOT_RUN
    if label not in stats.scores:
        return f"no ok run ({status_counts(group['status'])})"
    estimate = stats.intervals[label]
    shown = _shown(estimate)
    pending = seeds_pending({label: group}).get(label)
    if pending:
        shown += f" ({seeds_to_go(pending)}: not compared yet)"
    elif len(stats.scores[label].seeds) == 1:
        shown += f" ({EXPRESSIONS_ONLY if estimate.has_interval else NO_SEED_SPREAD})"
    return shown


def metric_cell(runs: SplitRuns | None, metric: str) -> str:
    """A row's `metric` (oIoU, prec@t) as 'mean [low, high]' from the runs its mIoU cell stands on (same seeds,
    same expressions, same bootstrap); `–` where the records hold no such value."""
    estimate = None if runs is None else metric_interval(runs, metric)
    return "–" if estimate is None else _shown(estimate)


def _shown(estimate: Estimate) -> str:
    return Column("v", "", interval=True).text(pd.Series({"v": estimate.value, "v:low": estimate.low,
                                                          "v:high": estimate.high}))


def seeds_only_note(stats: list[SplitStats]) -> list[str]:
    """A line naming the rows whose intervals resample seeds only (no per-expression data), if any."""
    older = seeds_only_labels(stats)
    if not older:
        return []
    return ["Rows without per-expression scores (older records, or ETRIS's selected checkpoint): "
            + ", ".join(f'"{label}"' for label in older) + f"; {SEEDS_ONLY_NOTE}.", ""]
