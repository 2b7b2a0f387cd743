"""ETRIS's eight tables as data: which runs fill each, and the paper's numbers beside them.

One definition serves `sweep --table N` (run exactly what the table needs, resumable and shardable like any
sweep) and the paper page. All of the paper's ablations (Tables 2 and 4-8) are RefCOCO val with RN101, so
their paper setting is the `paper-rn101` suite; on the offline `shapes` suite the same rows are their analog.
A row's options are the method options (`--set`) and the decoder components the suite turns off; a row that
matches another table's row (the default Bridger is ETRIS in Tables 2, 4, 5, 6, 7) is the same run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.suites import Suite, load_suite
from benchmarks.sweep import Entry, run_entries
from methods import get_method
from riscore.errors import UserError

PAPER_SUITE = "paper-rn101"
ANALOG_SUITE = "shapes"
PRECISION = ("Prec@0.5", "Prec@0.6", "Prec@0.7", "Prec@0.8", "Prec@0.9")


@dataclass(frozen=True)
class Row:
    label: str  # as the paper names it
    method: str
    paper: tuple[float | None, ...]  # in the table's `columns` order; None where the paper gives none
    options: dict[str, str] = field(default_factory=dict)
    decoder_options: dict[str, bool] = field(default_factory=dict)
    suite: str | None = None  # a fixed suite (Table 1); else the suite the table runs on
    count_note: str = ""  # why risbench's parameter count differs from the paper's, where the project knows

    def suite_for(self, base: Suite) -> Suite:
        suite = load_suite(self.suite) if self.suite else base
        return suite.replace({"decoder_options": self.decoder_options}) if self.decoder_options else suite


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    columns: tuple[str, ...]  # the paper's value columns
    rows: tuple[Row, ...]
    analog: bool = True  # the rows also run on any suite (the shapes analog); False: fixed suites only
    runs: bool = True  # False: the table is parameter counts, computed rather than trained
    params_column: str | None = None  # the column of the paper's backbone parameter counts (M), if any
    focal: str | None = None  # the row whose standing against the others the table argues (its direction)

    def __post_init__(self) -> None:
        if self.params_column is not None and self.params_column not in self.columns:
            raise ValueError(f"table {self.number}: params_column {self.params_column!r} is not one of its columns")
        if self.focal is not None and (self.focal not in {r.label for r in self.rows} or "IoU" not in self.columns):
            raise ValueError(f"table {self.number}: focal {self.focal!r} needs to be a row of a table with IoU")

    @property
    def focal_row(self) -> Row:
        """The row named by `focal` (construction checked it exists); only tables that argue a direction have one."""
        if self.focal is None:
            raise ValueError(f"table {self.number} argues no direction: it has no focal row")
        return next(r for r in self.rows if r.label == self.focal)

    def command(self, suite: str) -> str:
        return f"python -m benchmarks sweep --table {self.number}" + (f" --suite {suite}" if self.analog else "")


TEXT_ONLY = "RN101's image tower has no transformer blocks, so these sit in the text tower only"


def _t2_rows() -> tuple[Row, ...]:
    return (
        Row("Full tuning", "full", (120.74, 70.47)),
        Row("Frozen backbone", "frozen", (0.0, 67.73)),
        Row("Adapter", "adapter", (2.39, 69.46), count_note=f"{TEXT_ONLY} (methods/adapter.py)"),
        Row("Conv Adapter", "convadapter", (1.20, 69.33),
            count_note="ETRIS does not publish its Conv Adapter; `reduction` 2 is the power of two closest to its "
                       "count (methods/convadapter.py)"),
        Row("Compacter", "compacter", (0.19, 69.11),
            count_note=f"the Compacter paper's defaults (n 4, rank 1, bottleneck 24); {TEXT_ONLY} "
                       "(methods/compacter.py)"),
        Row("CoOp", "prompt", (0.0041, 67.87), {"vision_tokens": "0", "text_tokens": "8"}),
        Row("LoRA", "lora", (0.03, 68.84),
            count_note="ETRIS does not publish its LoRA setup; 0.033 M is rank 1 on q,v of both towers (`--set "
                       "rank=1`) or rank 4 on q,v of RN101's attention pool (`--set rank=4 --set towers=image`); "
                       "risbench keeps peft's default rank 8 on q,v of both towers (methods/lora.py)"),
        Row("ETRIS", "bridger", (1.94, 71.06)),
        Row("Adapter + ETRIS", "bridger+adapter", (4.33, 71.67), count_note="the sum of its parts: see Adapter"),
        Row("Conv Adapter + ETRIS", "bridger+convadapter", (3.14, 72.11),
            count_note="the sum of its parts: see Conv Adapter"),
    )


TABLES: dict[int, PaperTable] = {t.number: t for t in (
    PaperTable(1, "Main results (mIoU; the paper labels it oIoU)",
               ("RefCOCO val", "RefCOCO testA", "RefCOCO testB", "RefCOCO+ val", "RefCOCO+ testA",
                "RefCOCO+ testB", "G-Ref val (umd)", "G-Ref test (umd)", "G-Ref val (google)"),
               (Row("ETRIS RN50", "bridger", (70.39, 73.11, 66.38, 60.47, 67.11, 50.73, 59.71, 59.95, 57.22),
                    suite="paper-rn50"),
                Row("ETRIS RN101", "bridger", (71.06, 74.11, 66.66, 62.23, 68.51, 52.79, 60.28, 60.42, 57.86),
                    suite="paper-rn101"),
                Row("ETRIS ViT-B/16", "bridger", (70.51, 73.51, 66.63, 60.10, 66.89, 50.17, 59.82, 59.91, 57.88),
                    suite="paper-vitb16")),
               analog=False),
    PaperTable(2, "Other PET methods with the same decoder (RN101, RefCOCO val)",
               ("trainable backbone params (M)", "IoU"), _t2_rows(), params_column="trainable backbone params (M)",
               focal="ETRIS"),
    PaperTable(3, "Parameters (M): backbone (Bridger) / decoder / total",
               ("backbone", "decoder", "total"),
               (Row("ETRIS RN50", "bridger", (1.68, 23.98, 25.66), suite="paper-rn50",
                    count_note="ETRIS's released code builds the same Bridger for RN50 and RN101 (1.94 M); the "
                               "paper's 1.68 M cannot come from it"),
                Row("ETRIS RN101", "bridger", (1.94, 23.98, 25.92), suite="paper-rn101"),
                Row("ETRIS ViT-B/16", "bridger", (1.39, 23.98, 25.37), suite="paper-vitb16",
                    count_note="width 64, as in ETRIS's released ViT-B/16 config; the paper's 1.39 M is width 128 "
                               "(`--set width=128`: 1.39 M)")),
               analog=False, runs=False, params_column="backbone"),
    PaperTable(4, "Bridger scope x number of Bridgers", ("params (M)", "IoU"), params_column="params (M)",
               focal="2->n, 3 Bridgers", rows=(
        Row("2->n, 1 Bridger", "bridger", (0.43, 70.96), {"fusion_stages": "1", "skip_last": "2"}),
        Row("2->n, 2 Bridgers", "bridger", (0.72, 70.75), {"fusion_stages": "2", "skip_last": "1"}),
        Row("2->n, 3 Bridgers", "bridger", (1.94, 71.06)),
        Row("n/2->n, 1 Bridger", "bridger", (0.29, 70.18), {"fusion_stages": "1", "skip_last": "1"}),
        Row("n/2->n, 2 Bridgers", "bridger", (1.51, 70.53), {"fusion_stages": "2"}),
        Row("n->n, 1 Bridger", "bridger", (1.22, 69.65), {"fusion_stages": "1"}))),
    PaperTable(5, "Zoom layer", ("params (M)", "IoU"), params_column="params (M)", focal="Conv + Deconv", rows=(
        Row("Linear", "bridger", (5.77, 70.94), {"zoom": "linear"}),
        Row("Conv + Interpolate", "bridger", (1.45, 70.08), {"zoom": "conv+interpolate"}),
        Row("MLP", "bridger", (1.68, 70.62), {"zoom": "mlp"},
            count_note="the paper does not define its MLP zoom; risbench's is a per-position two-layer MLP of "
                       "hidden width d (methods/zoom.py)"),
        Row("Conv + Deconv", "bridger", (1.94, 71.06)))),
    PaperTable(6, "Components", ("IoU",), focal="w/o hierarchical alignment", rows=(
        Row("w/o hierarchical alignment", "bridger", (58.70,), decoder_options={"hierarchical_alignment": False}),
        Row("w/o Bridger", "frozen", (67.73,)),
        Row("w/o global alignment", "bridger", (62.21,), decoder_options={"global_alignment": False}),
        Row("full model", "bridger", (71.06,)))),
    # ETRIS keeps its interactor FFN at 128 whatever the width (its counts come out only so); at width 64
    # that is the default, so that row is the default Bridger's run
    PaperTable(7, "Hidden dimension of the Bridger", ("params (M)", "IoU"), params_column="params (M)", focal="64",
               rows=tuple(
        Row(str(width), "bridger", (m, iou), {"width": str(width), "ffn_width": "128"} if width != 64 else {})
        for width, m, iou in ((8, 0.22, 70.55), (16, 0.45, 70.78), (32, 0.92, 70.92), (64, 1.94, 71.06),
                              (128, 4.28, 70.39)))),
    PaperTable(8, "Table 2 with precision", ("IoU", *PRECISION), focal="ETRIS", rows=(
        Row("Full tuning", "full", (70.47, 82.62, 78.35, 71.35, 54.47, 17.69)),
        Row("Frozen backbone", "frozen", (67.73, 79.53, 74.42, 66.10, 46.39, 12.41)),
        Row("Adapter", "adapter", (69.46, 81.05, 76.59, 69.69, 51.27, 16.16)),
        Row("Conv Adapter", "convadapter", (69.33, 80.79, 76.62, 69.80, 51.69, 15.95)),
        Row("ETRIS", "bridger", (71.06, 83.43, 79.23, 72.68, 55.39, 17.40)),
        Row("Adapter + ETRIS", "bridger+adapter", (71.67, 84.25, 80.12, 73.50, 56.33, 18.43)),
        Row("Conv Adapter + ETRIS", "bridger+convadapter", (72.11, 84.46, 80.27, 73.92, 57.13, 18.74)))),
)}


def get_table(number: int) -> PaperTable:
    if number not in TABLES:
        raise UserError(f"--table {number}: the ETRIS paper has tables {', '.join(map(str, TABLES))}")
    return TABLES[number]


def table_suite_name(table: PaperTable, requested: str | None) -> str | None:
    """The suite an analog table runs on (the request, else shapes); None for a table on fixed suites."""
    if not table.analog:
        if requested is not None:
            raise UserError(f"table {table.number} runs on its own suites "
                            f"({', '.join(sorted({r.suite for r in table.rows if r.suite}))}); leave out --suite")
        return None
    return requested or ANALOG_SUITE


def run_tables(tables: Sequence[tuple[PaperTable, Suite | None]], **sweep_args: Any) -> dict[str, int]:
    """One sweep whose entries are the rows of these (table, suite) pairs, with `sweep_args` (shard, store,
    dry_run, ...): every row's search runs together, then every row's seeds, so no worker waits for one row's
    search to end; a row two tables share runs once. Every table and row is checked before the first line."""
    entries = [entry for table, base in tables for entry in table_entries(table, base)]
    for entry in entries:
        print(f"{entry.label} ({entry.method} on {entry.suite.name})", file=sys.stderr)
    return run_entries(entries, **sweep_args)


def table_entries(table: PaperTable, base: Suite | None) -> list[Entry]:
    """A sweep entry per row: its method and options under its suite (`base` with the row's decoder options,
    or the row's own suite)."""
    if not table.runs:
        raise UserError(f"table {table.number} holds parameter counts, not trained runs: "
                        "python -m benchmarks bench --list-methods --counts computes them")
    entries = []
    for row in table.rows:
        suite = row.suite_for(base) if base is not None or row.suite else None
        if suite is None:
            raise UserError(f"table {table.number} row '{row.label}' needs a suite")
        suite.check()
        config = get_method(row.method).make_config(dict(row.options))
        entries.append(Entry(suite, row.method, config, f"table {table.number}: {row.label}"))
    return entries
