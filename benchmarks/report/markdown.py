"""Markdown tables with the best value per column in bold; nothing in them depends on when they were made."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

DASH = "–"


@dataclass(frozen=True)
class Column:
    """One table column: where its value comes from, how it reads, and which end is best (if any)."""

    key: str
    title: str
    digits: int = 2
    best: Literal["max", "min"] | None = None
    with_std: bool = False
    scale: float = 1.0
    thousands: bool = False
    left: bool = False  # text columns read better left-aligned
    general: bool = False  # '%g' (learning rates: 3e-05, not 0.0000)
    interval: bool = False  # append the confidence interval from the `KEY:low` and `KEY:high` columns
    bold_if: str | None = None  # bold the cells whose row has True in this column (instead of `best`)

    def text(self, row: pd.Series) -> str:
        value = row.get(self.key)
        if isinstance(value, str):
            return value.replace("|", "\\|")  # a '|' in an error message would split the cell
        if _missing(value):
            return DASH
        if self.general:
            return f"{value * self.scale:g}"
        shown = f"{value * self.scale:,.{self.digits}f}" if self.thousands else f"{value * self.scale:.{self.digits}f}"
        std = row.get(f"{self.key}:std")
        if self.with_std and not _missing(std):
            shown += f" ± {std * self.scale:.{self.digits}f}"
        low, high = row.get(f"{self.key}:low"), row.get(f"{self.key}:high")
        if self.interval and not (_missing(low) or _missing(high)):
            shown += f" [{low * self.scale:.{self.digits - 1}f}, {high * self.scale:.{self.digits - 1}f}]"
        return shown


def _flag(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) and bool(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def table(frame: pd.DataFrame, columns: Sequence[Column], *, rank_rows: Sequence[bool] | None = None) -> str:
    """A GitHub markdown table; for columns with `best`, the best value among `rank_rows` is bold
    (ties all bold, compared at the shown precision so bold never contradicts what the reader sees); for
    columns with `bold_if`, the rows that column marks."""
    rank_rows = list(rank_rows) if rank_rows is not None else [True] * len(frame)
    cells = [[c.text(row) for c in columns] for _, row in frame.iterrows()]
    for j, column in enumerate(columns):
        if column.bold_if is not None:
            for i, (rank, (_, row)) in enumerate(zip(rank_rows, frame.iterrows(), strict=True)):
                if rank and _flag(row.get(column.bold_if)):
                    cells[i][j] = f"**{cells[i][j]}**"
            continue
        if column.best is None:
            continue
        shown = [_rounded(row.get(column.key), column) if rank else None
                 for rank, (_, row) in zip(rank_rows, frame.iterrows(), strict=True)]
        candidates = [v for v in shown if v is not None]
        if not candidates:
            continue
        target = max(candidates) if column.best == "max" else min(candidates)
        for i, value in enumerate(shown):
            if value == target:
                cells[i][j] = f"**{cells[i][j]}**"
    header = "| " + " | ".join(c.title for c in columns) + " |"
    rule = "|" + "|".join(":--" if c.left else "--:" for c in columns) + "|"
    return "\n".join([header, rule, *("| " + " | ".join(row) + " |" for row in cells)]) + "\n"


def _rounded(value: Any, column: Column) -> float | None:
    if isinstance(value, str) or _missing(value):
        return None
    return round(float(value) * column.scale, column.digits)


def paper_ratio_column(frame: pd.DataFrame, scale: float = 100.0) -> list[Column]:
    """The ETRIS paper's parameter ratio (added / CLIP image tower at 224 px) where some row has it: records made
    before it was recorded lack it, and a column of dashes would say only that."""
    if "ratio_paper" not in frame or not frame["ratio_paper"].notna().any():
        return []
    return [Column("ratio_paper", "added / image tower at 224 px (%, the paper's ratio)", digits=2, scale=scale)]
