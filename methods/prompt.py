"""Prompt tuning by hand: deep visual prompts (VPT-deep) and learned text context (CoOp).

peft's prompt tuning needs a transformers language model, so both are written here. Visual prompts are
prepended inside each prompted block and dropped again at its output, so bridges, feature taps and the
class token see the usual token layout. Text context sits right after the start token: the expression
shifts right and is truncated to keep the suite's text length, its end token is kept, and the padding
mask and end-of-text index follow the shifted ids (Backbone.embed_text). Prompts take part in attention,
so the model is not the frozen one at step 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods.backbone import Backbone
from methods.model import RISModel
from methods.registry import register_method
from methods.targets import WRAPPED
from riscore.errors import UserError


class PromptedBlock(nn.Module):
    """A ViT block that sees [cls, prompts, patches] and returns [cls, patches]: VPT-deep, one block."""

    def __init__(self, inner: nn.Module, prompts: Tensor) -> None:
        super().__init__()
        setattr(self, WRAPPED, inner)
        self.prompts = nn.Parameter(prompts)

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        n = self.prompts.shape[0]
        prompts = self.prompts.to(x.dtype).expand(x.shape[0], -1, -1)
        y = getattr(self, WRAPPED)(torch.cat([x[:, :1], prompts, x[:, 1:]], dim=1), *args, **kwargs)
        return torch.cat([y[:, :1], y[:, 1 + n:]], dim=1)


def shift_for_context(tokens: Tensor, n: int) -> Tensor:
    """Ids with `n` context slots after the start token; the expression is cut so its end token survives.

    The slots repeat the start token's id: not padding (0) and below the end token's id, which is the
    largest in CLIP's vocabulary, so `tokens == 0` and `tokens.argmax(-1)` stay right for the shifted ids.
    """
    b, length = (int(d) for d in tokens.shape)  # plain ints also while traced (FLOP counting on a GPU)
    if n > length - 2:
        raise UserError(f"{n} text context tokens leave no room in text_len {length}; use at most {length - 2}")
    rows = torch.arange(b, device=tokens.device)
    eot = tokens.argmax(dim=-1)
    shifted = torch.cat([tokens[:, :1], tokens[:, :1].expand(b, n), tokens[:, 1:length - n]], dim=1)
    shifted[rows, (eot + n).clamp(max=length - 1)] = tokens[rows, eot]
    return shifted


class TextContext(nn.Module):
    """CoOp-style learned context vectors, placed (with their position embeddings) after the start token."""

    def __init__(self, n_tokens: int, width: int) -> None:
        super().__init__()
        self.ctx = nn.Parameter(torch.randn(n_tokens, width) * 0.02)

    def forward(self, backbone: Backbone, tokens: Tensor) -> tuple[Tensor, Tensor]:
        n = self.ctx.shape[0]
        tokens = shift_for_context(tokens, n)
        x = backbone.text_stem(tokens)
        ctx = self.ctx.to(x.dtype) + backbone.clip.positional_embedding[1:1 + n]
        return tokens, torch.cat([x[:, :1], ctx.expand(x.shape[0], -1, -1), x[:, 1 + n:]], dim=1)


@dataclass(frozen=True)
class PromptConfig:
    vision_tokens: int = 8  # prompts per prompted vision block (ViT only; 0 = none)
    depth: int = 0  # prompted vision blocks counted from the first; 0 = every block (VPT-deep)
    text_tokens: int = 4  # learned text context tokens after the start token (0 = none)

    def __post_init__(self) -> None:
        for name in ("vision_tokens", "depth", "text_tokens"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.vision_tokens == 0 and self.text_tokens == 0:
            raise ValueError("vision_tokens and text_tokens are both 0: nothing would be trained")


def _vpt_init(n: int, width: int, patch: int) -> Tensor:
    """VPT's uniform init, scaled like Xavier for a patch-embedding-sized fan-in."""
    bound = math.sqrt(6.0 / (3 * patch * patch + width))
    return torch.empty(n, width).uniform_(-bound, bound)


def _prompt_vision(backbone: Backbone, config: PromptConfig) -> None:
    blocks = backbone.image_stages
    depth = config.depth or len(blocks)
    if depth > len(blocks):
        raise UserError(f"prompt depth {depth} exceeds the {len(blocks)} vision blocks of {backbone.config.arch}")
    width, patch = backbone.stage_widths[0], backbone.clip.visual.patch_size[0]
    device = backbone.clip.visual.class_embedding.device
    for i in range(depth):
        blocks[i] = PromptedBlock(blocks[i], _vpt_init(config.vision_tokens, width, patch).to(device))


@register_method("prompt", PromptConfig,
                 "deep visual prompts (VPT-deep, ViT only) + learned text context (CoOp); not identity at init")
def apply_prompt(model: RISModel, config: PromptConfig) -> None:
    backbone = model.backbone
    if config.text_tokens > backbone.config.text_len - 2:
        raise UserError(f"text_tokens {config.text_tokens} leave no room in text_len {backbone.config.text_len}; "
                        f"use at most {backbone.config.text_len - 2}")
    if config.vision_tokens and backbone.kind == "vit":
        _prompt_vision(backbone, config)
    if config.text_tokens:
        backbone.text_prompt = TextContext(config.text_tokens, backbone.text_width).to(
            backbone.clip.positional_embedding.device)
