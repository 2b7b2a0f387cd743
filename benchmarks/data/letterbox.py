"""Aspect-preserving resize + centred padding to a square input, and its inverse.

Evaluation must score predictions against the mask at the ORIGINAL resolution (as ETRIS/CRIS do),
so every sample carries the exact geometry needed to map the square input back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Padding colour: the CLIP pixel mean, so padded pixels normalise to ~0 inside the model (as ETRIS).
PAD_RGB: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)

_NEAREST_MODES = ("nearest", "nearest-exact")


def _content(orig: int, scale: float, size: int) -> int:
    return min(size, max(1, round(orig * scale)))


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one letterboxed sample: round(orig * scale) content pixels at (pad_top, pad_left)."""

    orig_h: int
    orig_w: int
    size: int
    scale: float
    pad_top: int
    pad_left: int

    def __post_init__(self) -> None:
        for name in ("orig_h", "orig_w", "size"):
            if getattr(self, name) < 1:
                raise ValueError(f"Letterbox.{name} must be >= 1, got {getattr(self, name)}")
        if not self.scale > 0:
            raise ValueError(f"Letterbox.scale must be > 0, got {self.scale}")
        if self.pad_top < 0 or self.pad_top + self.content_h > self.size:
            raise ValueError(f"Letterbox.pad_top={self.pad_top} exceeds the {self.size}px input")
        if self.pad_left < 0 or self.pad_left + self.content_w > self.size:
            raise ValueError(f"Letterbox.pad_left={self.pad_left} exceeds the {self.size}px input")

    @classmethod
    def identity(cls, size: int) -> Letterbox:
        """For data rendered directly at the input size (no resize, no padding)."""
        return cls(orig_h=size, orig_w=size, size=size, scale=1.0, pad_top=0, pad_left=0)

    @classmethod
    def fit(cls, orig_h: int, orig_w: int, size: int) -> Letterbox:
        """Scale the longer side to `size` and centre the shorter side (extra odd pixel goes bottom/right)."""
        if orig_h < 1 or orig_w < 1 or size < 1:
            raise ValueError(f"Letterbox.fit needs positive sizes, got {orig_h}x{orig_w} -> {size}")
        scale = size / max(orig_h, orig_w)
        pad_top = (size - _content(orig_h, scale, size)) // 2
        pad_left = (size - _content(orig_w, scale, size)) // 2
        return cls(orig_h, orig_w, size, scale, pad_top, pad_left)

    @property
    def content_h(self) -> int:
        return _content(self.orig_h, self.scale, self.size)

    @property
    def content_w(self) -> int:
        return _content(self.orig_w, self.scale, self.size)

    def _place(self, content: torch.Tensor, fill: torch.Tensor | float) -> torch.Tensor:
        """Paste [C, h, w] content into a [C, S, S] canvas filled with `fill`."""
        canvas = torch.empty(content.shape[0], self.size, self.size, dtype=content.dtype)
        canvas[:] = fill
        top, left = self.pad_top, self.pad_left
        canvas[:, top : top + self.content_h, left : left + self.content_w] = content
        return canvas

    def apply_image(self, image: np.ndarray) -> torch.Tensor:
        """uint8 [H, W, 3] -> float32 [3, S, S] in [0, 1], padded with the CLIP mean colour."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"apply_image expects uint8 [H, W, 3], got {image.dtype} {image.shape}")
        self._check_orig(image.shape[:2])
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        x = F.interpolate(x[None], size=(self.content_h, self.content_w), mode="bicubic",
                          align_corners=False, antialias=True)[0].clamp_(0.0, 1.0)
        return self._place(x, torch.tensor(PAD_RGB, dtype=torch.float32)[:, None, None])

    def apply_mask(self, mask: np.ndarray | torch.Tensor, soft: bool = False) -> torch.Tensor:
        """bool [H, W] -> float32 [S, S]: in {0, 1} (nearest, so the target stays binary), or with `soft` in
        [0, 1] (bilinear without antialiasing, as ETRIS resizes its training masks: fractions at the edges)."""
        m = torch.as_tensor(np.asarray(mask))
        if m.ndim != 2:
            raise ValueError(f"apply_mask expects [H, W], got shape {tuple(m.shape)}")
        self._check_orig(tuple(m.shape))
        size = (self.content_h, self.content_w)
        resize = {"mode": "bilinear", "align_corners": False} if soft else {"mode": "nearest-exact"}
        m = F.interpolate(m.float()[None, None], size=size, **resize)
        return self._place(m[0], 0.0)[0]

    def undo(self, t: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """[..., S, S] -> [..., H, W]: crop the padding, resize to the original size.

        Bilinear suits probabilities; nearest modes keep the input dtype (e.g. bool masks stay bool).
        """
        if t.ndim < 2 or tuple(t.shape[-2:]) != (self.size, self.size):
            raise ValueError(f"undo expects [..., {self.size}, {self.size}], got {tuple(t.shape)}")
        lead = t.shape[:-2]
        top, left = self.pad_top, self.pad_left
        crop = t[..., top : top + self.content_h, left : left + self.content_w]
        x = crop.reshape(-1, 1, self.content_h, self.content_w).float()
        smooth = {} if mode in _NEAREST_MODES else {"align_corners": False}
        out = F.interpolate(x, size=(self.orig_h, self.orig_w), mode=mode, **smooth)
        out = out.reshape(*lead, self.orig_h, self.orig_w)
        return out.to(t.dtype) if mode in _NEAREST_MODES else out

    def _check_orig(self, hw: tuple[int, ...]) -> None:
        if tuple(hw) != (self.orig_h, self.orig_w):
            raise ValueError(f"input is {tuple(hw)}, Letterbox fitted to ({self.orig_h}, {self.orig_w})")
