"""Compacter (Mahabadi et al., NeurIPS 2021): Houlsby adapters whose projections are low-rank PHM layers.

A parameterised hypercomplex multiplication (PHM) layer builds its weight as a sum of Kronecker products,
W = sum_i A_i (x) B_i over i = 1..n, with A_i (n x n) shared by every adapter layer of the model and
B_i = s_i t_i^T of rank `rank` per layer; so a layer costs about (in + out) * rank parameters instead of
in * out. Placement and the rest follow the Houlsby adapter (methods/adapter.py): after attention and after
the MLP in the transformer blocks of the chosen towers (a ResNet image tower: text only). Defaults are the
paper's: n = 4, rank 1, bottleneck 24 (its reduction factor 32 on a 768-wide model), GELU. The up
projection's t factors start at zero, so the adapted model computes the frozen one at step 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods.adapter import ACTIVATIONS, AdapterConfig, SerialAdapter
from methods.model import RISModel
from methods.registry import register_method
from methods.targets import tower_blocks
from riscore.errors import UserError


class PHMRules(nn.Module):
    """The shared A_i, [n, n, n]: one module (at `backbone.phm_rules`) so the state dict holds them once."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, n, n))
        nn.init.xavier_uniform_(self.weight)


class PHMLinear(nn.Module):
    """x -> x W + b with W = sum_i kron(A_i, s_i t_i^T), A (`rules`) shared between layers."""

    def __init__(self, rules: PHMRules, in_features: int, out_features: int, rank: int, zero_init: bool) -> None:
        super().__init__()
        n = rules.weight.shape[0]
        self._shared = (rules,)  # a plain attribute: registered once, at the backbone, not in every layer
        self.s = nn.Parameter(torch.empty(n, in_features // n, rank))
        self.t = nn.Parameter(torch.empty(n, rank, out_features // n))
        self.bias = nn.Parameter(torch.zeros(out_features))
        for factor in (self.s, self.t):
            nn.init.xavier_uniform_(factor)
        if zero_init:
            nn.init.zeros_(self.t)

    @property
    def rules(self) -> nn.Parameter:
        return self._shared[0].weight

    def weight(self) -> Tensor:
        """[in, out]: the Kronecker sum, as one einsum over the n rules."""
        n = self.rules.shape[0]
        blocks = self.s @ self.t  # [n, in/n, out/n]
        w = torch.einsum("iab,icd->acbd", self.rules, blocks)  # [n, in/n, n, out/n]
        return w.reshape(n * blocks.shape[1], n * blocks.shape[2])

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight().to(x.dtype) + self.bias.to(x.dtype)


class PHMBottleneck(nn.Module):
    """down PHM, nonlinearity, up PHM (the serial wrapper adds the residual)."""

    def __init__(self, rules: PHMRules, width: int, config: CompacterConfig) -> None:
        super().__init__()
        self.down = PHMLinear(rules, width, config.bottleneck, config.rank, zero_init=False)
        self.act = ACTIVATIONS[config.activation]()
        self.up = PHMLinear(rules, config.bottleneck, width, config.rank, zero_init=config.zero_init_up)

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.act(self.down(x)))


@dataclass(frozen=True)
class CompacterConfig(AdapterConfig):
    bottleneck: int = 24  # the paper's reduction factor 32 on T5-base's width 768
    phm_dim: int = 4  # n: Kronecker factors; must divide the bottleneck and every adapted width
    rank: int = 1  # of each B_i = s_i t_i^T

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.phm_dim < 1 or self.bottleneck % self.phm_dim:
            raise ValueError(f"phm_dim must be a positive divisor of bottleneck {self.bottleneck}, got "
                             f"{self.phm_dim}")
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")


@register_method("compacter", CompacterConfig,
                 "Compacter: Houlsby adapters with shared-rule low-rank PHM (Kronecker) projections",
                 identity_at_init=True)
def apply_compacter(model: RISModel, config: CompacterConfig) -> None:
    blocks = tower_blocks(model.backbone, config.towers)
    n = config.phm_dim
    like = blocks[0][1].ln_2.weight
    rules = PHMRules(n).to(device=like.device, dtype=like.dtype)
    model.backbone.phm_rules = rules
    for _, block in blocks:
        width = block.ln_2.normalized_shape[0]
        if width % n:
            raise UserError(f"compacter phm_dim {n} does not divide the width {width}")
        for name in config.placement:
            adapter = PHMBottleneck(rules, width, config).to(device=like.device, dtype=like.dtype)
            setattr(block, name, SerialAdapter(getattr(block, name), adapter))
