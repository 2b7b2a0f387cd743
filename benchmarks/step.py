"""One optimisation step and what sets it up (optimizer, schedule, precision), exactly as every run takes it.

Its own module so that training (benchmarks/train.py) and profiling (benchmarks/profile.py), which times
this very step, both build on it without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from benchmarks import distributed
from benchmarks.suites import Suite
from methods.decoder import segmentation_loss


class Diverged(Exception):
    """The loss became NaN or infinite."""


def training_step(model: torch.nn.Module, suite: Suite, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                  tokens: torch.Tensor, masks: torch.Tensor, amp: torch.dtype | None,
                  scaler: torch.amp.GradScaler | None = None) -> float:
    """One optimisation step exactly as every run takes it; a NaN/inf loss raises Diverged before the update.

    `model` may be the DistributedDataParallel wrapper: the returned loss is then the mean over processes, so
    all of them see the same value and a divergence on any one stops every one at the same step. With an
    enabled `scaler` (fp16) the loss is scaled for the backward pass, gradients are unscaled before clipping,
    and a step whose gradients overflowed is skipped while the scale shrinks (torch.amp's loss scaling).
    """
    scaler = scaler or _NO_SCALING
    with torch.autocast(images.device.type, dtype=amp, enabled=amp is not None):
        loss = segmentation_loss(model(images, tokens).float(), masks)
    logged = distributed.mean(loss)
    if not torch.isfinite(logged):
        raise Diverged(f"loss became {logged.item()}")
    scaler.scale(loss).backward()
    if suite.grad_clip > 0:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, suite.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return logged.item()


def lr_factor(suite: Suite, step: int) -> float:
    """Multiplier of the base learning rate at `step` (0-based): linear warm-up, then the schedule."""
    if step < suite.warmup_steps:
        return (step + 1) / suite.warmup_steps
    if suite.schedule == "step":
        return 0.1 if step >= int(suite.lr_drop_at * suite.steps) else 1.0
    if suite.schedule == "cosine":
        span = max(1, suite.steps - suite.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * (step - suite.warmup_steps) / span))
    return 1.0


def make_optimizer(suite: Suite, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if suite.optimizer == "adamw" else torch.optim.Adam
    # fused kernels exist for CPU and CUDA and give the same updates as the per-tensor loop, faster
    return kind(params, lr=lr, weight_decay=suite.weight_decay, fused=True)


@dataclass(frozen=True)
class Precision:
    """What a run computes in: the autocast dtype of training and of evaluation (None: fp32), and whether the
    training loss is scaled (fp16 needs it: its gradients underflow)."""

    train: torch.dtype | None = None
    eval: torch.dtype | None = None

    @classmethod
    def of(cls, suite: Suite, device: torch.device) -> Precision:
        """The suite's precision on `device`. CPU runs fp32 whatever the suite says (bf16 and fp16 autocast
        are slow or partial there); the record states the precision actually used (`describe`)."""
        if device.type != "cuda" or suite.precision == "fp32":
            return cls()
        if suite.precision == "fp16":
            return cls(train=torch.float16)  # ETRIS: fp16 autocast + GradScaler in training, fp32 evaluation
        return cls(train=torch.bfloat16, eval=torch.bfloat16)

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """The loss scaler of a run (a pass-through unless training in fp16); its state is checkpointed."""
        return torch.amp.GradScaler(device.type, enabled=self.train == torch.float16)

    def describe(self) -> dict[str, str]:
        return {"precision": _NAMES[self.train], "eval_precision": _NAMES[self.eval]}


_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
_NO_SCALING = torch.amp.GradScaler("cpu", enabled=False)


def autocast_dtype(suite: Suite, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of evaluation and inference (predict, evaluate, profile's inference step)."""
    return Precision.of(suite, device).eval
