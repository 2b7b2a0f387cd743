"""The paper page: ETRIS's published tables beside this project's runs of the paper suites.

Published numbers are facts quoted from the ETRIS paper (ICCV 2023) and, where marked, from later
papers' comparison tables; CRIS (full fine-tuning) is the paper's main baseline. A cell this project has
not measured says "not run" rather than being left out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from benchmarks.paper_tables import ANALOG_SUITE, PAPER_SUITE, TABLES, PaperTable, Row
from benchmarks.report import paper_direction as direction
from benchmarks.report.markdown import Column, paper_ratio_column, table
from benchmarks.report.paper_cells import (
    NOT_RUN,
    cell,
    chosen_runs,
    etris_split,
    metric_cell,
    row_groups,
    row_stats,
    seeds_only_note,
)
from benchmarks.report.paper_params import other_backbones, params_cell, params_notes
from benchmarks.report.runs import aggregate, grid_edge_note, grid_edges, run_variant
from benchmarks.report.statistics import METHOD_NOTE, SplitStats, selected_runs
from benchmarks.suites import load_suite
from methods import get_method
from riscore.identity import config_identity

BENCHMARKS = (("refcoco", ("val", "testA", "testB")), ("refcoco+", ("val", "testA", "testB")),
              ("refcocog", ("val", "test")), ("refcocog (google)", ("val",)))
CELLS = tuple(f"{name}/{split}" for name, splits in BENCHMARKS for split in splits)  # "refcoco/val": a column
BACKBONE_SUITES = {"RN50": "paper-rn50", "RN101": "paper-rn101", "ViT-B-16": "paper-vitb16"}


@dataclass(frozen=True)
class Published:
    method: str
    backbone: str
    source: str
    miou: dict[str, float]  # "refcoco/val" -> mIoU
    tunable_m: float | None = None  # added trainable parameters in the backbone, millions


def etris_table1(*miou: float) -> dict[str, float]:
    """A row of ETRIS's Table 1 in its column order: RefCOCO val/testA/testB, RefCOCO+ val/testA/testB,
    G-Ref val/test (umd) and val (google)."""
    return dict(zip(CELLS, miou, strict=True))


PUBLISHED = (
    Published("ETRIS", "RN50", "ETRIS paper",
              etris_table1(70.39, 73.11, 66.38, 60.47, 67.11, 50.73, 59.71, 59.95, 57.22), 1.68),
    Published("ETRIS", "RN101", "ETRIS paper",
              etris_table1(71.06, 74.11, 66.66, 62.23, 68.51, 52.79, 60.28, 60.42, 57.86), 1.94),
    Published("ETRIS", "ViT-B-16", "ETRIS paper",
              etris_table1(70.51, 73.51, 66.63, 60.10, 66.89, 50.17, 59.82, 59.91, 57.88), 1.39),
    Published("CRIS (full fine-tuning)", "RN50", "CRIS paper, as compared in ETRIS",
              {"refcoco/val": 69.52, "refcoco/testA": 72.72, "refcoco/testB": 64.70, "refcoco+/val": 61.39,
               "refcoco+/testA": 67.10, "refcoco+/testB": 52.48, "refcocog/val": 59.35, "refcocog/test": 59.39}),
    Published("CRIS (full fine-tuning)", "RN101", "CRIS paper, as compared in ETRIS",
              {"refcoco/val": 70.47, "refcoco/testA": 73.18, "refcoco/testB": 66.10, "refcoco+/val": 62.27,
               "refcoco+/testA": 68.08, "refcoco+/testB": 53.68, "refcocog/val": 59.87, "refcocog/test": 60.36}),
)
RERUNS_NOTE = ("The paper's metric is labelled oIoU but its code computes mIoU (the authors confirmed it in ETRIS's "
               "issue tracker), so every cell here is mIoU. Re-runs of ETRIS's released code come out near or below "
               "the paper: its users report RN50 RefCOCO val of about 69.5-69.9 (0.5-0.9 below the paper's 70.39), "
               "and a third-party RN101 reproduction got 71.09 / 73.72 / 66.79 on RefCOCO val / testA / testB "
               "(+0.03 / -0.39 / +0.13 from the paper). A risbench paper-suite cell within about a point of "
               "ETRIS's is therefore within the spread of ETRIS's own re-runs.")
OURS = (("bridger", "ETRIS (Bridger + decoder)"), ("full", "full fine-tuning"))


def accuracy_table(runs: pd.DataFrame) -> tuple[str, list[SplitStats]]:
    """Published rows, then this project's rows per backbone (RefCOCO from the paper suites), with the
    statistics behind their cells."""
    rows, used = [], []
    for pub in PUBLISHED:
        row = {"method": pub.method, "backbone": pub.backbone, "source": pub.source,
               "tunable": f"{pub.tunable_m:.2f}" if pub.tunable_m is not None else "all"}
        row.update({key: pub.miou.get(key, "–") for key in CELLS})
        rows.append(row)
    for backbone, suite in BACKBONE_SUITES.items():
        chosen = chosen_runs(runs, suite)
        groups = row_groups(chosen, {method: (method, "default") for method, _ in OURS})
        stats = {split: row_stats(groups, chosen, split) for split in ("val", "testA", "testB")}
        used += stats.values()
        agg = aggregate(chosen[chosen["variant"] == "default"], ["added"]) if len(chosen) else pd.DataFrame()
        for method, title in OURS:
            row = {"method": f"risbench {title}", "backbone": backbone, "source": f"`{suite}` suite"}
            row.update(dict.fromkeys(CELLS, NOT_RUN))
            for split, one in stats.items():
                row[f"refcoco/{split}"] = cell(one, method, groups[method])
            found = agg[agg["method"] == method] if len(agg) else agg
            if len(found):  # it ran: its numbers, or why no run counts
                got = found.iloc[0]
                row["tunable"] = "all" if method == "full" else Column("added", "", scale=1e-6).text(got)
                row["source"] += f" ({got['runs']}{_selected_note(chosen)})"
            else:
                row["tunable"] = NOT_RUN
            rows.append(row)
    columns = [Column("method", "method", left=True), Column("backbone", "backbone", left=True),
               *(Column(key, key.replace("/", " "), digits=2) for key in CELLS),
               Column("tunable", "tunable backbone params (M)", left=True), Column("source", "source", left=True)]
    return table(pd.DataFrame(rows), columns), used


def _selected_note(chosen: pd.DataFrame) -> str:
    if etris_split(chosen, "val") != "val":
        return "; best checkpoint by ETRIS's selection, last step on the leaderboard"
    return "; last step"


def row_variant(row: Row) -> str:
    """The variant name the report gives this row's runs (method options and decoder components)."""
    config = json.loads(json.dumps(config_identity(get_method(row.method).make_config(row.options))))
    return run_variant(row.method, config, {"decoder_options": row.decoder_options})


def ablation_table(number: int, runs: pd.DataFrame, counts: dict[str, Any] | None) -> list[str]:
    """One of Tables 2, 4-8: the paper's numbers, then this project's val mIoU with the leaderboard's 95%
    interval on the paper suite (at the checkpoint ETRIS's selection picks, where the runs selected one) and on
    its shapes analog, or `not run`, with the command that fills them."""
    spec: PaperTable = TABLES[number]
    labels = {row.label: (row.method, row_variant(row)) for row in spec.rows}
    rows = [{"row": row.label, **{f"paper {c}": "–" if v is None else f"{v:g}"
                                  for c, v in zip(spec.columns, row.paper, strict=True)},
             "params": params_cell(spec, row, counts)} for row in spec.rows]
    others = other_backbones(spec, counts)
    for cells in rows:
        cells.update({f"params {suite}": found[cells["row"]] for suite, found in others.items()})
    precisions = [c for c in spec.columns if c.startswith("Prec@")]  # Table 8: each row's precision as well
    used, measured, edges = [], [], []
    for suite, name in ((PAPER_SUITE, f"`{PAPER_SUITE}`"), (ANALOG_SUITE, f"`{ANALOG_SUITE}` analog")):
        chosen = chosen_runs(runs, suite)
        groups = row_groups(chosen, labels)
        stats = row_stats(groups, chosen, "val")
        used.append(stats)
        edges += grid_edge_note(grid_edges({f'"{label}"': group for label, group in groups.items()}),
                                f" on `{suite}`")
        selected = selected_runs(groups, stats.split) if precisions else {}
        for cells in rows:
            group = groups[cells["row"]]
            cells[suite] = cell(stats, cells["row"], group)
            cells.update({f"{suite} {p}": NOT_RUN if group.empty else metric_cell(selected.get(cells["row"]),
                                                                                  p.lower())
                          for p in precisions})
        measured += [Column(suite, f"risbench {name} val mIoU [95% CI]", left=True),
                     *(Column(f"{suite} {p}", f"risbench {name} {p}", left=True) for p in precisions)]
    columns = [Column("row", "row", left=True), *(Column(f"paper {c}", f"ETRIS: {c}") for c in spec.columns),
               *([Column("params", f"risbench `{PAPER_SUITE}` params (M)", left=True)] if spec.params_column else []),
               *(Column(f"params {suite}", f"risbench `{suite}` params (M)", left=True) for suite in others),
               *measured]
    return [f"## Table {number}: {spec.title}", "", table(pd.DataFrame(rows), columns), "",
            *seeds_only_note(used), *edges, *(params_notes(spec, counts) if spec.params_column else []),
            f"`not run` cells fill with `{spec.command(PAPER_SUITE)}` (GPU and RefCOCO data) and "
            f"`{spec.command(ANALOG_SUITE)}` (CPU).", "",
            *([direction.sentence(spec, used[-1], ANALOG_SUITE), ""] if spec.focal else [])]


def counts_table(counts: dict[str, Any] | None) -> list[str]:
    spec = TABLES[3]
    rows = [{"row": r.label, **dict(zip(spec.columns, r.paper, strict=True)), "params": params_cell(spec, r, counts)}
            for r in spec.rows]
    columns = [Column("row", "row", left=True), *(Column(c, f"ETRIS: {c} (M)", digits=2) for c in spec.columns),
               Column("params", "risbench backbone (M)", left=True)]
    return [f"## Table 3: {spec.title}", "", table(pd.DataFrame(rows), columns), "", *params_notes(spec, counts),
            "risbench's Bridger counts equal the released ETRIS code's (RN50 and RN101 1.94 M, ViT-B/16 0.60 M at "
            "width 64, 1.39 M at 128; tested); the decoder and totals at random init: "
            "`python -m benchmarks bench --list-methods --counts` and the efficiency table below.", "",
            "The paper's \"1.61% to 3.38%\" divides Bridger parameters by the image encoder of the method compared: "
            "1.39 M / 86.19 M (CLIP ViT-B/16's image tower at 224 px) and 1.94 M / 57.31 M (CRIS-RN101's backbone). "
            "risbench's `ratio_paper` divides by CLIP's own image tower at 224 px: 1.61% for ViT-B/16 at width 128 "
            "(1,387,648 / 86,192,640) and 3.45% for RN101 (1,942,080 / 56,259,936), not 3.38/3.39%, because CLIP's "
            "RN101 tower is not CRIS's 57.31 M backbone.", ""]


def efficiency_table(profiles: list[dict]) -> str | None:
    """Per method at paper scale (ViT-B/16 and ResNets, 416 px): parameters, GFLOPs, and where profiled on a
    device, memory and speed; from `profile` documents saved under results/profile/."""
    rows = []
    for document in profiles:
        for row in document["rows"]:
            if not str(document.get("suite", "")).startswith("paper-") or row.get("image_size") != 416:
                continue
            memory, speed = row.get("memory") or {}, row.get("throughput") or {}
            rows.append({
                "suite": document["suite"], "method": row["method"], "backbone": row["backbone"],
                "batch": row["batch_size"], "trainable": row["params"]["trainable"] / 1e6,
                "added": row["params"]["added"] / 1e6, "ratio_added": 100 * row["params"]["ratio_added"],
                "ratio_paper": 100 * row["params"].get("ratio_paper", math.nan),
                "gflops": row["gflops_per_image"], "train_gflops": row["train_gflops_per_image"],
                "memory": memory.get("train_peak_mb", NOT_RUN), "speed": speed.get("train_images_per_s", NOT_RUN),
                "device": row.get("device", "?"), "precision": row.get("precision", "?"),
            })
    if not rows:
        return None
    # one row per measurement setting: a GPU document and a CPU one, or bf16 and fp16 rows, all stay
    key = ["suite", "device", "precision", "batch", "method"]
    frame = pd.DataFrame(rows).sort_values(key).drop_duplicates(key, keep="last")
    columns = [Column("suite", "suite", left=True), Column("method", "method", left=True),
               Column("trainable", "trainable (M)", 3),
               Column("added", "added (M)", 3), Column("ratio_added", "added / CLIP (%)", 2),
               *paper_ratio_column(frame, scale=1),
               Column("gflops", "inference GFLOPs / image", 1), Column("train_gflops", "training GFLOPs / image", 1),
               Column("batch", "batch", 0), Column("precision", "precision", left=True),
               Column("memory", "peak train memory (MB)", 0),
               Column("speed", "train images / s", 1), Column("device", "device", left=True)]
    return table(frame, columns)


def seeds_note() -> str:
    """Which seeds each suite's cells average: the suites' own, so the page says what stands behind a cell."""
    suites = [load_suite(name) for name in (ANALOG_SUITE, *BACKBONE_SUITES.values())]
    listed = "; ".join(f"`{s.name}` {', '.join(map(str, s.seeds))} ({len(s.seeds)} seed{'s' * (len(s.seeds) > 1)})"
                       for s in suites)
    return f"Seeds behind a cell are its suite's: {listed}."


def page(runs: pd.DataFrame, profiles: list[dict], counts: dict[str, Any] | None = None) -> str:
    """The whole page; `counts` is the `counts` document (None: the count columns say how to fill them)."""
    accuracy, used = accuracy_table(runs)
    lines = ["# ETRIS (ICCV 2023) beside risbench", "",
             "mIoU (%) on the RefCOCO family. Published rows quote the papers; risbench rows are this project's "
             "runs of the paper suites (RefCOCO only; they need a GPU and the RefCOCO files), or `not run`. A "
             "measured cell is the mean over seeds at the learning rate the search chose, with its 95% interval "
             f"[low, high] computed exactly as on the leaderboards: {METHOD_NOTE} {seeds_note()} `tunable` counts "
             "parameters added to the backbone (the paper's measure), in millions.", "",
             "## Table 1: Main results (RefCOCO, RefCOCO+, G-Ref)", "", accuracy, "", RERUNS_NOTE, "",
             *seeds_only_note(used), *ablation_table(2, runs, counts), *counts_table(counts),
             *(line for number in (4, 5, 6, 7, 8) for line in ablation_table(number, runs, counts)),
             "## Efficiency at paper scale", ""]
    efficiency = efficiency_table(profiles)
    if efficiency is None:
        lines += ["not run: profile a paper suite with `nox -s profile -- --suite paper-vitb16 --out "
                  "results/profile/paper-vitb16.json` to fill this table.", ""]
    else:
        lines += ["From `profile` documents in results/profile/ (random weights; FLOPs are 2 x multiply-adds; "
                  "memory and speed only where they were measured on a device). Every method at its default "
                  "options: Bridger at width 64, as in ETRIS's released configs (the paper's 1.39 M for ViT-B/16 "
                  "corresponds to width 128). LoHa and LoKr count more inference FLOPs because peft builds the "
                  "full-size weight update and applies it as an extra matrix product in every forward; merged "
                  "into the weights they would cost what frozen does.", "", efficiency]
    return "\n".join(lines)
