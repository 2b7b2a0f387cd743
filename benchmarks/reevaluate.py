"""`risbench evaluate`: score a saved model again, on any split and limit of its suite or of another suite on the
same backbone, through the evaluation that runs use (train.evaluate_splits); optionally as a record of its own.

A re-evaluation record has the run record's layout with `run_info.reevaluation = true` and no training; it is
never written into the committed results/, whose records the reports read as training runs.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchmarks import environment, validate
from benchmarks.saved_model import DEFAULT_WEIGHTS, SavedModel
from benchmarks.step import autocast_dtype
from benchmarks.store import DEFAULT_RESULTS, SCHEMA_VERSION, atomic_write_text, run_info
from benchmarks.suites import Suite
from benchmarks.train import evaluate_splits
from riscore.errors import UserError

COMPARED = ("mIoU", "oIoU", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9", "n")


def evaluation_suite(suite: Suite, splits: list[str] | None, limit: int | None) -> Suite:
    """`suite` restricted to `splits` (default: its eval_splits) and `limit` expressions (0: whole splits)."""
    splits = list(dict.fromkeys(splits or suite.eval_splits))
    limit = suite.eval_limit if limit is None else limit
    # lr_search_split must be one of eval_splits; it plays no part in an evaluation
    return dataclasses.replace(suite, eval_splits=tuple(splits), eval_limit=limit, lr_search_split=splits[0])


def check_record_path(path: Path) -> None:
    validate.writable_file(path, "--record", (".json",))
    resolved = path.resolve()
    if resolved == DEFAULT_RESULTS or DEFAULT_RESULTS in resolved.parents:
        raise UserError(f"--record {path}: results/ holds training runs only (reports read it); write the "
                        "re-evaluation elsewhere, e.g. runs/reevaluations/NAME.json")


def reevaluate(saved: SavedModel, suite: Suite, device: torch.device, weights: str = DEFAULT_WEIGHTS
               ) -> dict[str, Any]:
    """A re-evaluation record of `saved`'s `weights` (last or selected) on `suite`'s eval_splits and eval_limit."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    model = saved.build(device, suite, weights)
    results, baselines = evaluate_splits(model, suite, device, autocast_dtype(suite, device))
    spec = saved.spec
    return {
        "schema_version": SCHEMA_VERSION,
        "run_info": run_info(spec, suite.name, "ok", None, started_at, reevaluation=True, model=str(saved.folder),
                             weights=weights, trained_suite=spec.suite.name, eval_splits=list(suite.eval_splits),
                             eval_limit=suite.eval_limit),
        "train_info": {},
        "results": results,
        "baselines": baselines,
        "cost": {"params": model.parameter_counts().to_dict()},
        "meta_info": environment.describe(device),
    }


def compare_with_record(saved: SavedModel, suite: Suite, results: dict[str, Any], weights: str = DEFAULT_WEIGHTS
                        ) -> list[str]:
    """One line per split that the training run also scored, for the same `weights`, under the same data and
    limit: reproduced or not."""
    trained = saved.spec.suite
    same_data = (suite.dataset, suite.dataset_options, suite.eval_limit, suite.threshold) == (
        trained.dataset, trained.dataset_options, trained.eval_limit, trained.threshold)
    recorded = saved.recorded_results(weights)
    source = "the record" if weights == "last" else "the record's selection"
    lines = []
    for split, metrics in results.items():
        if not same_data or split not in recorded:
            continue
        differing = [f"{k} {metrics.get(k)} vs {recorded[split].get(k)}" for k in COMPARED
                     if metrics.get(k) != recorded[split].get(k)]
        lines.append(f"{split}: reproduces {source} exactly (mIoU {metrics['mIoU']:.2f})" if not differing
                     else f"{split}: differs from {source}: {'; '.join(differing)}")
    return lines


def write_record(record: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
