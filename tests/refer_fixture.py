"""A tiny dataset in the refer-toolkit layout (refs(<split_by>).p + instances.json + COCO-named JPEGs).

Objects are drawn as solid rectangles and annotated three ways (polygon, uncompressed RLE, compressed
RLE), so tests can check decoded masks against rectangles they know exactly.
"""

from __future__ import annotations

import json
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

# image_id -> (height, width)
IMAGES = {101: (40, 60), 202: (50, 30)}
# ann_id -> (image_id, segmentation format, (top, left, bottom, right) rectangle, exclusive end)
ANNS = {
    1: (101, "polygon", (5, 10, 17, 30)),
    2: (202, "rle", (10, 5, 31, 15)),
    3: (101, "compressed", (20, 35, 36, 55)),
}
OBJECT_RGB = (200, 40, 40)


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 wrote its `str` (BINSTRING opcodes), as in the published refs pickles: Python 3's
    own protocol-2 pickles spell bytes as a call that loads as bytes whatever the reader's encoding."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def as_python2_str(value):
    """Every str (keys too) as UTF-8 bytes, the way a Python 2 program held text; bytes stay as given."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict):
        return {as_python2_str(k): as_python2_str(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_python2_str(v) for v in value]
    return value


@dataclass
class ReferFixture:
    root: Path
    name: str
    split_by: str
    refs: list[dict] = field(default_factory=list)
    instances: dict = field(default_factory=dict)

    @property
    def refs_path(self) -> Path:
        return self.root / self.name / f"refs({self.split_by}).p"

    def write_refs(self, python2: bool = False) -> None:
        """(Re)write the pickle, e.g. after a test edited `refs`; protocol 2 as the Python 2 originals, and with
        `python2` their byte strings too."""
        with self.refs_path.open("wb") as f:
            if python2:
                _Python2Pickler(f, protocol=2).dump(as_python2_str(self.refs))
            else:
                pickle.dump(self.refs, f, protocol=2)

    def write_instances(self) -> None:
        """(Re)write instances.json, e.g. after a test edited `instances`."""
        (self.root / self.name / "instances.json").write_text(json.dumps(self.instances))

    def expressions(self, split: str) -> list[tuple[int, str]]:
        return [(r["ref_id"], s["sent"]) for r in self.refs if r["split"] == split for s in r["sentences"]]


def rect_mask(image_id: int, rect: tuple[int, int, int, int]) -> np.ndarray:
    top, left, bottom, right = rect
    mask = np.zeros(IMAGES[image_id], dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def _segmentation(image_id: int, kind: str, rect: tuple[int, int, int, int]) -> list | dict:
    top, left, bottom, right = rect
    if kind == "polygon":
        return [[left, top, right, top, right, bottom, left, bottom]]
    mask = rect_mask(image_id, rect)
    if kind == "rle":
        return _uncompressed_rle(mask)
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _refs(splits: tuple[str, ...]) -> list[dict]:
    """Four refs (annotation 1 is referred to twice) with 1-2 sentences each, naming their ref_id."""
    refs, sent_id = [], 0
    for ref_id, ann_id in enumerate([1, 2, 3, 1], start=1):
        image_id = ANNS[ann_id][0]
        sentences = []
        for k in range(1 + ref_id % 2):
            sent_id += 1
            text = f"object {ann_id} phrase {k} of ref {ref_id}"
            sentences.append({"sent": text, "raw": text.capitalize(), "tokens": text.split(),
                              "sent_id": sent_id})
        refs.append({"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id,
                     "split": splits[(ref_id - 1) % len(splits)], "sentences": sentences,
                     "sent_ids": [s["sent_id"] for s in sentences], "category_id": 1,
                     "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg"})
    return refs


def build_refer(root: Path, name: str = "refcoco", split_by: str = "unc",
                splits: tuple[str, ...] = ("train", "val", "testA", "testB"),
                image_dir: str = "images/train2014") -> ReferFixture:
    """Write the fixture under `root`; refs are assigned to `splits` round-robin."""
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    for image_id, (h, w) in IMAGES.items():
        pixels = np.full((h, w, 3), 90, dtype=np.uint8)
        for ann_image, _, (top, left, bottom, right) in ANNS.values():
            if ann_image == image_id:
                pixels[top:bottom, left:right] = OBJECT_RGB
        Image.fromarray(pixels).save(root / image_dir / f"COCO_train2014_{image_id:012d}.jpg", quality=95)
    instances = {
        "images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": h, "width": w}
                   for i, (h, w) in IMAGES.items()],
        "annotations": [{"id": a, "image_id": i, "category_id": 1, "iscrowd": int(kind != "polygon"),
                         "segmentation": _segmentation(i, kind, rect)}
                        for a, (i, kind, rect) in ANNS.items()],
        "categories": [{"id": 1, "name": "box", "supercategory": "thing"}],
    }
    fixture = ReferFixture(root, name, split_by, _refs(splits), instances)
    fixture.write_instances()
    fixture.write_refs()
    return fixture
