"""A run beside the committed reference (results/): does this environment reproduce the published numbers?

The reference records of a run are those of the same configuration (suite budget, method, options and
learning rate: one config hash), any seed. They give a mean and a seed spread to place the run in; a
reference record of the same seed must match the run metric for metric when code, packages, thread count
and device are the same (thread count alone changes float results), so any difference there is either
explained by a named change of environment or is a reproducibility bug.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from benchmarks.store import read_record

TIMING_KEYS = ("eval_seconds", "images_per_second")  # wall clock: never expected to repeat
SPREAD_STDS = 2.0  # "inside the seed spread": within this many sample standard deviations of the seeds' mean
COMPARED_METRICS = ("mIoU", "oIoU")
EXACT = "matches the reference exactly"
NOT_INSTALLED = "not installed"


@dataclass(frozen=True)
class Environment:
    """What a record says it ran on, field by field as the comparison names them."""

    code: str
    python: str
    packages: tuple[tuple[str, str], ...]
    device: str
    threads: str
    processes: str

    @classmethod
    def of(cls, record: dict[str, Any]) -> Environment:
        meta = record["meta_info"]
        device = str(meta.get("device", "?"))
        threads = meta.get("threads")
        if threads is None:  # records made before `threads` was its own field carry it in the CPU device name
            found = re.search(r"(\d+) threads?\b", device)
            threads = found.group(1) if found else "?"
        sha = meta.get("git_sha")
        code = (sha[:8] if sha else "?") + (" with local changes" if meta.get("git_dirty") else "")
        packages = tuple(sorted((name, NOT_INSTALLED if version is None else str(version))
                                for name, version in (meta.get("packages") or {}).items()))
        return cls(code=code, python=str(meta.get("python", "?")), packages=packages,
                   device=re.sub(r",? \d+ threads?\b", "", device), threads=str(threads),
                   processes=str(meta.get("world_size", 1)))


def environment_differences(run: Environment, reference: Iterable[Environment]) -> list[str]:
    """'torch 2.6.0 (reference: 2.5.1)' for every field or package where the run's value is none of the
    values the reference records used."""
    reference = list(reference)
    differences = []
    for field in fields(Environment):
        if field.name == "packages":
            continue
        theirs = sorted({getattr(env, field.name) for env in reference})
        mine = getattr(run, field.name)
        if mine not in theirs:
            differences.append(f"{field.name} {mine} (reference: {', '.join(theirs)})")
    mine_packages = dict(run.packages)
    for name in sorted(set(mine_packages) | {n for env in reference for n, _ in env.packages}):
        theirs = sorted({dict(env.packages).get(name, NOT_INSTALLED) for env in reference})
        mine = mine_packages.get(name, NOT_INSTALLED)
        if mine not in theirs:
            differences.append(f"{name} {mine} (reference: {', '.join(theirs)})")
    return differences


def metrics_of(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A record's results without the wall-clock fields: what the same seed and environment must repeat."""
    return {split: {k: v for k, v in values.items() if k not in TIMING_KEYS}
            for split, values in record["results"].items()}


def same_metrics(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Every metric of every split equal, compared as their JSON text so that NaN equals NaN."""
    return json.dumps(metrics_of(a), sort_keys=True) == json.dumps(metrics_of(b), sort_keys=True)


def largest_difference(mine: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]]) -> str:
    """The compared metric that moved most between two records, as 'val mIoU 45.10 vs 45.32'."""
    moved = [(abs(mine[s][m] - theirs[s][m]), f"{s} {m} {mine[s][m]:.2f} vs {theirs[s][m]:.2f}")
             for s in sorted(set(mine) & set(theirs)) for m in COMPARED_METRICS
             if m in mine[s] and m in theirs[s]]
    moved = [item for item in moved if item[0] > 0]
    return max(moved)[1] if moved else "the compared metrics agree; other fields differ"


def _ok_records(root: Path, record: dict[str, Any], own_path: Path | None, pattern: str) -> list[dict[str, Any]]:
    """Readable ok records of the run's suite and method under `root` matching `pattern`, not the run's own."""
    info = record["run_info"]
    own = own_path.resolve() if own_path else None
    found = []
    for path in sorted((root / info["suite"] / info["method"]).glob(pattern)):
        if path.resolve() == own:
            continue
        try:
            candidate = read_record(path)
        except ValueError:
            continue  # the report names unreadable files; here they are simply not reference
        if candidate["run_info"].get("status") == "ok":
            found.append(candidate)
    return found


def reference_records(root: Path, record: dict[str, Any], own_path: Path | None = None) -> list[dict[str, Any]]:
    """The ok records under `root` with the run's suite, method and config hash (any seed), in seed order;
    the run's own file is left out when it lives in the reference folder."""
    config_hash = record["run_info"]["config_hash"]
    found = [r for r in _ok_records(root, record, own_path, f"{config_hash[:12]}-seed*.json")
             if r["run_info"].get("config_hash") == config_hash]
    return sorted(found, key=lambda r: r["run_info"]["seed"])


def seeds_by_rate(root: Path, record: dict[str, Any], own_path: Path | None = None) -> dict[float, list[int]]:
    """Per learning rate, the reference seeds of the run's suite settings and method options: where the
    reference's seed spread lives when the run's own rate was only a search point."""
    info = record["run_info"]
    rates: dict[float, list[int]] = {}
    for candidate in _ok_records(root, record, own_path, "*.json"):
        theirs = candidate["run_info"]
        if (theirs.get("method_config") == info["method_config"]
                and theirs.get("config", {}).get("suite") == info["config"]["suite"]):
            rates.setdefault(float(theirs["lr"]), []).append(theirs["seed"])
    return {lr: sorted(set(seeds)) for lr, seeds in rates.items()}


@dataclass(frozen=True)
class Spread:
    """One metric of one split over the reference seeds."""

    mean: float
    std: float  # sample standard deviation; nan for a single seed
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan, len(values))

    def contains(self, value: float) -> bool | None:
        """Whether `value` lies within SPREAD_STDS sample standard deviations of the mean; None without a spread."""
        if math.isnan(self.std):
            return None
        return abs(value - self.mean) <= SPREAD_STDS * self.std


def spread_lines(record: dict[str, Any], references: list[dict[str, Any]]) -> list[str]:
    """Per split and compared metric: this run, the reference mean ± std, and whether the run is inside."""
    rows = []
    for split, values in record["results"].items():
        for metric in COMPARED_METRICS:
            known = [r["results"][split][metric] for r in references if metric in r["results"].get(split, {})]
            if metric not in values or not known:
                continue
            spread = Spread.of(known)
            inside = spread.contains(values[metric])
            verdict = {True: "inside", False: "OUTSIDE", None: "one seed: no spread"}[inside]
            std = "" if math.isnan(spread.std) else f" ± {spread.std:.2f}"
            rows.append((f"{split} {metric}", f"{values[metric]:.2f}", f"{spread.mean:.2f}{std}", verdict))
    if not rows:
        return []
    header = ("metric", "this run", "reference", f"within mean ± {SPREAD_STDS:g} std")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in (header, *rows)]


def rate_hint(record: dict[str, Any], references: list[dict[str, Any]], rates: dict[float, list[int]]) -> list[str]:
    """When the reference has more seeds of this method at another rate (the one its search chose), how to
    compare with them."""
    here = len(references)
    best = max(rates.items(), key=lambda item: (len(item[1]), -item[0]), default=None)
    if best is None or len(best[1]) <= max(here, 1):
        return []
    seeds = ", ".join(str(s) for s in best[1])
    return [f"  the reference ran seeds {seeds} at lr {best[0]:g} (this run: lr {record['run_info']['lr']:g}); "
            f"add --lr {best[0]:g} to compare with their spread"]


def _records(n: int) -> str:
    return f"{n} ok record" + ("" if n == 1 else "s")


def compare(record: dict[str, Any], references: list[dict[str, Any]], where: str = "results/",
            rates: dict[float, list[int]] | None = None) -> list[str]:
    """The lines `bench` prints after its summary: spread, same-seed check and environment differences.
    `rates` (seeds_by_rate) lets it point to the rate where the reference has more seeds."""
    info = record["run_info"]
    hint = rate_hint(record, references, rates or {})
    if not references:
        return [f"reference: no ok record of this configuration (config {info['config_hash'][:12]}) in {where}",
                *hint]
    seeds = ", ".join(str(r["run_info"]["seed"]) for r in references)
    lines = [f"beside the reference ({where}{info['suite']}/{info['method']}, {_records(len(references))} of "
             f"this configuration, seeds {seeds}):", *hint]
    if info["status"] != "ok":
        return [*lines, f"  this run ended {info['status']}: no metrics to compare"]
    lines += spread_lines(record, references)
    mine = Environment.of(record)
    same_seed = [r for r in references if r["run_info"]["seed"] == info["seed"]]
    if same_seed:
        twin = same_seed[0]
        differences = environment_differences(mine, [Environment.of(twin)])
        if same_metrics(record, twin):
            lines.append(f"  seed {info['seed']}: {EXACT}")
        else:
            moved = largest_difference(metrics_of(record), metrics_of(twin))
            lines.append(f"  seed {info['seed']}: differs from the reference record ({moved})" + (
                "" if differences else " with the same code, packages, thread count and device: not reproducible "
                "here, please report it"))
    else:
        differences = environment_differences(mine, [Environment.of(r) for r in references])
        lines.append(f"  seed {info['seed']} is not among the reference seeds: compare with the spread above")
    if differences:
        lines += [f"  environment differs from the reference: {'; '.join(differences)}"]
    else:
        lines += ["  environment: the reference's code, packages, thread count and device"]
    return lines
