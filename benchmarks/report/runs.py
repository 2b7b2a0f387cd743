"""Run records as a pandas table, and the choice of which runs a leaderboard row stands for.

A leaderboard row is one (suite, method, method config) at the learning rate its search chose; the
search runs at the other rates stay in results/ but are not averaged in. Off-budget runs and runs of seeds
outside the suite's seeds (`bench --seed 7`) never enter a leaderboard: they are counted beside it. Every
status is counted, so a method that diverged on one seed shows it.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks import showcase
from benchmarks.per_expression import PerExpression, unpack
from benchmarks.store import STATUSES
from benchmarks.suites import identity_of
from benchmarks.sweep import pick_lr
from methods import get_method, list_methods
from riscore.identity import config_identity

SPLIT_METRICS = ("mIoU", "oIoU", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9")
COST_COLUMNS = ("trainable", "total", "ratio_trainable", "added", "ratio_added", "ratio_paper", "gflops_per_image",
                "train_gflops_per_image", "peak_memory_train_mb", "train_seconds", "images_per_second")


def default_config(method: str) -> dict[str, Any] | None:
    """The registered default config of a method as plain data, or None for a method no longer registered."""
    if method not in list_methods():
        return None
    return json.loads(json.dumps(config_identity(get_method(method).make_config())))


# Suite keys that are an ablation axis (a row of its own, like a method option), not the suite's budget
ABLATION_KEYS = ("decoder_options",)


def run_variant(method: str, method_config: dict[str, Any], suite: dict[str, Any]) -> str:
    """The method's variant, plus any decoder component the suite turned off (`decoder.global_alignment=false`):
    such runs are rows beside the suite's others, not a new budget."""
    decoder = [f"decoder.{k}={plain(v)}" for k, v in sorted((suite.get("decoder_options") or {}).items())]
    variant = variant_of(method, method_config)
    return ", ".join(([] if variant == "default" else [variant]) + decoder) if decoder else variant


def variant_of(method: str, config: dict[str, Any]) -> str:
    """'default', or the options that differ from the registered default as 'key=value, ...'."""
    default = default_config(method)
    if default is None or config == default:
        return "default"
    keys = sorted(k for k in set(config) | set(default) if config.get(k) != default.get(k))
    return ", ".join(f"{k}={plain(config.get(k))}" for k in keys)


def plain(value: Any) -> str:
    """An option value as variant names and ablation tables show it: strings as they are, anything else as
    compact JSON ([1,3,5], null), so distinct configs never share a name and ', ' only ever separates keys."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def runs_frame(records: Iterable[tuple[Path, dict[str, Any]]]) -> pd.DataFrame:
    """One row per run record: identity, status, per-split metrics (split/metric columns), cost, curve.

    A record that parses but lacks a field the report needs, or holds it with the wrong type (a learning rate
    "abc"), is skipped with a warning naming it."""
    rows = []
    for path, record in records:
        try:
            rows.append(_row(path, record))
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            warnings.warn(f"skipping {path}: run record lacks or mistypes a field ({exc.__class__.__name__}: "
                          f"{exc})", stacklevel=2)
    return pd.DataFrame(rows)


def _row(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    info, train, cost, meta = record["run_info"], record["train_info"], record["cost"], record["meta_info"]
    suite = info["config"]["suite"]
    row: dict[str, Any] = {
        "path": str(path), "suite": info["suite"], "budget": _fingerprint(suite),
        "started_at": info["started_at"] or "", "method": info["method"],
        "variant": run_variant(info["method"], info["method_config"], suite),
        "lr": float(info["lr"]), "seed": info["seed"], "status": info["status"], "error": info["error"],
        "off_budget": bool(info["off_budget"]), "search_split": suite["lr_search_split"],
        "lr_grid": tuple(float(v) for v in suite["lr_grid"]), "suite_lr": float(suite["lr"]),
        "first_seed": suite["seeds"][0], "suite_seed": info["seed"] in suite["seeds"],
        "suite_seeds": tuple(suite["seeds"]),
        "steps_done": train["steps_done"], "curve": train.get("curve") or [],
        "device": meta.get("device", "?").replace(" 1 threads)", " 1 thread)"),  # as older records said it
        "git_sha": meta.get("git_sha"), "world_size": meta.get("world_size", 1),
        "memory_kind": cost.get("memory_kind"), "memory_cap_gb": cost.get("memory_cap_gb"),
        "over_memory_cap": cost.get("over_memory_cap"), "anytime": train.get("anytime") or [],
        "anytime_split": train.get("anytime_split"), "anytime_expressions": train.get("anytime_expressions"),
        "flop_convention": cost.get("flop_convention"),
    }
    params = cost.get("params") or {}
    row.update({k: params.get(k) for k in ("trainable", "total", "ratio_trainable", "added", "ratio_added",
                                           "ratio_paper")})
    row.update({k: cost.get(k) for k in ("gflops_per_image", "train_gflops_per_image", "peak_memory_train_mb")})
    row.update({k: train.get(k) for k in ("train_seconds", "images_per_second")})
    for split, metrics in record["results"].items():
        row.update({f"{split}/{k}": metrics.get(k) for k in SPLIT_METRICS})
        row[f"{split}/per_expression"] = _per_expression(path, split, metrics)
        row[f"{split}/showcase"] = _showcase(path, split, metrics)
        row.update({f"{split}/kind/{kind}": v for kind, v in metrics.get("per_kind", {}).items()})
        row[f"{split}/eval_seconds"] = metrics.get("eval_seconds")
    selection = record.get("selection") or {}  # ETRIS's checkpoint selection (suite key select_every)
    row["selected_on"] = selection.get("split")
    for split, metrics in (selection.get("results") or {}).items():
        row.update({f"selected:{split}/{k}": metrics.get(k) for k in SPLIT_METRICS})
    for split, baselines in record.get("baselines", {}).items():
        for name, metrics in baselines.items():
            row.update({f"baseline:{name}/{split}/{k}": metrics.get(k) for k in SPLIT_METRICS})
    return row


def _per_expression(path: Path, split: str, metrics: dict[str, Any]) -> PerExpression | None:
    """The split's per-expression arrays; None for records made before they were kept, or unreadable ones."""
    if "per_expression" not in metrics:
        return None
    try:
        return unpack(metrics["per_expression"])
    except ValueError as exc:
        warnings.warn(f"{path}: {split} per-expression data ignored: {exc}", stacklevel=2)
        return None


def _showcase(path: Path, split: str, metrics: dict[str, Any]) -> showcase.Showcase | None:
    """The split's kept predicted masks; None for records made before they were kept, or unreadable ones."""
    if "showcase" not in metrics:
        return None
    try:
        return showcase.unpack(metrics["showcase"])
    except ValueError as exc:
        warnings.warn(f"{path}: {split} kept masks ignored: {exc}", stacklevel=2)
        return None


def _fingerprint(suite: dict[str, Any]) -> str:
    """Short hash of a suite's resolved settings: records made under an edited suite file differ here."""
    settings = {k: v for k, v in identity_of(suite).items() if k not in ABLATION_KEYS}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def current_budget(frame: pd.DataFrame) -> pd.DataFrame:
    """A suite's records under its most recently used settings (older budgets are reported as left out)."""
    on_budget = frame[~frame["off_budget"]]
    newest = (on_budget if len(on_budget) else frame).sort_values(["started_at", "path"], kind="stable")
    return frame[frame["budget"] == newest.iloc[-1]["budget"]]


def search_state(group: pd.DataFrame) -> tuple[dict[float, float | None], bool]:
    """Per rate of the suite's grid, the score the sweep uses (search-split mIoU of the first seed's ok run),
    and whether the search is complete (every rate has a first-seed record that is not interrupted), exactly
    as benchmarks.sweep.chosen_lr sees it."""
    first = group.iloc[0]
    scores: dict[float, float | None] = {}
    complete = True
    for lr in first["lr_grid"]:
        runs = group[(group["lr"] == lr) & (group["seed"] == first["first_seed"])]
        if runs.empty or (runs["status"] == "interrupted").all():
            complete = False
        ok = runs[runs["status"] == "ok"]
        value = ok[f"{first['search_split']}/mIoU"].iloc[0] if len(ok) and f"{first['search_split']}/mIoU" in ok \
            else None
        scores[lr] = None if value is None or math.isnan(value) else float(value)
    return scores, complete


def leaderboard_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs each (suite, method, variant) row stands for: on-budget runs of the suite's seeds at the rate
    the search chose (the suite's default rate when no search run is usable, as the sweep does), with
    `search_complete`."""
    if frame.empty:
        return frame
    on_budget = frame[~frame["off_budget"] & frame["suite_seed"]]
    chosen = []
    for _, group in on_budget.groupby(["suite", "method", "variant"], sort=True):
        scores, complete = search_state(group)
        lr = pick_lr(scores, default=group["suite_lr"].iloc[0])
        chosen.append(group[group["lr"] == lr].assign(search_complete=complete))
    return pd.concat(chosen, ignore_index=True) if chosen else on_budget.iloc[0:0]


def seeds_pending(groups: Mapping[str, pd.DataFrame], seeds: Iterable[int] | None = None) -> dict[str, list[int]]:
    """Rows with some of the suite's `seeds` (default: those each row's records name) not run to an end yet at the
    chosen rate (no record, or an interrupted one: a sweep still running): label -> those seeds. Ranked or
    compared beside finished rows, such a row's tie would only say that it has too few seeds. A seed that failed
    or diverged has ended."""
    pending = {}
    for label, group in groups.items():
        if group.empty:
            continue
        wanted = set(seeds if seeds is not None else group["suite_seeds"].iloc[0])
        left = sorted(wanted - set(group.loc[group["status"] != "interrupted", "seed"]))
        if left:
            pending[label] = left
    return pending


def grid_edges(groups: Mapping[str, pd.DataFrame]) -> dict[str, tuple[str, float]]:
    """Rows (label -> their chosen runs, leaderboard_runs) whose complete learning-rate search chose the lowest or
    highest rate of its grid: label -> ("lowest" or "highest", the rate). The best rate may lie beyond the grid,
    so such a row may be under-tuned beside rows whose search found an interior optimum."""
    edges = {}
    for label, group in groups.items():
        if group.empty or not group["search_complete"].iloc[0] or len(group["lr_grid"].iloc[0]) < 2:
            continue
        lr, grid = float(group["lr"].iloc[0]), group["lr_grid"].iloc[0]
        searched = (group["seed"] == group["first_seed"].iloc[0]) & (group["status"] == "ok")
        if searched.any() and lr in (min(grid), max(grid)):  # not the default rate for want of a usable search
            edges[label] = ("lowest" if lr == min(grid) else "highest", lr)
    return edges


def grid_edge_note(edges: Mapping[str, tuple[str, float]], where: str = "") -> list[str]:
    """A sentence naming the rows whose search chose an end of its grid, if any (`where`: on which suite)."""
    if not edges:
        return []
    named = "; ".join(f"{label} ({lr:g}, the {end})" for label, (end, lr) in sorted(edges.items()))
    return [f"Learning rate at an end of the searched grid{where}: {named}. The best rate may lie beyond the grid, so "
            "these may be under-tuned beside the others; a wider search would tell (`sweep --budget "
            "lr_grid=R1,R2,... --allow-budget-override`: off budget, so not on this page).", ""]


def seeds_to_go(seeds: list[int]) -> str:
    return f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))} to go"


def status_counts(statuses: pd.Series) -> str:
    """'3 ok' or '2 ok, 1 diverged': every run is accounted for, unknown statuses too."""
    counts = statuses.value_counts()
    order = [s for s in STATUSES if s in counts] + sorted(s for s in counts.index if s not in STATUSES)
    return ", ".join(f"{counts[s]} {s}" for s in order)


def aggregate(runs: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Per (suite, method, variant): mean, sample std and n of each column over the ok runs, plus status counts."""
    columns = [c for c in columns if c in runs]
    rows = []
    for (suite, method, variant), group in runs.groupby(["suite", "method", "variant"], sort=True):
        ok = group[group["status"] == "ok"]
        runs = status_counts(group["status"])
        if "search_complete" in group and not group["search_complete"].iloc[0]:
            runs += " (lr search incomplete)"
        row: dict[str, Any] = {"suite": suite, "method": method, "variant": variant, "lr": group["lr"].iloc[0],
                               "runs": runs, "n": len(ok), "n_runs": len(group)}
        for column in columns:
            values = pd.to_numeric(ok[column], errors="coerce").dropna()
            row[column] = values.mean() if len(values) else math.nan
            row[f"{column}:std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def at_chosen_rates(frame: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Every on-budget run of `frame`, of any seed, at the learning rate its row of `chosen` (leaderboard_runs)
    stands for: what a figure may draw on beyond the suite's seeds."""
    keys = ["suite", "method", "variant", "lr"]
    return frame[~frame["off_budget"]].merge(chosen[keys].drop_duplicates(), on=keys, how="inner")
