"""Datasets by name (benchmarks/data/registry.py), their splits, and the batch collation every dataset shares
(item contract: shapes.py). The built-in datasets register here; a new one registers in its own file, imported by a
line at the end of this one (README: "Add your own dataset").

Light at import (no torch, no image libraries): suites use it to check names and splits before any work.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.data.registry import get_dataset, register_dataset
from riscore.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from benchmarks.data.shapes import ShapesConfig

DATA_ROOT_ENV = "RISBENCH_DATA"
# shapes: rendered on the fly; testB holds out colour-shape pairs. ShapesConfig sizes each of these splits.
SHAPES_SPLITS = ("train", "val", "testA", "testB")
# RefCOCO family: (dataset, split_by) -> splits of the refer toolkit's partitions; the first split_by listed
# per dataset is its default (UNC for RefCOCO/RefCOCO+, UMD for RefCOCOg, as ETRIS reports).
REFER_SPLITS: dict[tuple[str, str], tuple[str, ...]] = {
    ("refcoco", "unc"): ("train", "val", "testA", "testB"),
    ("refcoco+", "unc"): ("train", "val", "testA", "testB"),
    ("refcocog", "umd"): ("train", "val", "test"),
    ("refcocog", "google"): ("train", "val"),
}
REFER_OPTIONS = ("root", "split_by")


def check_dataset_name(name: str) -> None:
    get_dataset(name)


def refer_split_by(name: str, split_by: str | None = None) -> str:
    """`split_by`, or the default partition of RefCOCO-family dataset `name`, after checking both."""
    partitions = [sb for d, sb in REFER_SPLITS if d == name]
    if not partitions:
        names = sorted({d for d, _ in REFER_SPLITS})
        raise UserError(f"unknown RefCOCO-family dataset {name!r}; choose one of {names}")
    if split_by is None:
        return partitions[0]
    if split_by not in partitions:
        raise UserError(f"{name} has no split_by {split_by!r}; choose one of {partitions}")
    return split_by


def dataset_splits(name: str, options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The splits dataset `name` has under its `options` (RefCOCOg's split_by changes them)."""
    return get_dataset(name).splits(options or {})


def check_split(name: str, split: str, options: dict[str, Any] | None = None) -> None:
    splits = dataset_splits(name, options)
    if split not in splits:
        refer = any(d == name for d, _ in REFER_SPLITS)
        partition = f" ({refer_split_by(name, (options or {}).get('split_by'))})" if refer else ""
        raise UserError(f"{name}{partition} has no split {split!r}{did_you_mean(split, splits)}; "
                        f"valid splits: {', '.join(splits)}")


def _shapes_config(image_size: int, options: dict[str, Any]) -> ShapesConfig:
    from benchmarks.data.shapes import ShapesConfig

    known = [f.name for f in dataclasses.fields(ShapesConfig) if f.name != "image_size"]  # the suite's own
    for key in options:
        if key not in known:
            raise UserError(f"shapes dataset options: unknown {key!r}{did_you_mean(key, known)}; "
                            f"known: {', '.join(known)}")
    try:
        return ShapesConfig(image_size=image_size, **options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"shapes dataset options: {exc}") from None


def _refer_options(name: str, options: dict[str, Any]) -> tuple[Path, str]:
    """(data root, split_by) of a RefCOCO-family dataset; the root comes from the options or the environment."""
    for key in options:
        if key not in REFER_OPTIONS:
            raise UserError(f"{name} dataset options: unknown {key!r}{did_you_mean(key, REFER_OPTIONS)}; "
                            f"known: {', '.join(REFER_OPTIONS)}")
    root = options.get("root") or os.environ.get(DATA_ROOT_ENV)
    if not root:
        raise UserError(f"dataset '{name}' needs its data root: set {DATA_ROOT_ENV}=/path/to/refer_data "
                        "(see README, 'RefCOCO data')")
    return Path(root), refer_split_by(name, options.get("split_by"))


def check_dataset(name: str, image_size: int, options: dict[str, Any] | None = None) -> None:
    """What building the dataset would refuse, without loading it: its options and, for RefCOCO, its files.

    Runs before any training so that a typo or missing data costs one line, not a failed run.
    """
    get_dataset(name).check(image_size, options or {})


def build_dataset(name: str, split: str, image_size: int, options: dict[str, Any] | None = None) -> Dataset:
    """The dataset `name` at `split`, rendered or letterboxed to `image_size`."""
    options = options or {}
    check_split(name, split, options)
    return get_dataset(name).load(split, image_size, options)


def _check_shapes(image_size: int, options: dict[str, Any]) -> None:
    _shapes_config(image_size, options)


@register_dataset("shapes", SHAPES_SPLITS, check=_check_shapes)
def _load_shapes(split: str, image_size: int, options: dict[str, Any]) -> Dataset:
    from benchmarks.data.shapes import ShapesDataset

    return ShapesDataset(split, _shapes_config(image_size, options))


def _register_refer(name: str) -> None:
    def splits(options: dict[str, Any]) -> tuple[str, ...]:
        return REFER_SPLITS[name, refer_split_by(name, options.get("split_by"))]

    def check(image_size: int, options: dict[str, Any]) -> None:
        from benchmarks.data.refcoco import locate_refer_files

        locate_refer_files(name, *_refer_options(name, options))

    @register_dataset(name, splits, check)
    def load(split: str, image_size: int, options: dict[str, Any]) -> Dataset:
        from benchmarks.data.refcoco import RefCOCODataset

        root, split_by = _refer_options(name, options)
        return RefCOCODataset(name, split, root=root, image_size=image_size, split_by=split_by)


for _name in dict.fromkeys(name for name, _ in REFER_SPLITS):
    _register_refer(_name)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the tensors a step needs; keep per-item evaluation data (original masks, letterboxes) as lists."""
    import torch  # here, not at import: suites import this package for its names and splits

    batch: dict[str, Any] = {key: [item[key] for item in items] for key in items[0]}
    batch["image"] = torch.stack(batch["image"])
    batch["mask"] = torch.stack(batch["mask"])
    return batch

