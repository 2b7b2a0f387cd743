"""Conv-Adapter (Chen et al. 2022): the convolutional bottleneck adapter of ETRIS's Table 2.

One adapter is a depth-wise k x k conv that also narrows the channels by `reduction` (each output channel
sees `reduction` input channels), a nonlinearity, a point-wise conv back to the full width and a learned
per-channel scale. It runs in parallel to a frozen conv and adds to that conv's output ("convolution
parallel", the Conv-Adapter paper's choice for ResNets): here beside the 3x3 conv of every bottleneck block of
CLIP's ModifiedResNet. On a ViT image tower the same module runs on the patch grid beside each block's MLP
(class and prompt tokens untouched). The text tower has no spatial grid and is left alone. The point-wise conv
starts at zero, so the adapted model computes the frozen one at step 0.

ETRIS does not publish its Conv Adapter; `reduction` 2 gives 1.27M parameters on RN101, the power of two
closest to its 1.20M.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods.adapter import ACTIVATIONS
from methods.backbone import Backbone
from methods.model import RISModel
from methods.registry import register_method
from methods.targets import WRAPPED, tower_blocks
from riscore.errors import UserError


class ConvBottleneck(nn.Module):
    """depth-wise k x k conv (C -> C / reduction), nonlinearity, point-wise conv (-> C), channel scale."""

    def __init__(self, channels: int, reduction: int, kernel: int, activation: str, zero_init_up: bool) -> None:
        super().__init__()
        hidden = channels // reduction
        self.down = nn.Conv2d(channels, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Conv2d(hidden, channels, 1, bias=False)
        self.scale = nn.Parameter(torch.ones(channels))
        if zero_init_up:
            nn.init.zeros_(self.up.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.act(self.down(x))) * self.scale.view(1, -1, 1, 1)


class ParallelConv(nn.Module):
    """A frozen conv plus the adapter on the same input: conv(x) + adapter(x)."""

    def __init__(self, inner: nn.Module, adapter: ConvBottleneck) -> None:
        super().__init__()
        setattr(self, WRAPPED, inner)
        self.adapter = adapter

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self, WRAPPED)(x) + self.adapter(x)


class ParallelGrid(nn.Module):
    """A ViT MLP plus the adapter on its input's patch grid (the last grid x grid tokens)."""

    def __init__(self, inner: nn.Module, adapter: ConvBottleneck, grid: int) -> None:
        super().__init__()
        setattr(self, WRAPPED, inner)
        self.adapter = adapter
        self.grid = grid

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        patches = x[:, n - self.grid**2:].transpose(1, 2).reshape(b, c, self.grid, self.grid)
        delta = self.adapter(patches).flatten(2).transpose(1, 2)
        return getattr(self, WRAPPED)(x) + torch.cat([delta.new_zeros(b, n - self.grid**2, c), delta], dim=1)


@dataclass(frozen=True)
class ConvAdapterConfig:
    reduction: int = 2  # channels / hidden width; must divide every adapted width
    kernel: int = 3  # of the depth-wise conv (odd: the grid keeps its size)
    activation: str = "relu"
    zero_init_up: bool = True  # point-wise conv starts at zero: identity at init

    def __post_init__(self) -> None:
        if self.reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {self.reduction}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be a positive odd number, got {self.kernel}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")


def _adapter(channels: int, config: ConvAdapterConfig, like: Tensor) -> ConvBottleneck:
    if channels % config.reduction:
        raise UserError(f"convadapter reduction {config.reduction} does not divide the width {channels}")
    adapter = ConvBottleneck(channels, config.reduction, config.kernel, config.activation, config.zero_init_up)
    return adapter.to(device=like.device, dtype=like.dtype)


def _adapt_resnet(backbone: Backbone, config: ConvAdapterConfig) -> None:
    for layer in backbone.image_stages:
        for block in layer:
            conv = block.conv2
            block.conv2 = ParallelConv(conv, _adapter(conv.in_channels, config, conv.weight))


def _adapt_vit(backbone: Backbone, config: ConvAdapterConfig) -> None:
    for _, block in tower_blocks(backbone, "image"):
        width = block.ln_2.normalized_shape[0]
        block.mlp = ParallelGrid(block.mlp, _adapter(width, config, block.ln_2.weight), backbone.grid)


@register_method("convadapter", ConvAdapterConfig,
                 "Conv-Adapter: depth-wise conv bottleneck beside each ResNet 3x3 conv / ViT MLP (image tower)",
                 identity_at_init=True)
def apply_convadapter(model: RISModel, config: ConvAdapterConfig) -> None:
    if model.backbone.kind == "resnet":
        _adapt_resnet(model.backbone, config)
    else:
        _adapt_vit(model.backbone, config)
