"""Dataset registry: a dataset is a name, its splits and a loader that returns the item contract (shapes.py).

Registering one touches its own file plus one import line at the end of benchmarks/data/__init__.py; suites then
name it in `dataset = "..."` like the built-in ones. Light at import (no torch): suites check names and splits
before any work, so a loader imports what it needs when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from riscore.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from torch.utils.data import Dataset

Options = dict[str, Any]
Loader = Callable[[str, int, Options], "Dataset"]  # (split, image_size, options) -> dataset


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    load: Loader
    splits: Callable[[Options], tuple[str, ...]]  # the splits under the suite's dataset_options
    check: Callable[[int, Options], None]  # refuse bad options or missing files without loading anything


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(name: str, splits: tuple[str, ...] | Callable[[Options], tuple[str, ...]],
                     check: Callable[[int, Options], None] | None = None) -> Callable[[Loader], Loader]:
    """Decorator for `load(split, image_size, options)`. `splits` is a tuple, or a function of the options;
    `check(image_size, options)` (default: the dataset takes no options) runs before any training."""

    def no_options(image_size: int, options: Options) -> None:
        if options:
            raise UserError(f"dataset '{name}' takes no dataset_options, got {', '.join(sorted(options))}")

    def decorator(load: Loader) -> Loader:
        if name in _REGISTRY:
            raise ValueError(f"dataset '{name}' registered twice")
        fixed = tuple(splits) if not callable(splits) else None
        _REGISTRY[name] = DatasetSpec(name, load, splits if fixed is None else (lambda options: fixed),
                                      check or no_options)
        return load

    return decorator


def list_datasets() -> list[str]:
    return list(_REGISTRY)


def get_dataset(name: str) -> DatasetSpec:
    if name not in _REGISTRY:
        known = list_datasets()
        raise UserError(f"unknown dataset '{name}'{did_you_mean(name, known)}; known datasets: {', '.join(known)}")
    return _REGISTRY[name]
