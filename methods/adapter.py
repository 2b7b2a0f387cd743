"""Bottleneck adapters: Houlsby (serial, after attention and after the MLP) and AdaptFormer (parallel MLP).

Both wrap a transformer block's `attn` / `mlp` submodule, which works the same in the ViT image tower and
the text tower. A ResNet image tower has no such blocks: there the adapters go into the text tower only.
With the up-projection zero-initialised the adapted model computes exactly the frozen one at step 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from methods.model import RISModel
from methods.registry import register_method
from methods.targets import TOWERS, WRAPPED, tower_blocks

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class Bottleneck(nn.Module):
    """down-projection, nonlinearity, up-projection (no residual: the wrapper decides how it is added)."""

    def __init__(self, width: int, bottleneck: int, activation: str, zero_init_up: bool) -> None:
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, width)
        if zero_init_up:
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class SerialAdapter(nn.Module):
    """Houlsby: y = f(x); y + adapter(y), for any width-preserving adapter (Compacter reuses it).

    Keeps nn.MultiheadAttention's (output, weights) tuple intact."""

    def __init__(self, inner: nn.Module, adapter: nn.Module) -> None:
        super().__init__()
        setattr(self, WRAPPED, inner)
        self.adapter = adapter

    def forward(self, *args, **kwargs):
        out = getattr(self, WRAPPED)(*args, **kwargs)
        if isinstance(out, tuple):
            return (out[0] + self.adapter(out[0]), *out[1:])
        return out + self.adapter(out)


class ParallelAdapter(nn.Module):
    """AdaptFormer: f(x) + s * adapter(x), reading the MLP's (layer-normed) input."""

    def __init__(self, inner: nn.Module, adapter: Bottleneck, scale: float) -> None:
        super().__init__()
        setattr(self, WRAPPED, inner)
        self.adapter = adapter
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, WRAPPED)(x) + self.scale * self.adapter(x)


@dataclass(frozen=True)
class BottleneckConfig:
    towers: str = "both"  # image, text or both (ResNet image towers: text only)
    bottleneck: int = 64  # hidden width of each adapter
    zero_init_up: bool = True  # up-projection starts at zero: identity at init
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.towers not in TOWERS:
            raise ValueError(f"towers must be one of {', '.join(TOWERS)}, got {self.towers!r}")
        if self.bottleneck < 1:
            raise ValueError(f"bottleneck must be >= 1, got {self.bottleneck}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")


@dataclass(frozen=True)
class AdapterConfig(BottleneckConfig):
    placement: tuple[str, ...] = ("attn", "mlp")  # which sublayers get a serial adapter after them

    def __post_init__(self) -> None:
        super().__post_init__()
        places = set(self.placement)
        if not places or not places <= {"attn", "mlp"} or len(places) != len(self.placement):
            raise ValueError(f"placement must be a non-empty subset of attn,mlp, got {list(self.placement)}")


@dataclass(frozen=True)
class AdaptFormerConfig(BottleneckConfig):
    activation: str = "relu"  # as in AdaptFormer
    scale: float = 0.1  # s in f(x) + s * adapter(x)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")


def _width(block: nn.Module) -> int:
    return block.ln_2.normalized_shape[0]


def _bottleneck(block: nn.Module, config: BottleneckConfig) -> Bottleneck:
    adapter = Bottleneck(_width(block), config.bottleneck, config.activation, config.zero_init_up)
    return adapter.to(block.ln_2.weight.device)


@register_method("adapter", AdapterConfig,
                 "Houlsby serial bottleneck adapters after attention and MLP (ResNet image tower: text only)",
                 identity_at_init=True)
def apply_adapter(model: RISModel, config: AdapterConfig) -> None:
    for _, block in tower_blocks(model.backbone, config.towers):
        for name in config.placement:
            setattr(block, name, SerialAdapter(getattr(block, name), _bottleneck(block, config)))


@register_method("adaptformer", AdaptFormerConfig,
                 "AdaptFormer parallel scaled bottleneck on each MLP (ResNet image tower: text only)",
                 identity_at_init=True)
def apply_adaptformer(model: RISModel, config: AdaptFormerConfig) -> None:
    for _, block in tower_blocks(model.backbone, config.towers):
        block.mlp = ParallelAdapter(block.mlp, _bottleneck(block, config), config.scale)
