"""Evaluation under the metrics protocol, plus the trivial baselines every leaderboard is read against.

Under torchrun each process scores a contiguous shard and the meters are merged in rank order, so the numbers
are those of one process scoring the whole set with the same weights.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from benchmarks import distributed
from benchmarks.data import collate
from benchmarks.metrics import IoUMeter, logits_to_masks
from benchmarks.per_expression import from_meter
from benchmarks.showcase import ShowcaseKeeper
from methods.model import RISModel


def eval_subset(dataset: Dataset, limit: int) -> Dataset:
    """The first `limit` expressions (all when 0): deterministic, so every method sees the same ones."""
    return dataset if limit <= 0 or limit >= len(dataset) else Subset(dataset, range(limit))


@torch.no_grad()
def batch_logits(model: RISModel, images: torch.Tensor, texts: list[str], device: torch.device,
                 autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """[B, h, w] float logits on the CPU for letterboxed images and their expressions: the forward pass that
    evaluation and `predict` share (the caller sets eval mode)."""
    tokens = model.backbone.tokenize(texts).to(device)
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = model(images.to(device), tokens)
    return logits.float().squeeze(1).cpu()


@torch.no_grad()
def evaluate(model: RISModel, dataset: Dataset, *, batch_size: int, threshold: float,
             device: torch.device, autocast_dtype: torch.dtype | None = None, showcase: bool = False
             ) -> dict[str, Any]:
    """mIoU, oIoU, Prec@X (percent) and per-kind mIoU over `dataset`, inference throughput, every
    expression's counts (`per_expression`, packed) and, with `showcase` (for evaluations whose results a record
    keeps), the predicted masks of a few fixed ones (`showcase`)."""
    meter, keeper = IoUMeter(), ShowcaseKeeper() if showcase else None
    items = item_indices(dataset)
    shard = distributed.shard(len(dataset))
    shard_items = iter(items[shard.start:shard.stop])
    if len(shard) < len(dataset):
        dataset = Subset(dataset, shard)
    # its own generator: a DataLoader otherwise draws a seed from the global RNG, and an evaluation during
    # training must leave the training's random stream untouched
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                        generator=torch.Generator())
    was_training = model.training
    model.eval()
    seen, started = 0, time.perf_counter()
    try:
        for batch in loader:
            logits = batch_logits(model, batch["image"], batch["text"], device, autocast_dtype)
            predictions = logits_to_masks(logits, batch["letterbox"], threshold)
            for pred, target, kind in zip(predictions, batch["orig_mask"], batch["kind"], strict=True):
                meter.update(pred, target, kind)
                if keeper is not None:
                    keeper.offer(next(shard_items), pred, kind)
            seen += logits.shape[0]
    finally:
        model.train(was_training)
    parts = distributed.gather((meter, seen, time.perf_counter() - started, keeper))
    meter = IoUMeter.merged(part[0] for part in parts)
    seen, elapsed = sum(part[1] for part in parts), max(part[2] for part in parts)
    scores = {**meter.compute(), "eval_seconds": elapsed, "images_per_second": seen / elapsed if elapsed else None,
              "per_expression": from_meter(meter, items)}
    if showcase:
        scores["showcase"] = ShowcaseKeeper.merged([part[3] for part in parts]).pack()
    return scores


def item_indices(dataset: Dataset) -> list[int]:
    """The underlying dataset's index of each item of `dataset` (a Subset's indices, or 0..n-1)."""
    return [int(i) for i in dataset.indices] if isinstance(dataset, Subset) else list(range(len(dataset)))


def trivial_baselines(dataset: Dataset) -> dict[str, dict[str, Any]]:
    """Scores of predictions that ignore the expression, so a method's numbers have a floor to beat.

    predict_all marks the whole image; largest_object (when the dataset can list a scene's objects)
    picks the biggest object regardless of what the expression says.
    """
    meters = {"predict_all": IoUMeter()}
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    indices = list(dataset.indices) if isinstance(dataset, Subset) else range(len(dataset))
    shard = distributed.shard(len(indices))
    has_objects = hasattr(base, "object_masks")
    if has_objects:
        meters["largest_object"] = IoUMeter()
    for index in indices[shard.start:shard.stop]:
        item = base[index]
        target = item["orig_mask"]
        meters["predict_all"].update(torch.ones_like(target), target, item["kind"])
        if has_objects:
            objects = base.object_masks(index)
            largest = max(objects, key=lambda m: int(m.sum()))
            meters["largest_object"].update(largest, target, item["kind"])
    parts = distributed.gather(meters)
    return {name: IoUMeter.merged(part[name] for part in parts).compute() for name in meters}
