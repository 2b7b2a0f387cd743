"""Suites: TOML files that fix the budget every method shares (see `Suite`)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from benchmarks.coerce import coerce
from benchmarks.errors import UserError

SUITE_DIR = Path(__file__).parent
REPO_ROOT = SUITE_DIR.parent.parent
PRECISIONS = ("fp32", "bf16")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
DATASETS = ("shapes", "refcoco", "refcoco+", "refcocog")


@dataclass(frozen=True)
class Suite:
    """Everything that must be identical across methods for their numbers to be comparable.

    Methods may set only their own hyperparameters and a learning rate picked from `lr_grid` by the
    same search for every method; every other field is the budget.
    """

    name: str
    description: str = ""
    # data
    dataset: str = "shapes"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    eval_splits: tuple[str, ...] = ("val",)
    eval_limit: int = 0  # expressions per eval split; 0 = the whole split
    lr_search_split: str = "val"
    # model
    backbone: str = "risbench-tiny-vit"
    pretrained: str | None = None
    image_size: int = 64
    text_len: int = 16
    decoder_scale: str = "tiny"
    # optimisation
    batch_size: int = 32
    steps: int = 100
    optimizer: str = "adamw"
    lr: float = 1e-4
    lr_grid: tuple[float, ...] = (1e-4,)
    weight_decay: float = 0.0
    schedule: str = "step"
    lr_drop_at: float = 0.7  # fraction of steps after which a step schedule multiplies lr by 0.1
    warmup_steps: int = 0
    grad_clip: float = 0.0  # 0 = off
    precision: str = "bf16"  # autocast dtype on CUDA; CPU always runs fp32
    threshold: float = 0.35
    seeds: tuple[int, ...] = (0, 1, 2)
    log_every: int = 10

    def __post_init__(self) -> None:
        def bad(field_name: str, why: str) -> UserError:
            return UserError(f"suite '{self.name}': {field_name} {why}")

        for key in ("image_size", "text_len", "batch_size", "steps", "log_every"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(key, f"must be a positive integer, got {value!r}")
        for key in ("eval_limit", "warmup_steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 0:
                raise bad(key, f"must be a non-negative integer, got {value!r}")
        for key in ("lr", "weight_decay", "grad_clip", "lr_drop_at", "threshold"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise bad(key, f"must be a finite number >= 0, got {value!r}")
        if self.lr <= 0 or not self.lr_grid or any(not (math.isfinite(v) and v > 0) for v in self.lr_grid):
            raise bad("lr/lr_grid", "must be positive finite learning rates")
        if not 0 < self.threshold < 1:
            raise bad("threshold", f"must be in (0, 1), got {self.threshold}")
        if not 0 < self.lr_drop_at <= 1:
            raise bad("lr_drop_at", f"must be in (0, 1], got {self.lr_drop_at}")
        for key, allowed in (("precision", PRECISIONS), ("optimizer", OPTIMIZERS),
                             ("schedule", SCHEDULES), ("dataset", DATASETS),
                             ("decoder_scale", ("tiny", "paper"))):
            if getattr(self, key) not in allowed:
                raise bad(key, f"must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if not self.eval_splits or not self.seeds:
            raise bad("eval_splits/seeds", "must not be empty")

    def pretrained_source(self) -> str | None:
        """The pretrained tag, or the weights path with repo-relative paths made absolute.

        Suites keep the relative form so that the config hash does not depend on where the repo lives.
        """
        if self.pretrained and "/" in self.pretrained and not Path(self.pretrained).is_absolute():
            return str(REPO_ROOT / self.pretrained)
        return self.pretrained

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, overrides: dict[str, Any]) -> Suite:
        """A copy with budget keys changed; values are coerced to the field's type."""
        known = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known or key == "name":
                raise UserError(f"unknown suite key '{key}'; known keys: {', '.join(sorted(known))}")
            changes[key] = coerce(value, getattr(self, key), key, optional="None" in str(known[key].type))
        return dataclasses.replace(self, **changes)


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (benchmarks/suites/NAME.toml) or by path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = SUITE_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise UserError(f"unknown suite '{name_or_path}'; known suites: {', '.join(list_suites())}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"suite file {path} is not valid TOML: {exc}") from None
    data.setdefault("name", path.stem)
    known = {f.name for f in dataclasses.fields(Suite)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"suite file {path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = tuple(value)
    return Suite(**data)
