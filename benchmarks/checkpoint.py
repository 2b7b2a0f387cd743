"""Checkpoints that let an interrupted or killed run resume and finish with the same result.

A checkpoint is two files written atomically, then committed by rewriting `latest.json`:
`step-N.safetensors` (trainable parameters and all buffers) and `step-N.pt` (optimizer, scheduler, loss
scaler, RNG states, loss curve, elapsed time, selection state). A reader only ever follows `latest.json`, so a
kill at any moment leaves either the previous or the new checkpoint, never half of one.

A checkpoint damaged after the fact (a truncated file, a pointer to a missing step, contents that do not fit
the model) is reported in one warning line, removed, and the run starts afresh: only the latest checkpoint is
kept, so there is no older good one, and a run must never be stuck on a file it cannot read.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save

from benchmarks.environment import git_state
from benchmarks.store import ResultStore, RunSpec, atomic_write_bytes, atomic_write_text


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trained_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What training can change: trainable parameters and every buffer (e.g. BatchNorm statistics)."""
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k in trainable | buffers}


def copied_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of trained_weights: on the CPU those share the parameters' storage, which training goes on changing."""
    return {name: tensor.clone() for name, tensor in trained_weights(model).items()}


@contextlib.contextmanager
def weights_loaded(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> Iterator[torch.nn.Module]:
    """`model` holding `weights` (trained_weights of another step) inside the block, and its own again after it."""
    own = copied_weights(model)
    model.load_state_dict(weights, strict=False)
    try:
        yield model
    finally:
        model.load_state_dict(own, strict=False)


class Checkpointer:
    """Checkpoints of one run (one config hash and seed) in their own folder."""

    def __init__(self, folder: Path, config_hash: str, code_version: str | None = None):
        """`code_version` (the git sha by default) must match for a resume: a run must not mix two versions
        of the code, which its record could not tell apart."""
        self.folder = Path(folder)
        self.config_hash = config_hash
        self.code_version = code_version if code_version is not None else str(git_state()["git_sha"])

    @classmethod
    def for_run(cls, root: Path, store: ResultStore, spec: RunSpec) -> Checkpointer:
        """The checkpoints of `spec` under `root`, laid out like its record: <suite>/<method>/<hash>-seed<k>/."""
        return cls(Path(root) / store.path_for(spec).relative_to(store.root).with_suffix(""), spec.config_hash)

    def save(self, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: Any, progress: dict[str, Any], scaler: torch.amp.GradScaler | None = None) -> None:
        """`scaler`: the fp16 loss scaler, whose scale and growth counter decide which later steps are skipped."""
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.folder / f"step-{step}.safetensors", save(trained_weights(model)))
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict() if scaler is not None else {}, "rng": rng_state(), "progress": progress}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.folder / f"step-{step}.pt", buffer.getvalue())
        previous = self.latest_step()
        atomic_write_text(self.folder / "latest.json", json.dumps(
            {"step": step, "config_hash": self.config_hash, "code_version": self.code_version}) + "\n")
        if previous is not None and previous != step:
            for suffix in (".safetensors", ".pt"):
                (self.folder / f"step-{previous}{suffix}").unlink(missing_ok=True)

    def latest_step(self) -> int | None:
        try:
            pointer = json.loads((self.folder / "latest.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(pointer, dict) or not isinstance(pointer.get("step"), int):
            return None  # not a pointer this code wrote: the run starts afresh and its first save replaces it
        if pointer.get("config_hash") != self.config_hash:
            return None
        if pointer.get("code_version") != self.code_version:
            print(f"ignoring checkpoint {self.folder}: written by code version {pointer.get('code_version')}, "
                  f"this is {self.code_version}; starting the run afresh", file=sys.stderr)
            return None
        return pointer["step"]

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             device: torch.device, scaler: torch.amp.GradScaler | None = None) -> dict[str, Any] | None:
        """Restore the latest checkpoint into the given objects; returns its progress dict, or None when there
        is none or it is unusable (then nothing was changed)."""
        step = self.latest_step()
        if step is None:
            return None
        try:
            weights, state = self._read(step, model, device)
        except Exception as exc:  # whatever is wrong with the files, the run goes on without them
            print(f"warning: checkpoint {self.folder} (step {step}) is unusable ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); removed it, starting the run afresh",
                  file=sys.stderr)
            self.clear()
            return None
        model.load_state_dict(weights, strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        return state["progress"]

    def _read(self, step: int, model: torch.nn.Module,
              device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Both files of `step`, checked against the model before anything is restored."""
        weights = load_file(str(self.folder / f"step-{step}.safetensors"), device=str(device))
        own = model.state_dict()
        unfit = sorted(k for k, v in weights.items() if k not in own or own[k].shape != v.shape)
        if unfit:
            raise ValueError(f"tensors that do not fit the model: {unfit[:3]}")
        state = torch.load(self.folder / f"step-{step}.pt", map_location=device, weights_only=False)
        missing = {"optimizer", "scheduler", "scaler", "rng", "progress"} - set(state)
        if missing or state["progress"].get("step") != step:
            raise ValueError(f"state file lacks {sorted(missing)} or is not of step {step}")
        return weights, state

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
