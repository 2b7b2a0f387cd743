"""The Bridger's zoom layers, which move an image stage to the shared stride-16 grid at width d and back.

ETRIS's Table 5 compares four forms; `conv+deconv` is ETRIS's own (a kernel = stride = factor conv to go
down, a transposed one to go up). The paper names the others without defining them; here, chosen so that
their RN101 parameter counts land near the paper's:
- `conv+interpolate`: every transposed conv becomes a 1x1 conv followed by bilinear upsampling;
- `linear`: a Linear over channels and a Linear over the token positions (so it is tied to the image size);
- `mlp`: a per-position two-layer MLP (hidden width d) with bilinear resizing on the narrow side.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

ZOOMS = ("conv+deconv", "conv+interpolate", "linear", "mlp")


class Resize(nn.Module):
    """Bilinear resize by an integer factor, up or down."""

    def __init__(self, factor: int, up: bool) -> None:
        super().__init__()
        self.factor, self.up = factor, up

    def forward(self, x: Tensor) -> Tensor:
        if self.factor == 1:
            return x
        h, w = x.shape[-2:]
        size = (h * self.factor, w * self.factor) if self.up else (h // self.factor, w // self.factor)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class PositionLinear(nn.Module):
    """A Linear over channels, then one over the side_in^2 positions to side_out^2 positions."""

    def __init__(self, c_in: int, c_out: int, side_in: int, side_out: int) -> None:
        super().__init__()
        self.channels = nn.Linear(c_in, c_out)
        self.positions = nn.Linear(side_in**2, side_out**2)
        self.side_out = side_out

    def forward(self, x: Tensor) -> Tensor:
        y = self.positions(self.channels(x.flatten(2).transpose(1, 2)).transpose(1, 2))
        return y.reshape(x.shape[0], -1, self.side_out, self.side_out)


class PositionMLP(nn.Module):
    """Linear(c_in, hidden), GELU, Linear(hidden, c_out) at every position (a 1x1-conv MLP)."""

    def __init__(self, c_in: int, c_out: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(c_in, hidden, 1), nn.GELU(), nn.Conv2d(hidden, c_out, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


def make_zoom(kind: str, c_in: int, c_out: int, factor: int, up: bool, side_in: int, hidden: int,
              normalised: bool) -> nn.Module:
    """[B, c_in, s, s] -> [B, c_out, s*factor or s/factor, ...]; BatchNorm + ReLU after it if `normalised`."""
    if kind == "conv+deconv" or (kind == "conv+interpolate" and not up):
        conv_cls = nn.ConvTranspose2d if up else nn.Conv2d
        zoom: nn.Module = conv_cls(c_in, c_out, factor, stride=factor, bias=False)
    elif kind == "conv+interpolate":
        zoom = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), Resize(factor, up=True))
    elif kind == "linear":
        zoom = PositionLinear(c_in, c_out, side_in, side_in * factor if up else side_in // factor)
    elif kind == "mlp":
        narrow_first = c_out < c_in  # resize where the map has fewer channels
        mlp, resize = PositionMLP(c_in, c_out, hidden), Resize(factor, up)
        zoom = nn.Sequential(mlp, resize) if narrow_first else nn.Sequential(resize, mlp)
    else:
        raise ValueError(f"zoom must be one of {', '.join(ZOOMS)}, got {kind!r}")
    return nn.Sequential(zoom, nn.BatchNorm2d(c_out), nn.ReLU()) if normalised else zoom
