"""Ablation pages: one table per method knob, from sweeps that set that knob (`sweep --set KEY=VALUE`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from benchmarks.report.markdown import Column, table
from benchmarks.report.runs import aggregate, current_budget, default_config, leaderboard_runs, plain
from benchmarks.report.statistics import annotate, seeds_only_labels, split_stats
from methods.bridger import DEFAULT_NUM_STAGES


@dataclass(frozen=True)
class Knob:
    method: str
    key: str
    title: str
    examples: tuple[str, ...]  # values the page suggests when the knob has not been swept
    default_text: str | None = None  # what the default means, where its value (None, ()) does not say


KNOBS = (
    Knob("bridger", "width", "Bridger width (ladder dim)", ("32", "64", "128")),
    Knob("bridger", "fusion_stages", "number of Bridgers (the last k of the candidate positions)", ("1", "2", "3"),
         f"all {DEFAULT_NUM_STAGES} candidates"),
    Knob("bridger", "image_stages", "Bridger positions (0-based image blocks)", ("1,3,5", "3,4,5"),
         "evenly spaced, ending at the last block"),
    Knob("lora", "rank", "LoRA rank", ("2", "4", "8", "16")),
    Knob("adapter", "bottleneck", "adapter width", ("16", "32", "64", "128")),
    Knob("prompt", "vision_tokens", "prompt length (vision tokens per block)", ("2", "4", "8", "16")),
)


def knob_runs(runs: pd.DataFrame, knob: Knob) -> pd.DataFrame:
    """The method's default runs plus the runs whose only change from the default is this knob."""
    mine = runs[runs["method"] == knob.method]
    keep = mine["variant"].eq("default") | mine["variant"].str.fullmatch(rf"{knob.key}=(?:(?!, ).)*")
    return mine[keep]


def knob_table(runs: pd.DataFrame, knob: Knob, splits: list[str]) -> list[str]:
    """The knob's values with mIoU intervals; a value is bold only when it is significantly best."""
    agg = aggregate(runs, [*(f"{s}/mIoU" for s in splits), "trainable", "ratio_trainable"])
    stats = [split_stats(dict(tuple(runs.groupby("variant"))), split) for split in splits]
    agg = annotate(agg, "variant", stats)
    default = knob.default_text or plain((default_config(knob.method) or {}).get(knob.key))
    agg["value"] = [f"{default} (default)" if v == "default" else v.split("=", 1)[1] for v in agg["variant"]]
    agg = agg.sort_values(["trainable", "value"], kind="stable").reset_index(drop=True)
    columns = [Column("value", knob.key, left=True), Column("runs", "runs", left=True),
               Column("lr", "lr", general=True),
               *(Column(f"{s}/mIoU", f"{s} mIoU", interval=True, bold_if=f"{s}/mIoU:best") for s in splits),
               Column("trainable", "trainable params", digits=0, thousands=True),
               Column("ratio_trainable", "trainable / total (%)", scale=100)]
    older = seeds_only_labels(stats)
    if not older:
        return [table(agg, columns)]
    which = "every value" if len(older) == len(agg[agg["n"] > 0]) else ", ".join(older)
    return [table(agg, columns), f"Intervals over seeds only for {which}: records without per-expression data.", ""]


def page(suite: str, runs_all: pd.DataFrame, splits: list[str]) -> str:
    runs = leaderboard_runs(current_budget(runs_all))
    lines = [f"# Ablations: `{suite}`", "",
             "Each table varies one knob of one method with everything else at the method's default, under the "
             "suite's budget and the same learning-rate search as the leaderboard; mIoU is the mean over seeds "
             "[95% interval from the paired bootstrap of the leaderboard]. A value is bold only when it is "
             "significantly best: its paired difference to every other value of the knob has an interval that "
             "excludes 0.", ""]
    for knob in KNOBS:
        lines += [f"## {knob.method}: {knob.title}", ""]
        chosen = knob_runs(runs, knob)
        if chosen["variant"].ne("default").any():
            lines += knob_table(chosen, knob, splits)
        else:
            values = " ".join(knob.examples)
            lines += ["not run. To run it:", "", "```bash",
                      f"for v in {values}; do nox -s sweep -- --suite {suite} --method {knob.method} "
                      f"--set {knob.key}=$v; done", "```", ""]
    return "\n".join(lines)
