"""Whether a shapes-analog table points the paper's way: one generated sentence per table.

Each analog table argues the standing of one row (`PaperTable.focal`: ETRIS among the PET methods, width 64
among the widths, the missing hierarchical alignment among the components). The paper's direction is read
off its numbers: the focal row above or below each other row. Measured, each pair is the leaderboard's
paired comparison (benchmarks.report.statistics): resolved when the 95% interval of the difference excludes
0. The table agrees when every pair that ran is resolved the paper's way, disagrees when any is resolved the
other way, and is otherwise not resolved. A row whose suite seeds have not all run (a sweep under way) is not
compared yet, as on the leaderboard: on its first seed alone a gap or a tie says little.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.paper_tables import PaperTable, Row
from benchmarks.report.statistics import SplitStats

AGREES, DISAGREES, UNRESOLVED, NOT_RUN = "agrees", "disagrees", "not resolved (intervals overlap)", "not run"
PENDING = "seeds still to run"


@dataclass(frozen=True)
class Pair:
    other: Row
    paper_above: bool  # the paper has the focal row above this one
    verdict: str  # AGREES, DISAGREES, UNRESOLVED, NOT_RUN or PENDING
    difference: str = ""  # focal minus other here, with its interval


def _iou(table: PaperTable, row: Row) -> float:
    value = row.paper[table.columns.index("IoU")]
    if value is None:
        raise ValueError(f"table {table.number} row {row.label!r} has no IoU")
    return value


def _quoted(table: PaperTable, row: Row) -> str:
    size = (f" at {row.paper[table.columns.index(table.params_column)]:g} M" if table.params_column else "")
    return f'"{row.label}" ({_iou(table, row):g}{size})'


def pairs(table: PaperTable, stats: SplitStats) -> list[Pair]:
    """The focal row against every other row: the paper's order, and what the measured runs say of it."""
    focal = table.focal_row
    out = []
    for other in (r for r in table.rows if r is not focal):
        above = _iou(table, focal) > _iou(table, other)
        if other.label in stats.scores and {focal.label, other.label} & stats.unranked:
            out.append(Pair(other, above, PENDING))
            continue
        compared = (stats.comparison(focal.label, other.label)
                    if focal.label in stats.scores and other.label in stats.scores else None)
        if compared is None:
            out.append(Pair(other, above, NOT_RUN if other.label not in stats.scores else UNRESOLVED))
            continue
        d = compared.difference
        shown = f"{d.value:+.2f} [{d.low:+.1f}, {d.high:+.1f}]" if d.has_interval else f"{d.value:+.2f}"
        if not compared.separated:
            verdict = UNRESOLVED
        else:
            verdict = AGREES if (d.value > 0) == above else DISAGREES
        out.append(Pair(other, above, verdict, shown))
    return out


def claim(table: PaperTable) -> str:
    """The paper's direction, from its numbers: the focal row above and below which rows."""
    focal = table.focal_row
    others = [r for r in table.rows if r is not focal]
    above = [_quoted(table, r) for r in others if _iou(table, focal) > _iou(table, r)]
    below = [_quoted(table, r) for r in others if _iou(table, focal) <= _iou(table, r)]
    parts = [f"above {'every other row' if not below else ', '.join(above)}" if above else "",
             f"below {'every other row' if not above else ', '.join(below)}" if below else ""]
    return f"{_quoted(table, focal)} scores " + " and ".join(p for p in parts if p)


def sentence(table: PaperTable, stats: SplitStats, suite: str) -> str:
    """'Direction: the paper's claim. On `suite`: agrees / disagrees / not resolved / not run', with the pairs
    behind the verdict."""
    head = f"**Direction.** In the paper {claim(table)}. On `{suite}` (val mIoU, paired 95% intervals): "
    command = table.command(suite)
    found = pairs(table, stats)
    if table.focal not in stats.scores or all(p.verdict == NOT_RUN for p in found):
        return head + f"**{NOT_RUN}**: run `{command}`."
    if table.focal in stats.unranked or not any(p.verdict in (AGREES, DISAGREES, UNRESOLVED) for p in found):
        waiting = [table.focal] if table.focal in stats.unranked else [p.other.label for p in found
                                                                          if p.verdict == PENDING]
        return head + f"**{PENDING}** (" + ", ".join(f'"{label}"' for label in waiting) + f"): finish `{command}`."
    by = {v: [p for p in found if p.verdict == v] for v in (AGREES, DISAGREES, UNRESOLVED, NOT_RUN, PENDING)}
    overall = DISAGREES if by[DISAGREES] else UNRESOLVED if by[UNRESOLVED] else AGREES
    details = []
    for verdict, words in ((AGREES, "the paper's way"), (DISAGREES, "against the paper"),
                           (UNRESOLVED, "not resolved")):
        if by[verdict]:
            details.append(f"{words}: " + ", ".join(f'vs "{p.other.label}" {p.difference}'.rstrip()
                                                    for p in by[verdict]))
    for verdict in (NOT_RUN, PENDING):
        if by[verdict]:
            details.append(f"{verdict}: " + ", ".join(f'"{p.other.label}"' for p in by[verdict]))
    if by[NOT_RUN] or by[PENDING]:
        details[-1] += f" (`{command}`)"
    scope = " for the rows compared" if (by[NOT_RUN] or by[PENDING]) and overall == AGREES else ""
    return head + f'**{overall}**{scope} ("{table.focal}" minus each row; ' + "; ".join(details) + ")."
