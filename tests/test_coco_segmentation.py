"""Generated malformed COCO segmentations are refused with the annotation named; generated valid ones decode
exactly as pycocotools decodes them."""

import math
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from refer_fixture import build_refer

from benchmarks.data.coco_segmentation import check_segmentation, segmentation_mask
from benchmarks.data.refcoco import RefCOCODataset
from riscore.errors import UserError

H, W = 40, 60
PATH = Path("instances.json")
NOT_NUMBERS = [math.nan, math.inf, -math.inf, None, "3", True, [1, 2], {"x": 1}]


def _valid_part(rng: np.random.Generator) -> list[float | int]:
    """A polygon part of 3 to 8 points, ints or floats, some outside the image."""
    points = rng.uniform(-5, max(H, W) + 5, size=(int(rng.integers(3, 9)), 2))
    values = points.ravel().tolist()
    return [round(v) for v in values] if rng.random() < 0.5 else values


def _valid_polygon(rng: np.random.Generator) -> list[list]:
    return [_valid_part(rng) for _ in range(int(rng.integers(1, 4)))]


def _random_mask(rng: np.random.Generator) -> np.ndarray:
    return rng.random((H, W)) < rng.random()


def _uncompressed(mask: np.ndarray) -> dict:
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": [H, W], "counts": [0, *counts] if flat[0] else counts}


def _compressed(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def _bad_part(rng: np.random.Generator) -> list | object:
    """A polygon part that is wrong in one of the ways pycocotools does not check."""
    kind = rng.integers(4)
    if kind == 0:  # too few numbers, pycocotools' 4-number box form among them
        return _valid_part(rng)[: int(rng.integers(0, 6))]
    if kind == 1:  # an odd count
        part = _valid_part(rng)
        return part[:-1] if len(part) % 2 == 0 else part
    if kind == 2:  # something that is not a finite number
        part = _valid_part(rng)
        part[int(rng.integers(len(part)))] = NOT_NUMBERS[int(rng.integers(len(NOT_NUMBERS)))]
        return part
    return [None, "1 2 3 4 5 6", 7, {"x": [1, 2]}][int(rng.integers(4))]  # not a list of numbers


def _bad_rle(rng: np.random.Generator) -> dict:
    seg = (_compressed if rng.random() < 0.5 else _uncompressed)(_random_mask(rng))
    kind = rng.integers(6)
    if kind == 0:
        seg["size"] = [[H], [H, W, 3], [W, H], [0, W], [H, -W], "40x60", None, [H, W + 1]][int(rng.integers(8))]
    elif kind == 1:
        seg["counts"] = [None, 12, 1.5, {"a": 1}][int(rng.integers(4))]
    elif kind == 2:  # too few or too many pixels
        seg["counts"] = _uncompressed(_random_mask(rng))["counts"] + [int(rng.integers(1, 50))]
    elif kind == 3:
        seg["counts"] = [*seg["counts"], -1] if isinstance(seg["counts"], list) else [H * W + 1, -1]
    elif kind == 4:  # a compressed string outside the code's alphabet, or cut in the middle of a number
        seg["counts"] = _compressed(_random_mask(rng))["counts"] + ["~", " ", "é", chr(48 + 0x20)][int(rng.integers(4))]
    else:
        seg["counts"] = _compressed(np.ones((H, W + 1), bool))["counts"]  # another image's pixel count
    return seg


def malformed_segmentations(seed: int, n: int) -> list:
    rng = np.random.default_rng(seed)
    cases = [[], "polygon", None, 5, [[1, 2, 3, 4]], [[1, 2, 3, 4], [5, 6, 7, 8]],  # the box form, alone and twice
             [[10, 10, 30, 10], [5, 5, 20, 5, 20, 20]]]
    for _ in range(n):
        if rng.random() < 0.6:
            parts = _valid_polygon(rng)
            parts.insert(int(rng.integers(len(parts) + 1)), _bad_part(rng))
            cases.append(parts)
        else:
            cases.append(_bad_rle(rng))
    return cases


@pytest.mark.parametrize("seg", malformed_segmentations(seed=0, n=300), ids=lambda s: str(s)[:40])
def test_malformed_segmentation_is_a_user_error_naming_the_annotation(seg):
    with pytest.raises(UserError) as err:
        check_segmentation({"id": 4242, "segmentation": seg}, (H, W), PATH)
    message = str(err.value)
    assert message.startswith(f"annotation 4242 in {PATH} has a malformed ")
    assert "Fix or remove that annotation" in message and "\n" not in message


@pytest.mark.parametrize("seed", range(40))
def test_valid_segmentations_pass_and_decode_as_pycocotools_does(seed):
    rng = np.random.default_rng(seed)
    polygon = _valid_polygon(rng)
    check_segmentation({"id": 1, "segmentation": polygon}, (H, W), PATH)
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygon, H, W))).astype(bool)
    assert np.array_equal(segmentation_mask(polygon, H, W), expected)
    mask = _random_mask(rng)
    for rle in (_uncompressed(mask), _compressed(mask)):
        check_segmentation({"id": 1, "segmentation": rle}, (H, W), PATH)
        check_segmentation({"id": 1, "segmentation": rle}, None, PATH)  # image size not stated
        assert np.array_equal(segmentation_mask(rle, H, W), mask)


@pytest.mark.parametrize("seg", malformed_segmentations(seed=1, n=12), ids=lambda s: str(s)[:40])
def test_loader_refuses_a_malformed_segmentation_when_built(tmp_path, seg):
    """Before any item is read: a bench fails at its start, not at the step that reaches the annotation."""
    refcoco = build_refer(tmp_path)
    refcoco.instances["annotations"][0]["segmentation"] = seg  # annotation 1: image 101 is 40x60
    refcoco.write_instances()
    with pytest.raises(UserError, match=r"^annotation 1 in .*instances\.json has a malformed "):
        RefCOCODataset("refcoco", "train", refcoco.root, 32)
    RefCOCODataset("refcoco", "val", refcoco.root, 32)  # a split that does not use it still loads
