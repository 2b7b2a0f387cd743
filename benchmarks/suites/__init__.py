"""Suites: TOML files that fix the budget every method shares (see `Suite`)."""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import validate
from benchmarks.data import build_dataset, check_dataset, check_dataset_name, check_split
from methods.decoder import check_components
from riscore.choices import ATTNPOOLS, GATES
from riscore.coerce import coerce, conform, field_types
from riscore.errors import UserError, did_you_mean

# Keys added after records were first committed, with the value every earlier run had in effect. At these
# values they do what earlier runs did (evaluation during training on its own random stream, a memory cap that
# no earlier run hit), so they leave a run's identity alone: earlier records stay the same runs.
ADDED_KEY_DEFAULTS: dict[str, Any] = {
    "eval_every": 0,
    "anytime_limit": 200,
    "memory_cap_gb": 0.0,
    # ETRIS model switches (#15): at these values the model is the one every earlier run built
    "quick_gelu": False,
    "attnpool": "clip",
    "train_batchnorm": False,
    "gate": "linear",
    # the ETRIS training protocol (#15): earlier runs permuted every expression, trained on the binary target
    # and reported the last step only
    "sampling": "expression",
    "target": "binary",
    "select_every": 0,
    "select_split": "val",
    "decoder_options": {},  # every decoder component on (ETRIS's Table 6 turns them off)
}

SUITE_DIR = Path(__file__).parent
REPO_ROOT = SUITE_DIR.parent.parent
PRECISIONS = ("fp32", "bf16", "fp16")
SAMPLINGS = ("expression", "referent")
TARGETS = ("binary", "soft")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


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
    quick_gelu: bool = False  # QuickGELU whatever the weights' source (openai weights from a file need it)
    attnpool: str = "clip"  # ResNet head: "clip" or "etris" (ETRIS's connect branch, per-forward grid resize)
    train_batchnorm: bool = False  # CLIP's BatchNorm on batch statistics in training for every method (ETRIS)
    gate: str = "linear"  # decoder neck gate: "linear" or "attention" (ETRIS's one-token cross-attention)
    decoder_options: dict[str, Any] = field(default_factory=dict)  # e.g. {global_alignment = false}
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
    # autocast on CUDA: bf16 trains and evaluates in bf16; fp16 trains with loss scaling and evaluates in fp32
    # (ETRIS). CPU always runs fp32, and the record says so.
    precision: str = "bf16"
    sampling: str = "expression"  # an epoch: every expression once, or one random sentence per referent (ETRIS)
    target: str = "binary"  # training mask letterboxed nearest (binary) or bilinear (soft, ETRIS)
    # checkpoint selection: every `select_every` steps (0 = off) and at the last step, score the first expression
    # of each referent of `select_split`; the record adds the metrics of the best weights (ETRIS)
    select_every: int = 0
    select_split: str = "val"
    threshold: float = 0.35
    seeds: tuple[int, ...] = (0, 1, 2)
    log_every: int = 10
    # anytime curve: every `eval_every` steps (0: steps // 10, about 10 points per run) and at the last step,
    # score the first `anytime_limit` expressions of lr_search_split (a fixed subset, at most eval_limit)
    eval_every: int = 0
    anytime_limit: int = 200
    memory_cap_gb: float = 0.0  # 0 = no cap; enforced on CUDA (out of memory is the outcome `oom`), reported on CPU

    def __post_init__(self) -> None:
        """Every field checked by type (strictly: `lr = true` is not a rate) and range at construction, so a
        suite file, a --budget change and a sweep all meet the same rules before any work."""
        def bad(field_name: str, why: str) -> UserError:
            return UserError(f"suite '{self.name}': {field_name} {why}")

        def checked(check, key: str, *args, **kwargs) -> None:
            try:
                check(getattr(self, key), key, *args, **kwargs)
            except UserError as exc:
                raise UserError(f"suite '{self.name}': {exc}") from None

        validate.name(self.name, "suite name")
        for key, annotation in field_types(Suite).items():
            try:
                object.__setattr__(self, key, conform(getattr(self, key), annotation, key))
            except UserError as exc:
                raise UserError(f"suite '{self.name}': {exc}") from None
        for key in ("image_size", "text_len", "batch_size", "steps", "log_every", "anytime_limit"):
            checked(validate.integer, key, low=1)
        for key in ("eval_limit", "warmup_steps", "eval_every", "select_every"):
            checked(validate.integer, key, low=0)
        for key in ("weight_decay", "grad_clip", "memory_cap_gb"):
            checked(validate.number, key)
        checked(validate.number, "lr", open_low=True)
        checked(validate.number, "threshold", 0, 1, open_low=True, open_high=True)
        checked(validate.number, "lr_drop_at", 0, 1, open_low=True)
        for i, rate in enumerate(self.lr_grid):
            validate.number(rate, f"suite '{self.name}': lr_grid[{i}]", open_low=True)
        for i, value in enumerate(self.seeds):
            validate.seed(value, f"suite '{self.name}': seeds[{i}]")
        for key, allowed in (("precision", PRECISIONS), ("optimizer", OPTIMIZERS),
                             ("schedule", SCHEDULES), ("decoder_scale", ("tiny", "paper")),
                             ("attnpool", ATTNPOOLS), ("gate", GATES), ("sampling", SAMPLINGS),
                             ("target", TARGETS)):
            if getattr(self, key) not in allowed:
                raise bad(key, f"must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        try:
            check_components(self.decoder_options)
        except UserError as exc:
            raise bad("decoder_options", f"{exc}") from None
        if not self.eval_splits or not self.seeds or not self.lr_grid:
            raise bad("eval_splits/seeds/lr_grid", "must not be empty")
        for key in ("eval_splits", "seeds", "lr_grid"):
            validate.unique(getattr(self, key), f"suite '{self.name}': {key}")
        if self.select_split.startswith("test") or self.select_split == self.train_split:
            kind = "training" if self.select_split == self.train_split else "test"
            raise bad("select_split", f"{self.select_split!r} is a {kind} split: weights picked on it would be "
                      "scored on what picked them; select on a validation split such as 'val'")
        checks = [("dataset", functools.partial(check_dataset_name, self.dataset))]
        for key in ("train_split", "eval_splits", "lr_search_split", "select_split"):
            value = getattr(self, key)
            checks += [(key, functools.partial(check_split, self.dataset, split, self.dataset_options))
                       for split in (value if isinstance(value, tuple) else (value,))]
        for key, check in checks:
            try:
                check()
            except UserError as exc:
                raise UserError(f"suite '{self.name}': {key}: {exc}") from None
        if self.lr_search_split not in self.eval_splits:
            raise bad("lr_search_split", f"{self.lr_search_split!r} must be one of eval_splits "
                      f"({', '.join(self.eval_splits)}): the learning-rate search scores runs on it")

    @property
    def anytime_every(self) -> int:
        """Steps between evaluations during training."""
        return self.eval_every or max(1, self.steps // 10)

    @property
    def anytime_size(self) -> int:
        return min(self.anytime_limit, self.eval_limit) if self.eval_limit else self.anytime_limit

    def check(self) -> None:
        """Refuse, before any work, what only the dataset, open_clip or the disk can tell is wrong.

        Not in __post_init__: it imports open_clip and looks at files, and a suite is often built only to be
        read (records, reports, tests).
        """
        import open_clip

        from benchmarks.sampling import epoch_order
        from methods.backbone import check_arch, check_input_size

        check_dataset(self.dataset, self.image_size, self.dataset_options)
        train_set = build_dataset(self.dataset, self.train_split, self.image_size, self.dataset_options)
        try:
            size = epoch_order(self.sampling, train_set).size
        except UserError as exc:
            raise UserError(f"suite '{self.name}': {exc}") from None
        if self.batch_size > size:
            per = "" if self.sampling == "expression" else " an epoch, one per referent"
            raise UserError(f"suite '{self.name}': batch_size {self.batch_size} is larger than the "
                            f"{self.train_split} split ({size} items{per}); use a batch_size of at most {size}")
        check_arch(self.backbone)
        try:
            check_input_size(self.backbone, self.image_size, self.text_len)
        except UserError as exc:
            raise UserError(f"suite '{self.name}': {exc}") from None
        source = self.pretrained_source()
        if source is None or Path(source).is_file():
            return
        if "/" in source or "." in source:  # open_clip tags have neither
            raise UserError(f"suite '{self.name}': pretrained weights file not found: {source}")
        tags = open_clip.list_pretrained_tags_by_model(self.backbone)
        if source not in tags:
            known = f"its tags: {', '.join(tags)}" if tags else "it has none, give a weights file path"
            raise UserError(f"suite '{self.name}': pretrained {source!r} is neither a weights file nor an open_clip "
                            f"tag of {self.backbone}{did_you_mean(source, tags)}; {known}")

    def pretrained_source(self) -> str | None:
        """The pretrained tag, or the weights path with repo-relative paths made absolute.

        Suites keep the relative form so that the config hash does not depend on where the repo lives.
        """
        if self.pretrained and "/" in self.pretrained and not Path(self.pretrained).is_absolute():
            return str(REPO_ROOT / self.pretrained)
        return self.pretrained

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Suite:
        """The suite a record or saved model stores (`to_dict` through JSON: lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def identity(self) -> dict[str, Any]:
        """The settings that identify a run (see `identity_of`)."""
        return identity_of(self.to_dict())

    def replace(self, overrides: dict[str, Any]) -> Suite:
        """A copy with budget keys changed; values are coerced to the field's type."""
        known = field_types(Suite)
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known or key == "name":
                raise UserError(f"unknown suite key '{key}'; known keys: {', '.join(sorted(known))}")
            if isinstance(getattr(self, key), dict) and isinstance(value, str):
                value = _inline_table(key, value)
            changes[key] = coerce(value, known[key], key)
        return dataclasses.replace(self, **changes)


def identity_of(suite: dict[str, Any]) -> dict[str, Any]:
    """A suite's settings (as a record stores them) without the later-added keys at their earlier values."""
    return {k: v for k, v in suite.items() if k not in ADDED_KEY_DEFAULTS or v != ADDED_KEY_DEFAULTS[k]}


def _inline_table(key: str, text: str) -> dict[str, Any]:
    """A TOML inline table from the command line: --budget 'dataset_options={min_objects = 3}'."""
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UserError(f"{key}={text!r}: expected a TOML inline table such as {{min_objects = 3}}")
    return value


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
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"suite file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"suite file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 TOML") from None
    except OSError as exc:
        raise UserError(f"suite file {path}: cannot read it ({exc.strerror or exc}); check its permissions") from None
    data.setdefault("name", path.stem)
    known = {f.name for f in dataclasses.fields(Suite)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"suite file {path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for key, value in data.items():
        if isinstance(value, list):
            data[key] = tuple(value)
    return Suite(**data)
