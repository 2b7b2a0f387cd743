"""COCO segmentations (polygons, uncompressed or compressed RLE): checked before use, then decoded to masks.

pycocotools trusts its input: a polygon whose first part has exactly 4 numbers is read as a box (a raw
TypeError, or a box mask without any error), and an odd count, a NaN or a string gives a crash or a wrong mask.
So every segmentation a dataset uses is checked once when the dataset is built, and a malformed one is a
UserError naming its annotation, long before training reaches it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from riscore.errors import UserError

MIN_POLYGON_NUMBERS = 6  # three x,y points: fewer encloses no area (and 4 numbers is pycocotools' box form)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _polygon_problem(parts: Any) -> str | None:
    """What is wrong with a polygon segmentation (a list of flat x,y lists), or None."""
    if not parts:
        return "an empty list of polygon parts"
    for k, part in enumerate(parts):
        if not isinstance(part, list):
            return f"part {k} is {type(part).__name__}, not a list of numbers"
        bad = [v for v in part if not _is_number(v)]
        if bad:
            return f"part {k} holds {bad[0]!r}, not a finite number"
        if len(part) < MIN_POLYGON_NUMBERS:
            return (f"part {k} has {len(part)} numbers, fewer than the {MIN_POLYGON_NUMBERS} of three x,y "
                    f"points")
        if len(part) % 2:
            return f"part {k} has an odd count of numbers ({len(part)}), not x,y pairs"
    return None


def _rle_problem(seg: dict, hw: tuple[int, int] | None) -> str | None:
    """What is wrong with an RLE segmentation for an image of size `hw` (None: not known), or None."""
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        return f"an RLE size {size!r}, not [height, width]"
    if hw is not None and tuple(size) != hw:
        return f"an RLE of size {size[0]}x{size[1]} on an image of {hw[0]}x{hw[1]}"
    hw = (size[0], size[1])
    if isinstance(counts, str):
        counts = _compressed_counts(counts)
        if counts is None:
            return "a compressed RLE string that does not decode"
    elif not isinstance(counts, list):
        return f"RLE counts of type {type(counts).__name__}, neither a list nor a compressed string"
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
        return "RLE counts that are not all non-negative integers"
    if sum(counts) != hw[0] * hw[1]:  # pycocotools would write past its mask (or leave it short)
        return f"RLE counts covering {sum(counts)} pixels, not the image's {hw[0] * hw[1]}"
    return None


def _compressed_counts(text: str) -> list[int] | None:
    """The run lengths of COCO's compressed RLE string (pycocotools' rleFrString), or None if it is cut short or
    holds a character outside the code's alphabet."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value = shift = 0
        more = True
        while more:
            if position == len(text):
                return None
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def check_segmentation(ann: dict, hw: tuple[int, int] | None, path: Path) -> None:
    """Raise a UserError naming annotation `ann` of file `path` if its segmentation cannot give a mask of its
    image's size `hw` (None: not known)."""
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        problem = _polygon_problem(seg)
        kind = "polygon"
    elif isinstance(seg, dict):
        problem = _rle_problem(seg, hw)
        kind = "RLE"
    else:
        problem, kind = f"a segmentation of type {type(seg).__name__}", "segmentation"
    if problem:
        raise UserError(f"annotation {ann.get('id')} in {path} has a malformed {kind}: {problem}. A polygon is a list "
                        f"of flat [x1, y1, x2, y2, ...] parts of at least {MIN_POLYGON_NUMBERS} finite numbers; an "
                        f"RLE has size [height, width] and counts. Fix or remove that annotation, or re-download "
                        f"the file")


def segmentation_mask(seg: list | dict, h: int, w: int) -> np.ndarray:
    """A checked segmentation (check_segmentation) -> bool [h, w]."""
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects([[float(v) for v in part] for part in seg], h, w))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}  # checked: the code's alphabet
    return mask_utils.decode(rle).astype(bool)
