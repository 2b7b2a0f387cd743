"""Checkpoint selection as ETRIS does it, reported next to the last step, never instead of it.

With suite key `select_every` > 0, training scores the weights every `select_every` steps and at its last step
on the selection set: the first expression of each referent of `select_split` (ETRIS validates on a
referent's first sentence), at most `eval_limit` of them. The best weights (ties: the later, as ETRIS's `>=`)
are kept on the CPU and in every checkpoint, so a resumed run selects exactly as an uninterrupted one. At the
end the record's `results` stay the last step's (leaderboards read them) and `selection` adds which split
selected, at which step, the scores along the way, and the metrics of the selected weights on every
evaluation split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from benchmarks.checkpoint import copied_weights, weights_loaded
from benchmarks.data import build_dataset
from benchmarks.sampling import referent_ids
from benchmarks.suites import Suite


def selection_set(suite: Suite) -> Dataset:
    """The first expression of each referent of the selection split, in dataset order, at most eval_limit."""
    split = build_dataset(suite.dataset, suite.select_split, suite.image_size, suite.dataset_options)
    seen: set[int] = set()
    firsts = [i for i, ref in enumerate(referent_ids(split, "checkpoint selection"))
              if not (ref in seen or seen.add(ref))]
    return Subset(split, firsts[:suite.eval_limit] if suite.eval_limit else firsts)


@dataclass
class Selection:
    """The selection state of a run: what a checkpoint saves so that a resumed run selects the same weights."""

    history: list[dict[str, float]] = field(default_factory=list)  # {"step", "mIoU"} per selection evaluation
    best_step: int | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0  # time spent scoring (not training time)
    expressions: int = 0  # size of the selection set

    @staticmethod
    def due(step: int, suite: Suite) -> bool:
        return bool(suite.select_every) and (step % suite.select_every == 0 or step == suite.steps)

    def holds(self, step: int) -> bool:
        return any(p["step"] == step for p in self.history)

    def consider(self, step: int, miou: float, model: torch.nn.Module, seconds: float, expressions: int) -> None:
        """Record the score of the weights at `step`; keep them when they are the best so far."""
        self.history.append({"step": step, "mIoU": miou})
        self.seconds += seconds
        self.expressions = expressions
        if self.best_step is None or miou >= self.best_score:
            self.best_step, self.best_weights = step, copied_weights(model)

    @property
    def best_score(self) -> float:
        return next(p["mIoU"] for p in self.history if p["step"] == self.best_step)

    def state(self) -> dict[str, Any]:
        return {"history": self.history, "best_step": self.best_step, "best_weights": self.best_weights,
                "seconds": self.seconds, "expressions": self.expressions}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Selection:
        if not state:
            return cls()
        weights = state["best_weights"]
        if weights is not None:
            weights = {name: tensor.cpu() for name, tensor in weights.items()}
        return cls(list(state["history"]), state["best_step"], weights, state["seconds"], state["expressions"])

    def record(self, suite: Suite, model: torch.nn.Module, last_step: int, last_results: dict[str, Any],
               score: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """The record's `selection` (None when off): `score()` evaluates the model on every evaluation split and
        is called with the selected weights loaded, unless they are the last step's; the model keeps its last
        weights afterwards (its saved copy and `results` belong together)."""
        if not suite.select_every or self.best_weights is None:
            return None
        if self.best_step == last_step:
            results = last_results  # the same weights: the same numbers
        else:
            with weights_loaded(model, self.best_weights):
                results = score()
        return {"split": suite.select_split, "every": suite.select_every, "step": self.best_step,
                "score": self.best_score, "expressions": self.expressions, "history": self.history,
                "selection_seconds": self.seconds, "results": results}
