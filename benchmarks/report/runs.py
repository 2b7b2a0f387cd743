"""Run records as a pandas table, and the choice of which runs a leaderboard row stands for.

A leaderboard row is one (suite, method, method config) at the learning rate its search chose; the
search runs at the other rates stay in results/ but are not averaged in. Off-budget runs never enter a
leaderboard. Every status is counted, so a method that diverged on one seed shows it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.sweep import pick_lr
from methods import get_method, list_methods

SPLIT_METRICS = ("mIoU", "oIoU", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9")
COST_COLUMNS = ("trainable", "total", "ratio_trainable", "added", "ratio_added", "gflops_per_image",
                "train_gflops_per_image", "peak_memory_train_mb", "train_seconds", "images_per_second")


def default_config(method: str) -> dict[str, Any] | None:
    """The registered default config of a method as plain data, or None for a method no longer registered."""
    import dataclasses

    if method not in list_methods():
        return None
    return json.loads(json.dumps(dataclasses.asdict(get_method(method).make_config())))


def variant_of(method: str, config: dict[str, Any]) -> str:
    """'default', or the options that differ from the registered default as 'key=value, ...'."""
    default = default_config(method)
    if default is None or config == default:
        return "default"
    keys = sorted(k for k in set(config) | set(default) if config.get(k) != default.get(k))
    return ", ".join(f"{k}={_plain(config.get(k))}" for k in keys)


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return "/".join(str(v) for v in value) or "none"
    return str(value)


def runs_frame(records: Iterable[tuple[Path, dict[str, Any]]]) -> pd.DataFrame:
    """One row per run record: identity, status, per-split metrics (split/metric columns), cost, curve."""
    rows = []
    for path, record in records:
        info, train, cost = record["run_info"], record["train_info"], record["cost"]
        suite = info["config"]["suite"]
        row: dict[str, Any] = {
            "path": str(path), "suite": info["suite"], "budget": _fingerprint(suite),
            "started_at": info.get("started_at") or "", "method": info["method"],
            "variant": variant_of(info["method"], info["method_config"]),
            "method_config": json.dumps(info["method_config"], sort_keys=True),
            "lr": info["lr"], "seed": info["seed"], "status": info["status"], "error": info["error"],
            "off_budget": bool(info["off_budget"]), "search_split": suite.get("lr_search_split", "val"),
            "first_seed": suite["seeds"][0], "steps_done": train["steps_done"], "curve": train.get("curve", []),
            "device": record["meta_info"].get("device", "?"), "git_sha": record["meta_info"].get("git_sha"),
        }
        params = cost.get("params") or {}
        row.update({k: params.get(k) for k in ("trainable", "total", "ratio_trainable", "added", "ratio_added")})
        row.update({k: cost.get(k) for k in ("gflops_per_image", "train_gflops_per_image", "peak_memory_train_mb")})
        row.update({k: train.get(k) for k in ("train_seconds", "images_per_second")})
        for split, metrics in record["results"].items():
            row.update({f"{split}/{k}": metrics.get(k) for k in SPLIT_METRICS})
            row.update({f"{split}/kind/{kind}": v for kind, v in metrics.get("per_kind", {}).items()})
            row[f"{split}/eval_seconds"] = metrics.get("eval_seconds")
        for split, baselines in record.get("baselines", {}).items():
            for name, metrics in baselines.items():
                row.update({f"baseline:{name}/{split}/{k}": metrics.get(k) for k in SPLIT_METRICS})
        rows.append(row)
    return pd.DataFrame(rows)


def _fingerprint(suite: dict[str, Any]) -> str:
    """Short hash of a suite's resolved settings: records made under an edited suite file differ here."""
    return hashlib.sha256(json.dumps(suite, sort_keys=True).encode()).hexdigest()[:8]


def current_budget(frame: pd.DataFrame) -> pd.DataFrame:
    """A suite's records under its most recently used settings (older budgets are reported as left out)."""
    on_budget = frame[~frame["off_budget"]]
    latest = (on_budget if len(on_budget) else frame).sort_values("started_at").iloc[-1]["budget"]
    return frame[frame["budget"] == latest]


def search_scores(group: pd.DataFrame) -> dict[float, float | None]:
    """Per learning rate, the search score the sweep uses: search-split mIoU of the first seed's ok run."""
    scores: dict[float, float | None] = {}
    for lr, at_lr in group.groupby("lr", sort=True):
        first = at_lr[(at_lr["seed"] == at_lr["first_seed"]) & (at_lr["status"] == "ok")]
        column = f"{at_lr['search_split'].iloc[0]}/mIoU"
        value = first[column].iloc[0] if len(first) and column in first else None
        scores[float(lr)] = None if value is None or math.isnan(value) else float(value)
    return scores


def leaderboard_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs each (suite, method, variant) row stands for: on-budget runs at the chosen learning rate."""
    if frame.empty:
        return frame
    on_budget = frame[~frame["off_budget"]]
    chosen = []
    for _, group in on_budget.groupby(["suite", "method", "variant"], sort=True):
        scores = search_scores(group)
        lr = pick_lr(scores, default=float(group["lr"].mode().iloc[0]))
        chosen.append(group[group["lr"] == lr])
    return pd.concat(chosen, ignore_index=True) if chosen else on_budget.iloc[0:0]


def status_counts(statuses: pd.Series) -> str:
    """'3 ok' or '2 ok, 1 diverged': every run is accounted for."""
    counts = statuses.value_counts()
    order = ["ok", "diverged", "oom", "failed", "interrupted"]
    return ", ".join(f"{counts[s]} {s}" for s in order if s in counts)


def aggregate(runs: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Per (suite, method, variant): mean, sample std and n of each column over the ok runs, plus status counts."""
    columns = [c for c in columns if c in runs]
    rows = []
    for (suite, method, variant), group in runs.groupby(["suite", "method", "variant"], sort=True):
        ok = group[group["status"] == "ok"]
        row: dict[str, Any] = {"suite": suite, "method": method, "variant": variant, "lr": group["lr"].iloc[0],
                               "runs": status_counts(group["status"]), "n": len(ok), "n_runs": len(group)}
        for column in columns:
            values = pd.to_numeric(ok[column], errors="coerce").dropna()
            row[column] = values.mean() if len(values) else math.nan
            row[f"{column}:std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)
