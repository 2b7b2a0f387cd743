"""Predicted masks of a few fixed expressions, kept in the run record so reports can show them.

A report must stay a pure function of results/, yet a segmentation leaderboard is read by looking at masks.
So every evaluation whose results a record keeps (`evaluate(..., showcase=True)`: the evaluation splits, of the
last step and of the selected weights; not the anytime or selection scoring, which keep only mIoU) keeps the
predicted masks of its first `PER_KIND` expressions of each kind (in evaluation order, hence the same items in
every run of a suite), exactly as they were scored: bool masks at the original
image resolution, bit-packed, zlib-compressed and base64-encoded (a 64 px shapes mask is under 100 bytes).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

PER_KIND = 4  # 5 shapes kinds -> 20 candidates; the report shows about 12 of them
ENCODING = "packbits+zlib+base64"


@dataclass
class ShowcaseKeeper:
    """Collects the first `per_kind` predicted masks of each expression kind, keyed by dataset index."""

    per_kind: int = PER_KIND
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    kinds: dict[int, str] = field(default_factory=dict)

    def offer(self, index: int, mask: torch.Tensor, kind: str | None) -> None:
        kind = kind or ""
        if sum(k == kind for k in self.kinds.values()) < self.per_kind:
            self.masks[index] = mask.bool().cpu().numpy()
            self.kinds[index] = kind

    @classmethod
    def merged(cls, keepers: list[ShowcaseKeeper]) -> ShowcaseKeeper:
        """Shards of one evaluation (torchrun) merged as if one process had scored every item in index order."""
        out = cls(per_kind=keepers[0].per_kind if keepers else PER_KIND)
        candidates = {i: (k.masks[i], k.kinds[i]) for k in keepers for i in k.masks}
        for index in sorted(candidates):
            mask, kind = candidates[index]
            out.offer(index, torch.from_numpy(mask), kind)
        return out

    def pack(self) -> dict[str, Any]:
        return pack({i: self.masks[i] for i in sorted(self.masks)}, self.kinds)


def pack(masks: dict[int, np.ndarray], kinds: dict[int, str]) -> dict[str, Any]:
    """JSON-ready form: one entry per kept expression (dataset index, kind, mask shape, packed bits)."""
    items = []
    for index, mask in masks.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"mask of item {index} has shape {mask.shape}; expected [H, W]")
        bits = zlib.compress(np.packbits(mask, axis=None).tobytes(), 9)
        items.append({"index": int(index), "kind": kinds.get(index, ""), "shape": list(mask.shape),
                      "bits": base64.b64encode(bits).decode("ascii")})
    return {"encoding": ENCODING, "items": items}


@dataclass(frozen=True)
class Showcase:
    """One split's kept masks of one run."""

    masks: dict[int, np.ndarray]  # dataset index -> bool [H, W]
    kinds: dict[int, str]


def unpack(packed: dict[str, Any]) -> Showcase:
    """Masks from `pack`'s output; ValueError for anything else."""
    try:
        if packed["encoding"] != ENCODING:
            raise ValueError(f"unknown mask encoding {packed['encoding']!r}")
        masks, kinds = {}, {}
        for item in packed["items"]:
            height, width = (int(v) for v in item["shape"])
            raw = np.frombuffer(zlib.decompress(base64.b64decode(item["bits"])), dtype=np.uint8)
            bits = np.unpackbits(raw, count=height * width) if raw.size * 8 >= height * width else None
            if bits is None:
                raise ValueError(f"mask of item {item['index']} holds fewer bits than its shape")
            masks[int(item["index"])] = bits.reshape(height, width).astype(bool)
            kinds[int(item["index"])] = str(item["kind"])
    except (KeyError, TypeError, zlib.error, binascii.Error) as exc:
        raise ValueError(f"unreadable mask data ({exc.__class__.__name__}: {exc})") from None
    return Showcase(masks, kinds)
