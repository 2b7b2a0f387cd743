"""Which training items each step takes: the order of an epoch as a pure function of (seed, epoch).

Two epochs (suite key `sampling`): `expression` permutes every expression of the training split; `referent`
(ETRIS) permutes the referents and takes one of each referent's sentences at random, so an epoch has as many
items as referents (42,404 on RefCOCO). Either way the batch of any step is known without replaying the steps
before it, which is what lets a killed run resume exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import torch
from torch.utils.data import Dataset

from riscore.errors import UserError


def _generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class EpochOrder(Protocol):
    size: int  # items per epoch (before dropping the last partial batch)

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        """Dataset indices of epoch `epoch`, `size` of them."""


class ExpressionOrder:
    """Every expression once per epoch, in a random order."""

    def __init__(self, size: int) -> None:
        self.size = size

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        return torch.randperm(self.size, generator=_generator(seed, epoch))


class ReferentOrder:
    """Every referent once per epoch, in a random order, each as one of its sentences drawn at random."""

    def __init__(self, ref_ids: Sequence[int]) -> None:
        ids = torch.as_tensor(list(ref_ids), dtype=torch.long)
        # items grouped by referent (stable: a referent's sentences keep their dataset order)
        self._items = torch.sort(ids, stable=True).indices
        _, counts = torch.unique_consecutive(ids[self._items], return_counts=True)
        self._counts = counts
        self._starts = torch.cumsum(counts, 0) - counts
        self.size = len(counts)

    def order(self, seed: int, epoch: int) -> torch.Tensor:
        generator = _generator(seed, epoch)
        referents = torch.randperm(self.size, generator=generator)
        draws = torch.rand(self.size, generator=generator, dtype=torch.float64)
        picks = (draws * self._counts[referents]).long().clamp_max_(self._counts[referents] - 1)
        return self._items[self._starts[referents] + picks]


def referent_ids(dataset: Dataset, needed_by: str) -> list[int]:
    """Every item's ref_id from the dataset's `ref_ids()`; a UserError when it has none."""
    method = getattr(dataset, "ref_ids", None)
    if method is None:
        raise UserError(f"{needed_by} needs each item's referent, and {type(dataset).__name__} has no ref_ids() "
                        "method; add one (README, 'Add your own dataset')")
    ids = list(method())
    if len(ids) != len(dataset):
        raise UserError(f"{type(dataset).__name__}.ref_ids() gives {len(ids)} ids for {len(dataset)} items")
    return ids


def epoch_order(sampling: str, dataset: Dataset) -> EpochOrder:
    """The epoch of suite key `sampling` over `dataset`."""
    if sampling == "expression":
        return ExpressionOrder(len(dataset))
    if sampling == "referent":
        return ReferentOrder(referent_ids(dataset, "sampling = 'referent'"))
    raise ValueError(f"unknown sampling {sampling!r}")


class StepBatches(torch.utils.data.Sampler):
    """Batches of dataset indices from global step `start` on: epoch e is `order.order(seed, e)` cut into
    batches (the last partial batch dropped), so the batch of any step is known without replaying the ones
    before (exact resume).

    With `world` processes, process `rank` takes the rank-th contiguous part of every (global) batch: the
    parts together are exactly the single-process batch.
    """

    def __init__(self, order: EpochOrder, batch_size: int, seed: int, start: int, stop: int, rank: int = 0,
                 world: int = 1):
        if order.size < batch_size:
            raise ValueError(f"an epoch of the training split has {order.size} items, fewer than one batch of "
                             f"{batch_size}")
        if not 0 <= rank < world or batch_size % world:
            raise ValueError(f"rank {rank} of {world} processes cannot take an equal part of batch {batch_size}")
        self.order, self.batch_size, self.seed, self.start, self.stop = order, batch_size, seed, start, stop
        self.per_epoch = order.size // batch_size
        local = batch_size // world
        self.part = slice(rank * local, (rank + 1) * local)

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            epoch, position = divmod(step, self.per_epoch)
            if step == self.start or position == 0:
                order = self.order.order(self.seed, epoch)
            yield order[position * self.batch_size:(position + 1) * self.batch_size][self.part].tolist()
