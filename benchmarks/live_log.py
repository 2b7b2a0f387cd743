"""Watching a run while it trains: `bench --log tensorboard` writes TensorBoard event files (torch's SummaryWriter).

At every curve point (the suite's `log_every`): the mean training loss, the learning rate and the mean gradient
norm; at every anytime evaluation (the suite's `eval_every`): the validation metrics and the predicted masks of the
first few expressions of the anytime subset, drawn over their images. Off by default, and tensorboard is an
optional extra (`pip install 'risbench[tensorboard]'`). Logging only reads the run: it draws no random number and
changes no gradient, so a logged run's record equals an unlogged one's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.metrics import PREC_THRESHOLDS
from benchmarks.predict import describe, overlay, probabilities, query_from_item
from riscore.errors import UserError

PREDICTIONS = 4  # expressions drawn at each evaluation: the same ones every time, to watch their masks change
EVENT_GLOB = "events.out.tfevents.*"
SCALAR_METRICS = ("mIoU", "oIoU", *(f"prec@{t}" for t in PREC_THRESHOLDS))


class LiveLog:
    """No live logging: every hook does nothing (the default, and every process but rank 0)."""

    def start(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        """Training begins (or resumes) at `step` with `optimizer`."""

    def curve_point(self, point: dict[str, float]) -> None:
        """A curve point closed: {"step", "loss", "lr"}."""

    def evaluation(self, step: int, split: str, scores: dict[str, Any], model: torch.nn.Module,
                   items: torch.utils.data.Dataset, *, device: torch.device, amp: torch.dtype | None,
                   threshold: float) -> None:
        """An anytime evaluation on `split` scored `scores`; `items` is the subset it scored."""

    def close(self) -> None:
        """The run is over: flush and release what the log holds."""


class TensorBoardLog(LiveLog):
    """Event files in `folder`, one folder per run (named like its record)."""

    def __init__(self, folder: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's module needs the tensorboard package
            raise UserError("--log tensorboard needs the tensorboard package: pip install 'risbench[tensorboard]'"
                            ) from None
        self._writer_class = SummaryWriter
        self.folder = folder
        self.writer = None
        self._norms: list[float] = []
        self._hook = None

    def start(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        if step == 0:  # a fresh run (also --force) replaces an earlier run's events; a resumed one continues them
            for old in self.folder.glob(EVENT_GLOB):
                old.unlink()
        # purge_step: events a killed run wrote after its last checkpoint are dropped, so the curve has no repeats
        self.writer = self._writer_class(log_dir=str(self.folder), purge_step=step or None)
        self._hook = optimizer.register_step_pre_hook(self._record_grad_norm)

    def _record_grad_norm(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """The norm of the gradient the optimizer is about to apply (unscaled, and clipped when the suite clips)."""
        grads = [p.grad.detach().float() for group in optimizer.param_groups for p in group["params"]
                 if p.grad is not None]
        if grads:
            self._norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    def curve_point(self, point: dict[str, float]) -> None:
        step = int(point["step"])
        self.writer.add_scalar("train/loss", point["loss"], step)
        self.writer.add_scalar("train/lr", point["lr"], step)
        if self._norms:
            self.writer.add_scalar("train/grad_norm", float(np.mean(self._norms)), step)
            self._norms = []

    def evaluation(self, step: int, split: str, scores: dict[str, Any], model: torch.nn.Module,
                   items: torch.utils.data.Dataset, *, device: torch.device, amp: torch.dtype | None,
                   threshold: float) -> None:
        for name in SCALAR_METRICS:
            if scores.get(name) is not None:
                self.writer.add_scalar(f"anytime_{split}/{name}", scores[name], step)
        for k in range(min(PREDICTIONS, len(items))):
            query = query_from_item(items[k])
            mask = (probabilities(model, query, device, amp) > threshold).numpy()
            picture = np.asarray(overlay(query.picture, mask, describe(query, mask)))
            self.writer.add_image(f"predictions/{k}", picture, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self._hook is not None:
            self._hook.remove()
        if self.writer is not None:
            self.writer.close()


def open_live_log(kind: str, folder: Path) -> LiveLog:
    """The log `--log KIND` asks for; a missing optional package is refused here, before any work."""
    return TensorBoardLog(folder) if kind == "tensorboard" else LiveLog()
