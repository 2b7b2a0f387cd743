"""The paper page's parameter cells: each row's count at paper scale (from the `counts` document under
results/counts/) beside the paper's, with every difference over 0.01 M marked and explained where the project
knows why."""

from __future__ import annotations

from typing import Any

from benchmarks.paper_counts import COMMAND
from benchmarks.paper_tables import PaperTable, Row

TOLERANCE_M = 0.01  # the paper prints two decimals (and truncates some: 0.7267 -> 0.72)
NOT_COUNTED = "not counted"
DIFFERS = "≠ paper"


def millions(count: int) -> str:
    value = count / 1e6
    return f"{value:.2f}" if value == 0 or value >= 0.095 else f"{value:.4f}"


def _paper_m(spec: PaperTable, row: Row) -> float | None:
    return row.paper[spec.columns.index(spec.params_column)] if spec.params_column else None


def _count(spec: PaperTable, row: Row, counts: dict[str, Any] | None, suite: str | None = None) -> int | None:
    """The row's count on its table's suite, or on `suite` where the document also counted the table there."""
    tables = (counts or {}).get("tables") if suite is None else ((counts or {}).get("also_on") or {}).get(suite)
    found = ((tables or {}).get(str(spec.number)) or {}).get(row.label)
    return None if found is None else int(found["paper_measure"])


def differs(spec: PaperTable, row: Row, counts: dict[str, Any] | None) -> bool:
    count, paper = _count(spec, row, counts), _paper_m(spec, row)
    return count is not None and paper is not None and abs(count / 1e6 - paper) > TOLERANCE_M


def params_cell(spec: PaperTable, row: Row, counts: dict[str, Any] | None) -> str:
    """risbench's count in millions, marked where it differs from the paper's; `not counted` without one."""
    count = _count(spec, row, counts)
    if count is None:
        return NOT_COUNTED
    return f"{millions(count)} ({DIFFERS})" if differs(spec, row, counts) else millions(count)


def other_backbones(spec: PaperTable, counts: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """suite -> row label -> count, for the suites the document also counted this table on."""
    also = (counts or {}).get("also_on") or {}
    return {suite: {row.label: (NOT_COUNTED if (n := _count(spec, row, counts, suite)) is None else millions(n))
                    for row in spec.rows}
            for suite in sorted(also) if str(spec.number) in also[suite]}


def params_notes(spec: PaperTable, counts: dict[str, Any] | None) -> list[str]:
    """The lines under a table: how the counts were made, or how to make them, and why marked rows differ."""
    if counts is None or str(spec.number) not in counts["tables"]:
        return [f"{NOT_COUNTED}: run `{COMMAND}` (random weights, CPU, about two minutes) to fill the risbench "
                "params column.", ""]
    marked = [row for row in spec.rows if differs(spec, row, counts)]
    others = ", ".join(f"`{suite}`" for suite in other_backbones(spec, counts))
    lines = ["risbench params: what the row's method adds to the backbone at paper scale (full tuning: the "
             "backbone weights it trains), counted with random weights by `" + COMMAND + "`"
             + (f"; also on {others} (the paper gives no count there)." if others else ".")]
    if marked:
        lines[0] += (f" Marked `{DIFFERS}`: more than {TOLERANCE_M} M from the paper's count. "
                     + " ".join(f"{row.label}: {millions(_count(spec, row, counts) or 0)} M vs "
                                f"{_paper_m(spec, row):g} M, {row.count_note or 'no reason known to the project'}."
                                for row in marked))
    return [*lines, ""]
