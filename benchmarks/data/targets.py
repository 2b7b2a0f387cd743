"""The mask a training step learns from (suite key `target`).

`binary`: the item's `mask`, letterboxed nearest (every dataset gives it). `soft` (ETRIS): the original mask
letterboxed bilinearly, so edge pixels hold the fraction of the referent they cover; the loss then samples it
to the logit grid as it does the binary one. Data rendered at the input size (shapes) has no resize, so there
the two are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from benchmarks.data import collate


def _collate_soft(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch = collate(items)
    batch["mask"] = torch.stack([item["letterbox"].apply_mask(item["orig_mask"], soft=True) for item in items])
    return batch


def training_collate(target: str) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    """The batch collation of training under `target` (module-level functions: DataLoader workers pickle it)."""
    if target == "binary":
        return collate
    if target == "soft":
        return _collate_soft
    raise ValueError(f"unknown training target {target!r}")
