"""The shapes dataset: reproducible, unambiguous, exact, and split as promised.

Uniqueness is checked twice: with the grammar's own predicates, and with an independent reading of the
TEXT under plain (margin-free) geometry, so a wording that says something other than the structure fails.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import torch

from benchmarks.data.letterbox import Letterbox
from benchmarks.data.preview import dataset_stats, save_preview
from benchmarks.data.shapes import (
    PALETTE,
    SPLITS,
    ShapesCaptions,
    ShapesConfig,
    ShapesDataset,
    render,
)
from benchmarks.data.shapes_grammar import KINDS, Obj, unique_referent
from riscore.errors import UserError

SMALL = ShapesConfig(train_size=300, val_size=200, testA_size=200, testB_size=200)


def _dataset(split: str, **changes: object) -> ShapesDataset:
    fields = {"train_size": 300, "val_size": 200, "testA_size": 200, "testB_size": 200, **changes}
    return ShapesDataset(split, ShapesConfig(**fields))


# ---- an independent reading of the text --------------------------------------------------------------

SIZE_WORDS, SHAPE_WORDS = {"small", "large"}, set(SMALL.shapes)


def _np_filter(phrase: str, objs: list[Obj]) -> list[int]:
    words = phrase.split()
    noun, adjectives = words[-1], words[:-1]
    assert noun == "shape" or noun in SHAPE_WORDS, phrase
    keep = []
    for j, o in enumerate(objs):
        ok = noun in ("shape", o.shape)
        for w in adjectives:
            ok &= (o.size == w) if w in SIZE_WORDS else (o.colour == w)
        if ok:
            keep.append(j)
    return keep


def _coord(o: Obj, side: str) -> float:
    """Smaller = nearer to `side`."""
    return {"left": o.x, "right": -o.x, "top": o.y, "bottom": -o.y}[side]


SIDE = {"leftmost": "left", "rightmost": "right", "topmost": "top", "bottommost": "bottom",
        "on the far left": "left", "on the far right": "right",
        "at the top": "top", "at the bottom": "bottom",
        "higher": "top", "lower": "bottom", "further left": "left", "further right": "right"}
REL = {"above": "top", "below": "bottom", "to the left of": "left", "left of": "left",
       "to the right of": "right", "right of": "right"}


def read_text(kind: str, text: str, objs: list[Obj]) -> list[int]:
    """Every object the text can mean, under centre-point geometry and 45-degree relation cones."""
    if kind == "attribute":
        return _np_filter(re.fullmatch(r"the (.+)", text).group(1), objs)
    if kind == "position":
        m = re.fullmatch(r"the (leftmost|rightmost|topmost|bottommost) (.+)", text) or \
            re.fullmatch(r"the (.+?) (on the far left|on the far right|at the top|at the bottom)", text)
        first = m.group(1) in SIDE
        side, phrase = (SIDE[m.group(1)], m.group(2)) if first else (SIDE[m.group(2)], m.group(1))
        members = _np_filter(phrase, objs)
        return [min(members, key=lambda j: _coord(objs[j], side))]
    if kind == "relation":
        m = re.fullmatch(rf"the (.+?) ({'|'.join(REL)}) the (.+)", text)
        (landmark,) = _np_filter(m.group(3), objs)
        side, lm = REL[m.group(2)], objs[landmark]
        def cone(o: Obj) -> bool:
            cross = abs(o.x - lm.x) if side in ("top", "bottom") else abs(o.y - lm.y)
            return _coord(lm, side) - _coord(o, side) > cross
        return [j for j in _np_filter(m.group(1), objs) if j != landmark and cone(objs[j])]
    if kind == "comparative":
        m = re.fullmatch(r"the (larger|bigger|smaller|higher|lower) (.+)", text) or \
            re.fullmatch(r"the (.+?) (further left|further right)", text)
        word, phrase = (m.group(1), m.group(2)) if m.group(1) in SIDE or m.group(1) in (
            "larger", "bigger", "smaller") else (m.group(2), m.group(1))
        a, b = _np_filter(phrase, objs)
        if word in ("larger", "bigger", "smaller"):
            want = "small" if word == "smaller" else "large"
            return [j for j, k in ((a, b), (b, a)) if objs[j].size == want and objs[k].size != want]
        return [min((a, b), key=lambda j: _coord(objs[j], SIDE[word]))]
    if kind == "ordinal":
        m = re.fullmatch(r"the (second|third) (.+) from the (left|right|top|bottom)", text)
        ranked = sorted(_np_filter(m.group(2), objs), key=lambda j: _coord(objs[j], m.group(3)))
        return [ranked[{"second": 1, "third": 2}[m.group(1)]]]
    raise AssertionError(kind)


# ---- tests -------------------------------------------------------------------------------------------

def test_item_follows_the_data_contract() -> None:
    ds = _dataset("val")
    item = ds[3]
    s = SMALL.image_size
    assert item["image"].shape == (3, s, s) and item["image"].dtype == torch.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["mask"].shape == (s, s) and item["mask"].dtype == torch.float32
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    assert item["orig_mask"].dtype == torch.bool and torch.equal(item["orig_mask"].float(), item["mask"])
    assert item["letterbox"] == Letterbox.identity(s)
    assert item["kind"] in ds.kinds and isinstance(item["text"], str) and item["ref_id"] == 3
    assert len(ds) == 200 and ds.kinds == KINDS


def test_same_index_same_item_and_seed_changes_it() -> None:
    a, b = _dataset("train")[17], _dataset("train")[17]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert a["text"] == b["text"]
    other = _dataset("train", seed=1)[17]
    assert not torch.equal(a["image"], other["image"])
    assert not torch.equal(a["image"], _dataset("val")[17]["image"])  # splits draw different scenes


def test_every_referent_is_unique_by_structure_and_by_text() -> None:
    for split in SPLITS:
        ds = _dataset(split)
        margin = ds.config.margin * ds.config.image_size
        for i in range(150):
            s = ds.sample(i)
            objs = list(s.scene.objects)
            assert s.text == s.expression.text(0) or s.text == s.expression.text(1)
            assert unique_referent(s.expression, objs, margin) == s.referent, (split, i, s.text)
            assert read_text(s.kind, s.text, objs) == [s.referent], (split, i, s.text, objs)


def test_every_kind_in_every_split_and_balanced() -> None:
    for split in SPLITS:
        ds = _dataset(split, val_size=50, testA_size=50, testB_size=50, train_size=50)
        counts = Counter(ds.sample(i).kind for i in range(len(ds)))
        assert counts == {kind: 10 for kind in KINDS}, (split, counts)


def test_scenes_have_distractors_sharing_colour_or_shape() -> None:
    ds = _dataset("train")
    for i in range(100):
        ref, *others = ds.sample(i).scene.objects
        assert others and any(o.colour == ref.colour or o.shape == ref.shape for o in others)
        assert ds.config.min_objects <= len(others) + 1 <= ds.config.max_objects


def test_held_out_pairs_only_as_testB_referents() -> None:
    held = set(SMALL.held_out)
    ref_pairs = [_dataset("testB").sample(i).scene.objects[0].pair for i in range(150)]
    assert set(ref_pairs) <= held and len(set(ref_pairs)) == len(held)
    for split in ("train", "val", "testA"):
        ds = _dataset(split)
        for i in range(100):
            assert not held & {o.pair for o in ds.sample(i).scene.objects}, (split, i)
        assert not held & {o.pair for i in range(50) for o in ShapesCaptions(split, SMALL).scene(i).objects}


@pytest.mark.parametrize("split", SPLITS)
def test_masks_are_exactly_the_painted_objects(split: str) -> None:
    ds = _dataset(split)
    for i in range(40):
        s = ds.sample(i)
        image, labels = render(s.scene, ds.config.image_size)
        assert torch.equal(ds[i]["mask"].bool(), torch.from_numpy(labels == s.referent))
        for colour in {o.colour for o in s.scene.objects}:
            painted = np.all(image == np.asarray(PALETTE[colour], dtype=np.float32), axis=-1)
            drawn = np.isin(labels, [k for k, o in enumerate(s.scene.objects) if o.colour == colour])
            assert np.array_equal(painted, drawn), (split, i, colour)
        for k, o in enumerate(s.scene.objects):  # pixels sit where the scene (and so the grammar) says
            ys, xs = np.nonzero(labels == k)
            assert len(xs) > 10 and abs(xs.mean() + 0.5 - o.x) < 1.0 and abs(ys.mean() + 0.5 - o.y) < 1.5


def test_large_objects_are_clearly_larger() -> None:
    ds = _dataset("train")
    area: dict[tuple[str, str], list[int]] = {}
    for i in range(60):
        scene = ds.sample(i).scene
        _, labels = render(scene, ds.config.image_size)
        for k, o in enumerate(scene.objects):
            area.setdefault((o.shape, o.size), []).append(int((labels == k).sum()))
    for shape in SMALL.shapes:
        assert min(area[shape, "large"]) > 2 * max(area[shape, "small"]), shape


def test_caption_names_every_object_within_clip_length() -> None:
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    for split in ("train", "testB"):
        caps = ShapesCaptions(split, SMALL)
        for i in range(40):
            item, scene = caps[i], caps.scene(i)
            assert item["image"].shape == (3, SMALL.image_size, SMALL.image_size)
            named = Counter(tuple(p.split()[1:]) for p in re.split(r", | and ", item["text"]))
            assert named == Counter((o.size, o.colour, o.shape) for o in scene.objects), item["text"]
            assert len(tokenizer.encode(item["text"])) <= 30, item["text"]
        if split == "testB":
            assert all(caps.scene(i).objects[0].pair in SMALL.held_out for i in range(20))


@pytest.mark.parametrize("changes, field", [
    ({"image_size": 16}, "image_size"), ({"seed": -1}, "seed"), ({"min_objects": 1}, "min_objects"),
    ({"min_objects": 5, "max_objects": 4}, "min_objects"), ({"max_objects": 12}, "max_objects"),
    ({"val_size": 0}, "val_size"), ({"colours": ("red", "mauve")}, "colours"),
    ({"shapes": ("circle", "circle")}, "shapes"), ({"large_radius": 0.1}, "large_radius"),
    ({"margin": -0.1}, "margin"), ({"held_out": ()}, "held_out"),
    ({"held_out": (("red", "hexagon"),)}, "held_out"), ({"image_size": 64.0}, "image_size"),
    ({"colours": ("red", "blue"), "shapes": ("circle", "square"),
      "held_out": (("red", "circle"), ("red", "square"))}, "held_out"),
])
def test_config_rejects_bad_values(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"ShapesConfig.{field}"):
        ShapesConfig(**changes)


def test_bad_split_and_index() -> None:
    with pytest.raises(UserError, match="valid splits"):
        ShapesDataset("test", SMALL)
    with pytest.raises(IndexError):
        _dataset("val")[200]
    assert _dataset("val")[-1]["text"] == _dataset("val")[199]["text"]


def test_config_accepts_lists_from_suite_files() -> None:
    config = ShapesConfig(colours=["red", "blue", "green"], shapes=["circle", "square"],
                          held_out=[["red", "circle"]])
    same = ShapesConfig(colours=("red", "blue", "green"), shapes=("circle", "square"),
                        held_out=(("red", "circle"),))
    assert config.held_out == (("red", "circle"),) and config == same and hash(config) == hash(same)
    ds = ShapesDataset("testB", config)
    assert all(ds.sample(i).scene.objects[0].pair == ("red", "circle") for i in range(10))


def test_stats_count_kinds_and_objects() -> None:
    table = dataset_stats(_dataset("val", val_size=25))
    kinds = table[table.stat == "kind"].set_index("value")["count"]
    assert kinds.to_dict() == {kind: 5 for kind in KINDS}
    objects = table[table.stat == "n_objects"]
    assert objects["count"].sum() == 25 and set(objects.value.astype(int)) <= set(range(2, 7))
    assert (table.split == "val").all()


def test_preview_writes_a_png_atomically(tmp_path) -> None:
    out = save_preview(_dataset("val"), 6, tmp_path / "preview.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]  # no temp file left behind
    with pytest.raises(UserError, match="does not exist"):
        save_preview(_dataset("val"), 2, tmp_path / "missing" / "p.png")


def test_object_masks_cover_every_object_once_and_include_the_referent():
    dataset = ShapesDataset("val")
    for index in range(20):
        masks = dataset.object_masks(index)
        assert len(masks) == len(dataset.sample(index).scene.objects)
        stacked = torch.stack(masks).int()
        assert stacked.sum(0).max() <= 1  # objects never share a pixel
        assert any(torch.equal(m, dataset[index]["orig_mask"]) for m in masks)
