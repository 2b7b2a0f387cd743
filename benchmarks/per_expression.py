"""Per-expression results inside a run record, packed so a shapes run adds tens of kilobytes, not megabytes.

Each evaluated split's metrics carry `per_expression`: the dataset index, intersection and union pixel counts
and kind of every scored expression, as little-endian arrays compressed with zlib and base64-encoded. IoU is
not stored: it is intersection / union (1 when both are empty), exactly as IoUMeter scored it, so mIoU, oIoU
and Prec@X can all be re-aggregated and methods paired expression by expression after the fact.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ENCODING = "zlib+base64"
DTYPES = {"index": "<u4", "intersection": "<u4", "union": "<u4", "kind": "u1"}


@dataclass(frozen=True)
class PerExpression:
    """One split's expressions of one run, in evaluation order."""

    index: np.ndarray  # dataset item index: the same expression has the same index in every run of a suite
    intersection: np.ndarray
    union: np.ndarray
    kind: np.ndarray  # codes into `kinds`
    kinds: tuple[str, ...]

    @property
    def iou(self) -> np.ndarray:
        """Per-expression IoU in [0, 1], as IoUMeter computes it (an empty prediction of an empty target is 1)."""
        union = self.union.astype(np.float64)
        return np.where(self.union == 0, 1.0, self.intersection / np.where(union == 0, 1.0, union))


def _encode(values: Sequence[int], dtype: str) -> str:
    array = np.asarray(values, dtype=np.int64)
    limit = np.iinfo(np.dtype(dtype)).max
    if array.size and (array.min() < 0 or array.max() > limit):
        raise ValueError(f"values outside 0..{limit} cannot be stored as {dtype}")
    return base64.b64encode(zlib.compress(array.astype(dtype).tobytes(), 9)).decode("ascii")


def _decode(text: str, dtype: str, n: int) -> np.ndarray:
    array = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype)
    if array.size != n:
        raise ValueError(f"packed array holds {array.size} values, expected {n}")
    return array.astype(np.int64)


def pack(index: Sequence[int], intersection: Sequence[int], union: Sequence[int],
         kinds: Sequence[str | None]) -> dict[str, Any]:
    """The JSON-ready form of one split's per-expression results."""
    n = len(index)
    if not len(intersection) == len(union) == len(kinds) == n:
        raise ValueError("index, intersection, union and kinds must have one entry per expression")
    names = sorted({k or "" for k in kinds})
    if len(names) > np.iinfo(np.uint8).max + 1:
        raise ValueError(f"{len(names)} expression kinds do not fit one byte each")
    codes = [names.index(k or "") for k in kinds]
    columns = {"index": index, "intersection": intersection, "union": union, "kind": codes}
    return {"encoding": ENCODING, "n": n, "kinds": names, "dtypes": DTYPES,
            **{name: _encode(values, DTYPES[name]) for name, values in columns.items()}}


def unpack(packed: dict[str, Any]) -> PerExpression:
    """Arrays from `pack`'s output; ValueError for anything else."""
    try:
        if packed["encoding"] != ENCODING:
            raise ValueError(f"unknown per-expression encoding {packed['encoding']!r}")
        n = int(packed["n"])
        arrays = {name: _decode(packed[name], packed["dtypes"][name], n) for name in DTYPES}
        kinds = tuple(packed["kinds"])
    except (KeyError, TypeError, zlib.error, binascii.Error) as exc:
        raise ValueError(f"unreadable per-expression data ({exc.__class__.__name__}: {exc})") from None
    if n and arrays["kind"].max() >= len(kinds):
        raise ValueError("per-expression kind code outside its kind list")
    return PerExpression(kinds=kinds, **arrays)


def from_meter(meter: Any, index: Sequence[int]) -> dict[str, Any]:
    """Pack an IoUMeter's expressions, scored in the order of `index`."""
    if len(index) != len(meter.ious):
        raise ValueError(f"{len(meter.ious)} scored expressions but {len(index)} item indices")
    return pack(index, meter.intersections, meter.unions, meter.kinds)
