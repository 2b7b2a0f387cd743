"""Datasets by name, and the batch collation every dataset shares (see the item contract in shapes.py)."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import Dataset

from benchmarks.errors import UserError

DATA_ROOT_ENV = "RISBENCH_DATA"


def build_dataset(name: str, split: str, image_size: int, options: dict[str, Any] | None = None) -> Dataset:
    """The dataset `name` at `split`, rendered or letterboxed to `image_size`."""
    options = dict(options or {})
    if name == "shapes":
        from benchmarks.data.shapes import ShapesConfig, ShapesDataset

        try:
            config = ShapesConfig(image_size=image_size, **options)
        except (TypeError, ValueError) as exc:
            raise UserError(f"shapes dataset options: {exc}") from None
        return ShapesDataset(split, config)
    if name in ("refcoco", "refcoco+", "refcocog"):
        from benchmarks.data.refcoco import RefCOCODataset

        root = options.pop("root", None) or os.environ.get(DATA_ROOT_ENV)
        if not root:
            raise UserError(
                f"dataset '{name}' needs its data root: set {DATA_ROOT_ENV}=/path/to/refer_data "
                "(see README, 'RefCOCO data')"
            )
        return RefCOCODataset(name, split, root=root, image_size=image_size, **options)
    raise UserError(f"unknown dataset '{name}'; known datasets: shapes, refcoco, refcoco+, refcocog")


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors a step needs; keep per-item evaluation data (original masks, letterboxes) as lists."""
    batch: dict[str, Any] = {key: [item[key] for item in items] for key in items[0]}
    batch["image"] = torch.stack(batch["image"])
    batch["mask"] = torch.stack(batch["mask"])
    return batch
