"""Anytime curves and the compute-matched view: every method's accuracy at the same training-FLOP budgets.

Every method trains the same steps x batch, but a step of full fine-tuning costs more than one of a frozen
encoder, so equal steps is not equal compute. The records' anytime curves (mIoU on a fixed evaluation subset
every `eval_every` steps, with cumulative training FLOPs) let each method be read at the same budget: linear
interpolation along its mean-over-seeds curve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["method", "seed", "step", "train_gflops", "train_seconds", "mIoU"]
REFERENCES = ("frozen", "full")  # the budgets a reader knows: the floor's and the usual ceiling's whole run


def points(runs: pd.DataFrame) -> pd.DataFrame:
    """The anytime points of the ok default-config runs, one row each."""
    ok = runs[(runs["status"] == "ok") & (runs["variant"] == "default")]
    rows = [{"method": row["method"], "seed": row["seed"], **{k: p.get(k) for k in COLUMNS[2:]}}
            for _, row in ok.iterrows() for p in row["anytime"]]
    return pd.DataFrame(rows, columns=COLUMNS)


def mean_curves(anytime: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per method, mean training GFLOPs and mIoU over seeds at each evaluation step."""
    known = anytime.dropna(subset=["train_gflops", "mIoU"])
    return {method: group.groupby("step")[["train_gflops", "mIoU"]].mean().sort_values("train_gflops")
            for method, group in known.groupby("method")}


def budgets(curves: dict[str, pd.DataFrame]) -> list[tuple[str, float]]:
    """(name, GFLOPs): the whole-run compute of frozen and of full, or else of the cheapest and dearest method."""
    totals = {method: float(curve["train_gflops"].iloc[-1]) for method, curve in curves.items()}
    if not totals:
        return []
    named = [(f"{m}'s run", totals[m]) for m in REFERENCES if m in totals]
    if len(named) < 2:
        cheapest, dearest = min(totals, key=totals.get), max(totals, key=totals.get)
        named = [(f"{m}'s run", totals[m]) for m in dict.fromkeys((cheapest, dearest))]
    return named


def value_at(curve: pd.DataFrame, gflops: float) -> tuple[float, str]:
    """(mIoU, note) at `gflops`: interpolated inside the curve; its last value marked '*' past its end; NaN
    before its first point (nothing measured there)."""
    x, y = curve["train_gflops"].to_numpy(), curve["mIoU"].to_numpy()
    if gflops < x[0] * (1 - 1e-9):
        return np.nan, ""
    if gflops > x[-1] * (1 + 1e-9):
        return float(y[-1]), "*"
    return float(np.interp(gflops, x, y)), ""


def matched_table(curves: dict[str, pd.DataFrame], order: list[str]) -> tuple[pd.DataFrame, list[tuple[str, float]]]:
    """Per method (in `order`): whole-run GFLOPs, the end-of-run value (equal steps) and the value at each
    budget, as display strings."""
    named = budgets(curves)
    rows = []
    for method in [m for m in order if m in curves]:
        curve = curves[method]
        row = {"method": method, "gflops": float(curve["train_gflops"].iloc[-1]),
               "end": f"{curve['mIoU'].iloc[-1]:.2f}"}
        for k, (_, gflops) in enumerate(named):
            value, note = value_at(curve, gflops)
            row[f"budget{k}"] = "–" if np.isnan(value) else f"{value:.2f}{note}"
        rows.append(row)
    return pd.DataFrame(rows), named
