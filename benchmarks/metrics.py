"""RIS evaluation protocol (ETRIS/CRIS): logits -> original-resolution mask -> IoU statistics.

Masks are scored at the ORIGINAL image resolution, so numbers are comparable with published RefCOCO
results regardless of the input size a method was trained at.

Empty cases: an expression whose prediction and target are both empty scores IoU = 1 (a correct
"nothing"); ETRIS's `inter / (union + 1e-6)` would give 0 there. RefCOCO targets are never empty, so
this only matters for synthetic data. An empty prediction against a non-empty target (or the reverse)
scores 0. With zero updates, `compute()` returns n = 0 and None for every metric instead of NaN.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.data.letterbox import Letterbox

THRESHOLD = 0.35  # ETRIS/CRIS probability threshold
PREC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def logits_to_probabilities(logits: torch.Tensor, letterboxes: Sequence[Letterbox]) -> list[torch.Tensor]:
    """[B, h, w] logits -> B float probability maps at each sample's original [H, W].

    The sigmoid and the bicubic upsample to the input size run batched; only the letterbox undo is
    per sample (original sizes differ).
    """
    if logits.ndim != 3 or logits.shape[0] != len(letterboxes):
        raise ValueError(f"logits must be [B, h, w] with B = {len(letterboxes)} letterboxes, "
                         f"got {tuple(logits.shape)}")
    if not letterboxes:
        return []
    size = letterboxes[0].size
    if any(lb.size != size for lb in letterboxes):
        raise ValueError("all letterboxes in a batch must share the same input size")
    probs = torch.sigmoid(logits.detach().float())[:, None]
    if tuple(probs.shape[-2:]) != (size, size):
        # align_corners=True as ETRIS's evaluation does.
        probs = F.interpolate(probs, size=(size, size), mode="bicubic", align_corners=True)
    # Bicubic undo mirrors ETRIS's cv2.INTER_CUBIC inverse warp.
    return [lb.undo(p[0], mode="bicubic") for p, lb in zip(probs, letterboxes, strict=True)]


def logits_to_masks(logits: torch.Tensor, letterboxes: Sequence[Letterbox],
                    threshold: float = THRESHOLD) -> list[torch.Tensor]:
    """[B, h, w] logits -> B bool masks at each sample's original [H, W]: the probabilities above `threshold`."""
    return [p > threshold for p in logits_to_probabilities(logits, letterboxes)]


def logits_to_mask(logits: torch.Tensor, lb: Letterbox, threshold: float = THRESHOLD) -> torch.Tensor:
    """[h, w] logits -> bool [H, W] mask at the original resolution."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be [h, w], got {tuple(logits.shape)}")
    return logits_to_masks(logits[None], [lb], threshold)[0]


class IoUMeter:
    """Accumulates per-expression IoU and the totals needed for mIoU, oIoU and Prec@t.

    It keeps every expression's intersection, union and kind too, so a record can carry them and statistics
    can be recomputed later (see benchmarks.per_expression).
    """

    def __init__(self) -> None:
        self.ious: list[float] = []
        self.intersections: list[int] = []
        self.unions: list[int] = []
        self.kinds: list[str | None] = []
        self.intersection = 0
        self.union = 0
        self._by_kind: dict[str, list[float]] = defaultdict(list)

    def update(self, pred: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
               kind: str | None = None) -> float:
        """Score one expression; returns its IoU in [0, 1]."""
        p = torch.as_tensor(pred).bool()
        t = torch.as_tensor(target).bool()
        if p.shape != t.shape:
            raise ValueError(f"prediction {tuple(p.shape)} and target {tuple(t.shape)} differ in shape")
        inter = int((p & t).sum())
        union = int((p | t).sum())
        iou = 1.0 if union == 0 else inter / union
        self.ious.append(iou)
        self.intersections.append(inter)
        self.unions.append(union)
        self.kinds.append(kind)
        self.intersection += inter
        self.union += union
        if kind is not None:
            self._by_kind[kind].append(iou)
        return iou

    @classmethod
    def merged(cls, meters: Iterable[IoUMeter]) -> IoUMeter:
        """One meter over the expressions of `meters` in their order: shards of one evaluation, reunited."""
        out = cls()
        for meter in meters:
            out.ious += meter.ious
            out.intersections += meter.intersections
            out.unions += meter.unions
            out.kinds += meter.kinds
            out.intersection += meter.intersection
            out.union += meter.union
            for kind, ious in meter._by_kind.items():
                out._by_kind[kind] += ious
        return out

    def compute(self) -> dict:
        """Metrics in percent (0..100); None for every metric when nothing was scored."""
        n = len(self.ious)
        keys = ["mIoU", "oIoU", *(f"prec@{t}" for t in PREC_THRESHOLDS)]
        if n == 0:
            return {**dict.fromkeys(keys), "n": 0, "per_kind": {}}
        ious = np.asarray(self.ious, dtype=np.float64)
        out: dict = {
            "mIoU": 100.0 * float(ious.mean()),
            "oIoU": 100.0 if self.union == 0 else 100.0 * self.intersection / self.union,
        }
        for t in PREC_THRESHOLDS:
            out[f"prec@{t}"] = 100.0 * float((ious > t).mean())  # strictly greater, as ETRIS
        out["n"] = n
        out["per_kind"] = {k: 100.0 * float(np.mean(v)) for k, v in sorted(self._by_kind.items())}
        return out
