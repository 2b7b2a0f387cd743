"""The qualitative figure of a leaderboard: the same expressions segmented by every method, side by side.

Rows are chosen by rule from the masks every shown run kept (benchmarks/showcase.py): the first kept expression
of each kind, then those where the methods' IoUs spread the most, up to `ROWS`. Columns: the image with its
expression, the ground truth, then each method's mask (at its chosen learning rate: the first suite seed, else the
lowest other seed whose record kept masks, e.g. an extra seed run after the suite's seeds were recorded without
them) with its IoU. Images come from the suite's dataset, rebuilt from the record's settings (shapes: rendered
again).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.report.plots import plt, png_bytes
from benchmarks.showcase import Showcase

ROWS = 12


@dataclass(frozen=True)
class Row:
    index: int
    kind: str
    why: str  # "kind" (first of its kind) or "spread" (methods disagree)


def iou(prediction: np.ndarray, target: np.ndarray) -> float:
    """As IoUMeter scores it: 1 when both are empty."""
    union = int((prediction | target).sum())
    return 1.0 if union == 0 else int((prediction & target).sum()) / union


def shown_runs(runs: pd.DataFrame, methods: list[str], split: str) -> tuple[dict[str, Showcase], dict[str, int]]:
    """Method -> the kept masks of one default-config ok run (the first suite seed's, else the lowest other seed's
    that kept masks), and method -> that run's seed; methods in `methods` order, those without kept masks left out.
    `runs`: the runs at each method's chosen learning rate, of any seed."""
    column = f"{split}/showcase"
    if column not in runs:
        return {}, {}
    ok = runs[(runs["status"] == "ok") & (runs["variant"] == "default")]
    ok = ok.assign(_other=ok["seed"] != ok["first_seed"]).sort_values(["_other", "seed"], kind="stable")
    shown, seeds = {}, {}
    ok = ok[ok[column].map(lambda s: isinstance(s, Showcase))]
    for method in methods:
        mine = ok[ok["method"] == method]
        if len(mine):
            seeds[method], shown[method] = int(mine["seed"].iloc[0]), mine[column].iloc[0]
    return shown, seeds


def common_indices(shown: dict[str, Showcase]) -> list[int]:
    """The expressions whose masks every shown run kept, in index order: the candidate rows."""
    return sorted(set.intersection(*(set(s.masks) for s in shown.values())))


def choose_rows(shown: dict[str, Showcase], targets: dict[int, np.ndarray], rows: int = ROWS) -> list[Row]:
    """Among the expressions of `targets` (index -> ground truth) whose masks every shown run kept, the first of
    each kind, then those with the largest max - min IoU across methods (ties: lower index first), `rows` in all.
    A target some run did not keep has no mask to show in that column, so it is never chosen."""
    if not shown:
        raise ValueError("choose_rows needs at least one shown run")
    common = [i for i in common_indices(shown) if i in targets]
    kinds = next(iter(shown.values())).kinds
    chosen: list[Row] = []
    for kind in sorted({kinds[i] for i in common}):
        chosen.append(Row(next(i for i in common if kinds[i] == kind), kind, "kind"))
    spread = {i: np.ptp([iou(s.masks[i], targets[i]) for s in shown.values()]) for i in common}
    taken = {r.index for r in chosen}
    for index in sorted((i for i in common if i not in taken), key=lambda i: (-spread[i], i)):
        chosen.append(Row(index, kinds[index], "spread"))
    return chosen[:rows]


def figure(shown: dict[str, Showcase], rows: list[Row], pictures: dict[int, tuple[np.ndarray, str, np.ndarray]],
           seeds: dict[str, int]) -> bytes:
    """PNG: one row per chosen expression; `pictures[index]` = (uint8 image, expression, ground-truth mask); each
    method's column is titled with the seed of its run."""
    from benchmarks.predict import tint

    columns = ["image", "ground truth", *(f"{method}\nseed {seeds[method]}" for method in shown)]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.25 * len(columns), 1.45 * len(rows)),
                             squeeze=False)
    for r, row in enumerate(rows):
        picture, text, target = pictures[row.index]
        cells = [(picture, textwrap.fill(text, 24)), (tint(picture, target), f"{row.kind} #{row.index}")]
        cells += [(tint(picture, s.masks[row.index]), f"IoU {100 * iou(s.masks[row.index], target):.0f}")
                  for s in shown.values()]
        for c, (image, caption) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(caption, fontsize=6)
            if r == 0:
                ax.set_title(columns[c], fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def section(runs: pd.DataFrame, methods: list[str], suite: dict[str, Any], split: str,
            figures: dict[str, bytes]) -> list[str]:
    """The page's lines about the figure (and the figure into `figures`); why there is none when there is none."""
    from benchmarks.predict import query_from_dataset
    from benchmarks.suites import Suite
    from riscore.errors import UserError

    shown, seeds = shown_runs(runs, methods, split)
    if not shown:
        return [f"No qualitative figure: no record of this suite keeps predicted masks on {split} (records made "
                "before masks were kept, benchmarks/showcase.py); re-running the sweep adds them.", ""]
    indices = common_indices(shown)
    try:
        queries = {i: query_from_dataset(Suite.from_dict(suite), split, i) for i in indices}
    except UserError as exc:  # e.g. RefCOCO images not on this machine
        return [f"No qualitative figure: the images are not available here ({exc}).", ""]
    pictures = {i: (q.picture, q.text, q.target.numpy()) for i, q in queries.items()}
    rows = choose_rows(shown, {i: p[2] for i, p in pictures.items()})
    figures["qualitative.png"] = figure(shown, rows, pictures, seeds)
    missing = sorted(set(methods) - set(shown))
    lines = [f"Rows: the first of each expression kind among the {len(indices)} {split} expressions whose masks "
             f"every shown run kept, then those where the methods' IoUs differ most. Each method's run at its chosen "
             f"learning rate, {_seed_phrase(seeds, int(runs['first_seed'].iloc[0]))}; masks as scored (threshold "
             f"{suite['threshold']:g}, original resolution)."]
    if missing:
        lines[-1] += f" Not shown (no kept masks): {', '.join(missing)}."
    return [*lines, ""]


def _seed_phrase(seeds: dict[str, int], first_seed: int) -> str:
    """Which seeds the columns show, and why when it is not the suite's first."""
    used = sorted(set(seeds.values()))
    if used == [first_seed]:
        return f"seed {first_seed}"
    return (f"seed {', '.join(str(s) for s in used)} (the column titles say which; a method's first suite seed "
            f"({first_seed}) is shown where its record kept masks, else its lowest seed whose record did: records "
            f"made before masks were kept have none)")
