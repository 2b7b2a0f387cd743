"""RefCOCO / RefCOCO+ / RefCOCOg in the refer-toolkit layout (github.com/lichengunc/refer).

Accepted layout under `root`:
    root/{refcoco,refcoco+,refcocog}/refs(unc).p | refs(umd).p | refs(google).p
    root/{refcoco,refcoco+,refcocog}/instances.json
    root/images/train2014/COCO_train2014_%012d.jpg            (or the refer toolkit's own
    root/images/mscoco/images/train2014/COCO_train2014_%012d.jpg)

Every sentence is one item (the standard evaluation scores each expression); `ref_id` groups the
sentences of one referent.
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from benchmarks.data import check_split, refer_split_by
from benchmarks.data.coco_segmentation import check_segmentation, segmentation_mask
from benchmarks.data.letterbox import Letterbox
from riscore.errors import UserError

IMAGE_DIRS = ("images/train2014", "images/mscoco/images/train2014")
_GET_DATA = ("Get the refer annotations (refs(*).p + instances.json) from github.com/lichengunc/refer "
             "into ROOT/<dataset>/, and the COCO train2014 images into ROOT/images/train2014/.")


@dataclass(frozen=True)
class _Expression:
    ref_id: int
    ann_id: int
    image_id: int
    text: str


def locate_refer_files(name: str, root: Path, split_by: str) -> tuple[Path, Path, Path]:
    """(refs pickle, instances.json, image folder) of `name` under `root`; a UserError names what is missing."""
    refs, instances = root / name / f"refs({split_by}).p", root / name / "instances.json"
    for path in (refs, instances):
        if not path.is_file():
            raise UserError(f"missing refer annotation file {path}. {_GET_DATA}")
    for rel in IMAGE_DIRS:
        if (root / rel).is_dir():
            return refs, instances, root / rel
    tried = ", ".join(str(root / rel) for rel in IMAGE_DIRS)
    raise UserError(f"no COCO train2014 image folder found (tried {tried}). {_GET_DATA}")


class RefCOCODataset(Dataset):
    """One referring expression per item, following the shared data contract (kind = "ref")."""

    kinds = ("ref",)

    def __init__(self, name: str, split: str, root: str | Path, image_size: int,
                 split_by: str | None = None) -> None:
        split_by = refer_split_by(name, split_by)
        check_split(name, split, {"split_by": split_by})
        if not isinstance(image_size, int) or image_size < 1:
            raise UserError(f"image_size must be a positive integer, got {image_size!r}")
        self.name, self.split, self.split_by, self.image_size = name, split, split_by, image_size
        self.root = Path(root)
        refs_path, instances_path, self.image_dir = locate_refer_files(name, self.root, split_by)
        refs = _load_refs(refs_path)
        self._expressions, self.left_out = _expressions(refs, split, refs_path)
        self.left_out.warn(f"{name} {split} ({refs_path})")
        self._anns, self._images = _index_instances(_load_json(instances_path), self._expressions, instances_path)

    def __len__(self) -> int:
        return len(self._expressions)

    def ref_ids(self) -> list[int]:
        """Each item's `ref_id`, without reading images: the sentences of one referent share it."""
        return [expr.ref_id for expr in self._expressions]

    def __getitem__(self, i: int) -> dict:
        expr = self._expressions[i]
        info = self._images[expr.image_id]
        image = self._read_image(info)
        h, w = image.shape[:2]
        ann = self._anns[expr.ann_id]
        mask = segmentation_mask(ann["segmentation"], h, w)
        if mask.shape != (h, w):  # an RLE of an image whose size instances.json does not state
            raise UserError(f"annotation {ann['id']} is {mask.shape[0]}x{mask.shape[1]}, its image {h}x{w}")
        lb = Letterbox.fit(h, w, self.image_size)
        return {
            "image": lb.apply_image(image),
            "mask": lb.apply_mask(mask),
            "text": expr.text,
            "kind": "ref",
            "orig_mask": torch.from_numpy(mask),
            "letterbox": lb,
            "ref_id": expr.ref_id,
        }

    def _read_image(self, info: dict) -> np.ndarray:
        path = self.image_dir / info.get("file_name", f"COCO_train2014_{info['id']:012d}.jpg")
        try:
            with Image.open(path) as img:
                image = np.array(img.convert("RGB"))
        except FileNotFoundError:
            raise UserError(f"missing image {path}. {_GET_DATA}") from None
        except (UnidentifiedImageError, OSError) as err:
            raise UserError(f"unreadable image {path} ({err}); re-download COCO train2014") from None
        expected = (info.get("height", image.shape[0]), info.get("width", image.shape[1]))
        if image.shape[:2] != expected:
            raise UserError(f"image {path} is {image.shape[0]}x{image.shape[1]} but instances.json says "
                            f"{expected[0]}x{expected[1]}; the images do not match the annotations")
        return image


def _load_refs(path: Path) -> list:
    try:
        with path.open("rb") as f:
            # bytes: the published pickles were written by Python 2 and hold byte strings, UTF-8 text that
            # latin-1 decoding would turn into mojibake; _text decodes them.
            refs = _str_keys(pickle.load(f, encoding="bytes"))
    except Exception as err:  # any unpickling failure means a corrupt/foreign file
        raise UserError(f"corrupt refer annotation file {path} ({type(err).__name__}); re-download it. "
                        f"{_GET_DATA}") from None
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise UserError(f"malformed refer annotation file {path}: expected a list of ref dicts. {_GET_DATA}")
    return refs


def _str_keys(value: Any) -> Any:
    """Dict keys as str at any depth (Python 2 pickles spell them as bytes); values stay as loaded."""
    if isinstance(value, dict):
        return {_text(k)[0]: _str_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_str_keys(v) for v in value]
    return value


def _text(value: Any) -> tuple[Any, bool]:
    """(value with a byte string decoded as UTF-8, whether that failed and latin-1 was used instead)."""
    if not isinstance(value, bytes):
        return value, False
    try:
        return value.decode("utf-8"), False
    except UnicodeDecodeError:
        return value.decode("latin-1"), True


def _load_json(path: Path) -> dict:
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"corrupt annotation file {path} ({err}); re-download it. {_GET_DATA}") from None
    if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
        raise UserError(f"malformed annotation file {path}: needs 'images' and 'annotations'. {_GET_DATA}")
    return data


@dataclass
class LeftOut:
    """What a split's loading dropped or repaired, counted (RefCOCODataset.left_out) and warned about."""

    empty_sentences: list[int] = field(default_factory=list)  # ref_id of each empty or blank sentence
    latin1_sentences: list[int] = field(default_factory=list)  # ref_id of each sentence that was not UTF-8

    def warn(self, where: str) -> None:
        for refs, what in ((self.empty_sentences, "empty or blank sentences left out (the official refer code "
                                                  "yields them as items)"),
                           (self.latin1_sentences, "sentences not valid UTF-8, read as latin-1")):
            if refs:
                shown = ", ".join(str(r) for r in refs[:5]) + (", ..." if len(refs) > 5 else "")
                warnings.warn(f"{where}: {len(refs)} {what}; ref_id {shown}", stacklevel=3)


def _expressions(refs: list[dict], split: str, path: Path) -> tuple[list[_Expression], LeftOut]:
    out, left_out = [], LeftOut()
    for ref in refs:
        try:
            if _text(ref["split"])[0] != split:
                continue
            ref_id, ann_id, image_id = ref["ref_id"], ref["ann_id"], ref["image_id"]
            sentences = ref["sentences"]
        except KeyError as err:
            raise UserError(f"malformed ref in {path}: missing key {err}") from None
        if not isinstance(sentences, list):
            raise UserError(f"ref_id {ref_id} in {path} has sentences of type {type(sentences).__name__}, "
                            "not a list; re-download the file")
        for sent in sentences:
            text, latin1 = _text(sent.get("sent") if isinstance(sent, dict) else None)
            if not isinstance(text, str):
                raise UserError(f"ref_id {ref_id} in {path} has a non-text sentence: {sent!r}; re-download the file")
            if latin1:
                left_out.latin1_sentences.append(int(ref_id))
            if not text.strip():
                left_out.empty_sentences.append(int(ref_id))
                continue
            out.append(_Expression(int(ref_id), int(ann_id), int(image_id), text.strip()))
    return out, left_out


def _index_instances(instances: dict, expressions: list[_Expression], path: Path) -> tuple[dict, dict]:
    """Keep only the annotations and images this split uses (instances.json is large)."""
    ann_ids = {e.ann_id for e in expressions}
    image_ids = {e.image_id for e in expressions}
    anns = {a["id"]: a for a in instances["annotations"] if a.get("id") in ann_ids}
    images = {im["id"]: im for im in instances["images"] if im.get("id") in image_ids}
    for e in expressions:
        if e.ann_id not in anns:
            raise UserError(f"ref_id {e.ref_id} points to annotation {e.ann_id}, absent from {path}")
        if e.image_id not in images:
            raise UserError(f"ref_id {e.ref_id} points to image {e.image_id}, absent from {path}")
    for e in expressions:  # every used segmentation decodes: a malformed one is refused now, not mid-training
        image = images[e.image_id]
        hw = (image.get("height"), image.get("width"))
        check_segmentation(anns[e.ann_id], hw if all(isinstance(v, int) for v in hw) else None, path)
    return anns, images
