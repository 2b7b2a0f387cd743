"""`shapes`: procedurally rendered referring-segmentation scenes, generated per index (no disk, no download).

Item contract (every dataset in benchmarks.data follows it): `dataset[i]` is a dict with
    image      float32 [3, S, S] in [0, 1], letterboxed to the square input size S (mean-colour padding)
    mask       float32 [S, S] in {0, 1}, the referent letterboxed like the image (training target)
    text       str, one referring expression
    kind       str, the expression kind (shapes: see KINDS; RefCOCO family: "ref")
    orig_mask  bool [H, W], the referent at the original resolution (evaluation target)
    letterbox  Letterbox mapping the S x S input back to H x W (shapes render at S: the identity)
    ref_id     int, identity of the referent (several expressions may share one)
and the dataset exposes `.kinds` and `__len__`, and may expose `ref_ids()`: every item's ref_id in order, without
loading the items (sampling = "referent" needs it).

Item i of a split is drawn from its own generator, seeded from (seed, split, i), so any index can be
reproduced alone and the splits never share a scene. Its kind is KINDS[i % 5], so kinds are balanced.

Compositional split (testB): every testB referent has a held-out colour-shape pair. Train, val and testA
scenes contain no held-out pair at all, neither as referent nor as distractor, so their captions never
name one either; testB distractors may have any pair (held-out ones included), and testB captions name
them like any other object.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmarks.data import SHAPES_SPLITS
from benchmarks.data.letterbox import Letterbox
from benchmarks.data.shapes_grammar import KINDS, SIZES, Expression, Obj, propose
from riscore.errors import UserError

SPLITS = SHAPES_SPLITS  # declared with the other datasets in benchmarks/data
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12), "green": (0.10, 0.66, 0.20), "blue": (0.15, 0.30, 0.92),
    "yellow": (0.96, 0.86, 0.10), "purple": (0.58, 0.20, 0.76), "orange": (0.98, 0.55, 0.05),
    "cyan": (0.05, 0.80, 0.86), "white": (0.98, 0.98, 0.98), "black": (0.05, 0.05, 0.05),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
_MAX_ATTEMPTS = 500


@dataclass(frozen=True)
class ShapesConfig:
    """What fixes a shapes dataset. Radii and margin are fractions of image_size so scenes look alike at any
    size; `margin` is how clearly a geometric statement must hold (centre distance) to be used."""

    image_size: int = 64
    seed: int = 0
    min_objects: int = 2
    max_objects: int = 6
    train_size: int = 20000
    val_size: int = 1000
    testA_size: int = 1000
    testB_size: int = 1000
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
    shapes: tuple[str, ...] = SHAPES
    small_radius: float = 0.085
    large_radius: float = 0.155
    margin: float = 0.08
    held_out: tuple[tuple[str, str], ...] = (
        ("red", "triangle"), ("green", "circle"), ("blue", "cross"), ("yellow", "square"))

    def __post_init__(self) -> None:
        def bad(name: str, fix: str) -> ValueError:
            return ValueError(f"ShapesConfig.{name}={getattr(self, name)!r}: {fix}")

        # Suite files give lists; keep the config hashable and comparable.
        object.__setattr__(self, "colours", tuple(self.colours))
        object.__setattr__(self, "shapes", tuple(self.shapes))
        object.__setattr__(self, "held_out", tuple(tuple(p) for p in self.held_out))
        for name in ("image_size", "seed", "min_objects", "max_objects", *(f"{s}_size" for s in SPLITS)):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise bad(name, "use an integer")
        if not 32 <= self.image_size <= 1024:
            raise bad("image_size", "use an integer from 32 to 1024")
        if self.seed < 0:
            raise bad("seed", "use a non-negative integer")
        if not 2 <= self.min_objects <= self.max_objects:
            raise bad("min_objects", "use 2 <= min_objects <= max_objects")
        if self.max_objects > 8:
            raise bad("max_objects", "use at most 8 (more do not fit without overlap)")
        for split in SPLITS:
            if getattr(self, f"{split}_size") < 1:
                raise bad(f"{split}_size", "use a positive number of expressions")
        for name, vocab in (("colours", PALETTE), ("shapes", SHAPES)):
            words = getattr(self, name)
            if len(words) < 2 or len(set(words)) != len(words) or not set(words) <= set(vocab):
                raise bad(name, f"use at least two distinct names from {sorted(vocab)}")
        if not (0 < self.small_radius and self.small_radius * 1.5 <= self.large_radius <= 0.25):
            raise bad("large_radius", "use 0 < small_radius, 1.5 * small_radius <= large_radius <= 0.25")
        if not 0 <= self.margin < 0.5:
            raise bad("margin", "use a fraction of image_size in [0, 0.5)")
        held = set(self.held_out)
        if not held or not all(len(p) == 2 for p in held) or not held <= set(self.all_pairs):
            raise bad("held_out", "list at least one (colour, shape) pair from the vocabularies")
        seen = self.seen_pairs
        if {c for c, _ in seen} != set(self.colours) or {s for _, s in seen} != set(self.shapes):
            raise bad("held_out", "keep every colour and every shape in at least one non-held-out pair")

    @property
    def all_pairs(self) -> list[tuple[str, str]]:
        return [(c, s) for c in self.colours for s in self.shapes]

    @property
    def seen_pairs(self) -> list[tuple[str, str]]:
        """Colour-shape pairs that train, val and testA may show."""
        return [p for p in self.all_pairs if p not in self.held_out]

    def split_size(self, split: str) -> int:
        if split not in SPLITS:
            raise UserError(f"shapes has no split {split!r}; valid splits: {', '.join(SPLITS)}")
        return getattr(self, f"{split}_size")


@dataclass(frozen=True)
class Scene:
    """Objects (the referent first) and the background's parameters: everything rendering needs."""

    objects: tuple[Obj, ...]
    tint: tuple[float, float, float]
    gradient: tuple[float, float]
    grain_seed: int


@dataclass(frozen=True)
class ShapesSample:
    """One item before rendering: cheap to make, enough to re-check the expression against the scene."""

    scene: Scene
    expression: Expression
    text: str
    referent: int = 0

    @property
    def kind(self) -> str:
        return self.expression.kind


def _rng(config: ShapesConfig, split: str, index: int, stream: str) -> np.random.Generator:
    """Independent generator per (seed, split, index, stream): SeedSequence hashes the tuple."""
    words = [config.seed, zlib.crc32(split.encode()), index, zlib.crc32(stream.encode())]
    return np.random.default_rng(np.random.SeedSequence(words))


class _SceneSampler:
    """Draws scenes whose first object can be a referent of `split`, with distractors sharing its colour or
    shape (so that naming the referent needs more than one word)."""

    def __init__(self, config: ShapesConfig, split: str) -> None:
        config.split_size(split)
        self.config = config
        self.referent_pairs = list(config.held_out) if split == "testB" else config.seen_pairs
        self.other_pairs = config.all_pairs if split == "testB" else config.seen_pairs
        size = config.image_size
        self.radius = {"small": config.small_radius * size, "large": config.large_radius * size}
        self.gap = max(1.0, 0.02 * size)

    def _distractor(self, ref: tuple[str, str], rng: np.random.Generator, force: bool) -> tuple[str, str]:
        u = rng.random() * (0.7 if force else 1.0)
        if u < 0.7:
            slot = 0 if u < 0.35 else 1
            options = [p for p in self.other_pairs if p[slot] == ref[slot]]
        else:
            options = self.other_pairs
        return options[rng.integers(len(options))]

    def _place(self, placed: list[Obj], r: float, rng: np.random.Generator) -> tuple[float, float] | None:
        size = self.config.image_size
        xy = rng.uniform(r + 1.0, size - r - 1.0, size=(24, 2))
        ok = np.ones(len(xy), dtype=bool)
        for o in placed:
            ok &= np.hypot(xy[:, 0] - o.x, xy[:, 1] - o.y) >= r + o.r + self.gap
        hits = np.flatnonzero(ok)
        return (float(xy[hits[0], 0]), float(xy[hits[0], 1])) if len(hits) else None

    def __call__(self, rng: np.random.Generator) -> Scene:
        cfg = self.config
        while True:
            n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
            ref = self.referent_pairs[rng.integers(len(self.referent_pairs))]
            pairs = [ref] + [self._distractor(ref, rng, force=k == 0) for k in range(n - 1)]
            objects: list[Obj] = []
            for colour, shape in pairs:
                # A large object that does not fit becomes small; a small one that does not fit is dropped.
                size = SIZES[rng.integers(2)]
                spot = self._place(objects, self.radius[size], rng)
                if spot is None and size == "large":
                    size, spot = "small", self._place(objects, self.radius["small"], rng)
                if spot is not None:
                    objects.append(Obj(shape, colour, size, spot[0], spot[1], self.radius[size]))
            if len(objects) >= cfg.min_objects:
                tint = tuple(float(v) for v in 0.42 + 0.16 * rng.random() + rng.uniform(-0.04, 0.04, 3))
                gradient = (float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.1, 0.1)))
                return Scene(tuple(objects), tint, gradient, int(rng.integers(2**31)))


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Pixels of a shape inscribed in the circle of radius r, from offsets to its centre (y down)."""
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.75 * r
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "triangle":  # equilateral, pointing up, centroid at the centre
        slant = 0.8660254 * np.abs(dx) - 0.5 * dy
        return (dy <= 0.5 * r) & (slant <= 0.5 * r)
    if shape == "cross":
        ax, ay = np.abs(dx), np.abs(dy)
        arm, reach = 0.3 * r, 0.92 * r
        return ((ax <= arm) & (ay <= reach)) | ((ay <= arm) & (ax <= reach))
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def render(scene: Scene, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 [S, S, 3] in [0, 1], labels int8 [S, S]: object index or -1 for background).

    Objects are flat colours drawn from the same boolean masks that make the labels, so masks are exact.
    """
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    gx, gy = scene.gradient
    shade = gx * coords[None, :] + gy * coords[:, None]
    grain = np.random.default_rng(scene.grain_seed).standard_normal((size, size), dtype=np.float32) * 0.015
    image = (shade + grain)[:, :, None] + np.asarray(scene.tint, dtype=np.float32)
    np.clip(image, 0.0, 1.0, out=image)
    labels = np.full((size, size), -1, dtype=np.int8)
    for k, o in enumerate(scene.objects):
        x0, x1 = max(0, int(o.x - o.r)), min(size, int(o.x + o.r) + 2)
        y0, y1 = max(0, int(o.y - o.r)), min(size, int(o.y + o.r) + 2)
        dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - o.x)[None, :]
        dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - o.y)[:, None]
        inside = _shape_mask(o.shape, dx, dy, o.r)
        image[y0:y1, x0:x1][inside] = PALETTE[o.colour]
        labels[y0:y1, x0:x1][inside] = k
    return image, labels


def _wrap(index: int, length: int, split: str) -> int:
    """Python-style index (negatives count from the end); IndexError past the end ends iteration."""
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for shapes/{split} of length {length}")
    return index % length


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class ShapesDataset(Dataset):
    """Referring segmentation on rendered shapes, one expression per item (contract: module docstring)."""

    kinds = KINDS

    def __init__(self, split: str, config: ShapesConfig | None = None) -> None:
        self.config = config or ShapesConfig()
        self.split = split
        self._scenes = _SceneSampler(self.config, split)
        self._margin = self.config.margin * self.config.image_size

    def __len__(self) -> int:
        return self.config.split_size(self.split)

    def ref_ids(self) -> range:
        """Each item's `ref_id` without rendering it: every scene has its own referent."""
        return range(len(self))

    def sample(self, index: int) -> ShapesSample:
        """Scene and expression of item `index`, without rendering."""
        index = _wrap(index, len(self), self.split)
        rng = _rng(self.config, self.split, index, "ref")
        kind = KINDS[index % len(KINDS)]
        for _ in range(_MAX_ATTEMPTS):
            scene = self._scenes(rng)
            found = propose(kind, scene.objects, 0, self._margin, rng)
            if found is not None:
                return ShapesSample(scene, found[0], found[1])
        raise RuntimeError(f"no {kind} expression in {_MAX_ATTEMPTS} scenes; the ShapesConfig is too tight")

    def meta(self, index: int) -> dict[str, Any]:
        """Cheap per-item facts for statistics (no rendering)."""
        s = self.sample(index)
        return {"kind": s.kind, "n_objects": len(s.scene.objects), "text": s.text}

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = _wrap(index, len(self), self.split)
        s = self.sample(index)
        size = self.config.image_size
        image, labels = render(s.scene, size)
        mask = torch.from_numpy(labels == s.referent)
        return {"image": _image_tensor(image), "mask": mask.float(), "text": s.text, "kind": s.kind,
                "orig_mask": mask, "letterbox": Letterbox.identity(size), "ref_id": index}

    def object_masks(self, index: int) -> list[torch.Tensor]:
        """Every object's mask in item `index`'s scene (for the language-blind largest-object baseline)."""
        s = self.sample(_wrap(index, len(self), self.split))
        _, labels = render(s.scene, self.config.image_size)
        return [torch.from_numpy(labels == k) for k in range(len(s.scene.objects))]


def caption(objects: tuple[Obj, ...]) -> str:
    """Every object, left to right: 'a small red circle, a large blue square and a small green triangle'."""
    names = [f"a {o.size} {o.colour} {o.shape}" for o in sorted(objects, key=lambda o: o.x)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class ShapesCaptions(Dataset):
    """Image-caption pairs over the same scene distribution, for contrastive pretraining of the offline
    backbone. Six objects make a caption of at most 29 CLIP tokens (plus start and end)."""

    def __init__(self, split: str, config: ShapesConfig | None = None) -> None:
        self.config = config or ShapesConfig()
        self.split = split
        self._scenes = _SceneSampler(self.config, split)

    def __len__(self) -> int:
        return self.config.split_size(self.split)

    def scene(self, index: int) -> Scene:
        return self._scenes(_rng(self.config, self.split, _wrap(index, len(self), self.split), "caption"))

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.scene(index)
        image, _ = render(scene, self.config.image_size)
        return {"image": _image_tensor(image), "text": caption(scene.objects)}
