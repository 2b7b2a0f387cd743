"""Bridger (ETRIS, ICCV 2023): small modules between the frozen CLIP towers that let image and text talk.

At a few (image stage, text block) pairs both streams are zoomed into a narrow width d, attend to each
other, are zoomed back out and added to the towers, so the later frozen blocks see fused features. The
structure, widths and initialisation follow the released ETRIS code, including its two variants: ViT
(multiplicative-gate cross-attention, zooms with BatchNorm + ReLU) and ResNet (post-norm transformer
interactor, plain strided zooms that bring every stage to the stride-16 grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from methods.attention import UnfusedAttention
from methods.backbone import Backbone
from methods.model import RISModel
from methods.registry import register_method
from methods.zoom import ZOOMS, make_zoom
from riscore.errors import UserError

INTERACTORS = ("gate", "transformer")
# ETRIS's released configs: ViT-B/16 uses the gate interactor with 8 heads, RN50/RN101 the transformer
# interactor with 4 (config/refcoco/bridge_*.yaml, `nhead`).
ETRIS_DEFAULTS = {"vit": ("gate", 8), "resnet": ("transformer", 4)}
DEFAULT_NUM_STAGES = 3


def _increasing(values: tuple[int, ...], name: str) -> None:
    if any(v < 0 for v in values) or any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"{name} must be non-negative and strictly increasing, got {values}")


@dataclass(frozen=True)
class BridgerConfig:
    """Every Bridger knob; `None` means ETRIS's choice for the backbone kind (resolved at apply time).

    Placement: `num_stages` candidate positions evenly spaced over the image stages and ending at the last
    (ViT-B/16: blocks 4, 8, 12; ResNet: the last ones of layer1..4, so 3 = layer2..4), each paired with
    the text block at the same relative depth among the candidates (blocks 4, 8, 12 of 12); of those,
    the last `fusion_stages` get a Bridger (ETRIS's `multi_stage`), or the `fusion_stages` ending
    `skip_last` candidates earlier. `image_stages` (0-based) places them explicitly instead, with
    `text_blocks` as their partners (default: same relative depth).

    ETRIS's Table 4 in these terms (3 candidates; scope "2->n" starts at the first, "n/2->n" at the second,
    "n->n" at the last; a scope's k Bridgers are its first k): 2->n with 1, 2, 3 Bridgers is
    fusion_stages 1, 2, 3 with skip_last 2, 1, 0; n/2->n with 1, 2 is fusion_stages 1, 2 with skip_last 1, 0;
    n->n with 1 is fusion_stages 1. Table 7's hidden dimension is `width`; Table 5's zoom layer is `zoom`.
    """

    width: int = 64  # ETRIS `ladder_dim`: 64 in the released configs; the paper's 1.39M ViT count is 128
    heads: int | None = None  # ViT 8, ResNet 4
    num_stages: int = DEFAULT_NUM_STAGES
    fusion_stages: int | None = None  # None: all num_stages candidates
    image_stages: tuple[int, ...] = ()
    text_blocks: tuple[int, ...] = ()
    interactor: str | None = None  # "gate" (ViT's) or "transformer" (ResNet's)
    dropout: float = 0.1  # inside the transformer interactor, as ETRIS; the gate has none
    train_pos_embed: bool = True  # ETRIS trains CLIP's positional embeddings (image, text, attnpool)
    # False lets CLIP's BatchNorm statistics drift in training, as ETRIS does (suite key train_batchnorm: for all)
    freeze_bn_stats: bool = True
    mask_padding: bool = False  # ETRIS attends to padded words inside the Bridger; True masks them
    skip_last: int = 0  # the fusion_stages Bridgers end this many candidates before the last (Table 4 scope)
    zoom: str = "conv+deconv"  # zoom layers (methods/zoom.py; Table 5): ETRIS's conv + transposed conv
    ffn_width: int | None = None  # transformer interactor's FFN; None: 2 x width (ETRIS: 128 at any width)
    # options added after records were committed: at these values they leave a run's identity unchanged
    ADDED_OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"skip_last": 0, "zoom": "conv+deconv", "ffn_width": None}

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.heads is not None and (self.heads < 1 or self.width % self.heads):
            raise ValueError(f"heads must be a positive divisor of width {self.width}, got {self.heads}")
        if self.num_stages < 0:
            raise ValueError(f"num_stages must be >= 0, got {self.num_stages}")
        if self.fusion_stages is not None and not 0 <= self.fusion_stages <= self.num_stages:
            raise ValueError(f"fusion_stages must be in 0..num_stages ({self.num_stages}), got "
                             f"{self.fusion_stages}")
        _increasing(self.image_stages, "image_stages")
        _increasing(self.text_blocks, "text_blocks")
        if self.image_stages and (self.num_stages != DEFAULT_NUM_STAGES or self.fusion_stages is not None):
            raise ValueError("image_stages places the Bridgers explicitly: leave num_stages and fusion_stages unset")
        if self.text_blocks and len(self.text_blocks) != len(self.image_stages):
            raise ValueError(f"text_blocks needs one block per image stage {self.image_stages}, got "
                             f"{self.text_blocks}")
        if self.interactor is not None and self.interactor not in INTERACTORS:
            raise ValueError(f"interactor must be one of {INTERACTORS} (or unset), got {self.interactor!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.skip_last and (self.image_stages or self.skip_last < 0
                               or (self.fusion_stages or self.num_stages) + self.skip_last > self.num_stages):
            raise ValueError(f"skip_last {self.skip_last} needs fusion_stages + skip_last <= num_stages "
                             f"({self.num_stages}) and no image_stages")
        if self.ffn_width is not None and self.ffn_width < 1:
            raise ValueError(f"ffn_width must be positive (or unset), got {self.ffn_width}")
        if self.zoom not in ZOOMS:
            raise ValueError(f"zoom must be one of {', '.join(ZOOMS)}, got {self.zoom!r}")


# --- interactors: (query, memory) -> updated query, all batch-first -----------------------------------


class GateInteractor(nn.Module):
    """ETRIS's ViT interactor: cross-attention whose output multiplies the query, a learned gate."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = UnfusedAttention(width, heads, batch_first=True)

    def forward(self, query: Tensor, memory: Tensor, query_pad: Tensor | None, memory_pad: Tensor | None
                ) -> Tensor:
        del query_pad  # no attention among the queries here, so a padded query only changes itself
        return query * self.attn(query, memory, memory, key_padding_mask=memory_pad)[0]


class TransformerInteractor(nn.Module):
    """ETRIS's ResNet interactor: post-norm self-attention, cross-attention and a ReLU FFN.

    ETRIS fixes the FFN at 128 = 2 x its d of 64; by default it is 2 x width here, so width ablations scale
    it too (`ffn_width` 128 keeps ETRIS's: its Table 7 counts come out only that way).
    """

    def __init__(self, width: int, heads: int, dropout: float, ffn: int) -> None:
        super().__init__()
        self.self_attn = UnfusedAttention(width, heads, dropout=dropout, batch_first=True)
        self.cross_attn = UnfusedAttention(width, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(width, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, width))
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(width) for _ in range(3))
        self.drop = nn.Dropout(dropout)

    def forward(self, query: Tensor, memory: Tensor, query_pad: Tensor | None, memory_pad: Tensor | None
                ) -> Tensor:
        x = self.norm1(query + self.drop(self.self_attn(query, query, query, key_padding_mask=query_pad)[0]))
        x = self.norm2(x + self.drop(self.cross_attn(x, memory, memory, key_padding_mask=memory_pad)[0]))
        return self.norm3(x + self.drop(self.ffn(x)))


def _interactor(kind: str, width: int, heads: int, config: BridgerConfig) -> nn.Module:
    if kind == "gate":
        return GateInteractor(width, heads)
    return TransformerInteractor(width, heads, config.dropout, config.ffn_width or 2 * width)


# --- one Bridger ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageGeometry:
    """How one image stage reaches the shared grid: by `factor`, upsampling (transposed conv) if `up`."""

    image_width: int
    factor: int
    up: bool
    side: int  # the stage's grid side at the suite's image size (only the `linear` zoom depends on it)


class BridgerStage(nn.Module):
    """Zoom both streams to width d, let each attend to the other, zoom back: returns the two residuals."""

    def __init__(self, geometry: StageGeometry, text_width: int, config: BridgerConfig, interactor: str,
                 heads: int, normalised: bool, cross_stage: bool) -> None:
        super().__init__()
        d, g = config.width, geometry
        inner_side = g.side * g.factor if g.up else g.side // g.factor
        self.zoom_in = make_zoom(config.zoom, g.image_width, d, g.factor, g.up, g.side, d, normalised)
        self.zoom_out = make_zoom(config.zoom, d, g.image_width, g.factor, not g.up, inner_side, d, normalised)
        self.text_in = nn.Linear(text_width, d)
        self.text_out = nn.Linear(d, text_width)
        # From the second Bridger on, the previous Bridger's inputs are added back and normalised.
        self.norm_v = nn.LayerNorm(d) if cross_stage else None
        self.norm_t = nn.LayerNorm(d) if cross_stage else None
        self.interact_v = _interactor(interactor, d, heads, config)
        self.interact_t = _interactor(interactor, d, heads, config)

    def forward(self, image: Tensor, text: Tensor, carry: tuple[Tensor, Tensor] | None, pad: Tensor | None
                ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        v = self.zoom_in(image)
        b, d, h, w = v.shape
        v, t = v.flatten(2).transpose(1, 2), self.text_in(text)
        if self.norm_v is not None:
            if carry is None:
                raise RuntimeError("a cross-stage Bridger ran before the one it continues")
            v, t = self.norm_v(v + carry[0]), self.norm_t(t + carry[1])
        carry = (v, t)
        v, t = self.interact_v(v, t, None, pad), self.interact_t(t, v, pad, None)
        return self.zoom_out(v.transpose(1, 2).reshape(b, d, h, w)), self.text_out(t), carry


# --- the hook the backbone calls ----------------------------------------------------------------------


class Bridger(nn.Module):
    """The Backbone's `bridge`: stage k of `stages` runs after image stage / text block `pairs[k]`.

    The cross-stage residual needs the previous Bridger's inputs, so they are carried from call k-1 to
    call k of one forward and dropped after the last (the backbone always calls k = 0, 1, ... in order).
    """

    def __init__(self, pairs: tuple[tuple[int, int], ...], stages: list[BridgerStage], has_cls: bool,
                 mask_padding: bool) -> None:
        super().__init__()
        if len(pairs) != len(stages):
            raise ValueError(f"{len(pairs)} stage pairs for {len(stages)} Bridger stages")
        self.pairs = pairs
        self.stages = nn.ModuleList(stages)
        self.has_cls = has_cls  # ViT tokens: [cls, patches]; the Bridger acts on the patches only
        self.mask_padding = mask_padding
        self._carry: tuple[Tensor, Tensor] | None = None

    def forward(self, k: int, image: Tensor, text: Tensor, pad_mask: Tensor) -> tuple[Tensor, Tensor]:
        carry = None if k == 0 else self._carry
        patches = image[:, 1:] if self.has_cls else image
        if self.has_cls:  # [B, N, C] tokens -> [B, C, side, side] map
            side = math.isqrt(patches.shape[1])
            patches = patches.transpose(1, 2).reshape(patches.shape[0], -1, side, side)
        dv, dt, carry = self.stages[k](patches, text, carry, pad_mask if self.mask_padding else None)
        self._carry = carry if k + 1 < len(self.stages) else None
        patches = patches + dv
        if self.has_cls:
            image = torch.cat([image[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)
        else:
            image = patches
        return image, text + dt


def _stage_stride(backbone: Backbone, stage: int) -> int:
    if backbone.kind == "vit":
        return backbone.tap_strides[0]
    return 4 * 2**stage  # ModifiedResNet: the stem reduces by 4, layer1 keeps it, each later layer halves


def _evenly_spaced(n: int, total: int) -> tuple[int, ...]:
    """n 0-based positions out of `total`, evenly spaced and ending at the last (3 of 12: 3, 7, 11)."""
    return tuple((k + 1) * total // n - 1 for k in range(n))


def stage_pairs(backbone: Backbone, config: BridgerConfig) -> tuple[tuple[int, int], ...]:
    """The (image stage, text block) pairs that get a Bridger on this backbone."""
    n_image, n_text = len(backbone.stage_widths), len(backbone.text_blocks)
    arch = backbone.config.arch
    if config.image_stages:
        images = config.image_stages
        texts = config.text_blocks or _evenly_spaced(len(images), n_text)
    else:
        n = config.num_stages
        if n > min(n_image, n_text):
            raise UserError(f"bridger num_stages {n} exceeds the {n_image} image stages or {n_text} text "
                            f"blocks of {arch}")
        candidates = _evenly_spaced(n, n_image) if backbone.kind == "vit" else tuple(range(n_image - n, n_image))
        keep = n if config.fusion_stages is None else config.fusion_stages
        chosen = slice(n - keep - config.skip_last, n - config.skip_last)
        images = candidates[chosen]
        texts = _evenly_spaced(n, n_text)[chosen]
    if images and images[-1] >= n_image:
        raise UserError(f"bridger image_stages {images} out of range: {arch} has {n_image} image stages")
    if len(texts) != len(images) or (texts and texts[-1] >= n_text):
        raise UserError(f"bridger text_blocks {texts} out of range: {arch} has {n_text} text blocks")
    return tuple(zip(images, texts, strict=True))


def _geometry(backbone: Backbone, stage: int, is_last: bool) -> StageGeometry:
    """Each stage meets the decoder's middle-tap grid (stride 16). At equal stride ETRIS still zooms the
    last Bridger in with a transposed conv (and out with a conv); kept, as it sets kaiming's fan_out."""
    stride, target = _stage_stride(backbone, stage), backbone.tap_strides[1]
    side = backbone.config.image_size // stride
    if stride > target:
        return StageGeometry(backbone.stage_widths[stage], stride // target, up=True, side=side)
    return StageGeometry(backbone.stage_widths[stage], target // stride, up=stride == target and is_last, side=side)


def init_like_etris(module: nn.Module) -> None:
    """ETRIS's initialisation: Linear N(0, 0.02) with zero bias, convs kaiming fan_out (ReLU). Its
    nn.MultiheadAttention keeps its own xavier-uniform q/k/v (over the fused [3d, d] matrix)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    for m in module.modules():
        if isinstance(m, UnfusedAttention):
            bound = math.sqrt(6.0 / (m.embed_dim + 3 * m.embed_dim))
            for proj in (m.q_proj, m.k_proj, m.v_proj):
                nn.init.uniform_(proj.weight, -bound, bound)


def build_bridger(backbone: Backbone, config: BridgerConfig) -> Bridger:
    pairs = stage_pairs(backbone, config)
    default_interactor, default_heads = ETRIS_DEFAULTS[backbone.kind]
    interactor = config.interactor or default_interactor
    heads = config.heads or default_heads
    if config.width % heads:
        raise UserError(f"bridger width {config.width} is not divisible by {heads} heads; set heads")
    stages = [
        BridgerStage(_geometry(backbone, image_stage, k == len(pairs) - 1), backbone.text_width, config,
                     interactor, heads, normalised=backbone.kind == "vit", cross_stage=k > 0)
        for k, (image_stage, _) in enumerate(pairs)
    ]
    bridger = Bridger(pairs, stages, has_cls=backbone.kind == "vit", mask_padding=config.mask_padding)
    init_like_etris(bridger)
    return bridger


@register_method("bridger", BridgerConfig, "ETRIS Bridger: small cross-modal adapters between the frozen "
                 "CLIP towers (ICCV 2023)")
def apply_bridger(model: RISModel, config: BridgerConfig) -> None:
    backbone = model.backbone
    if backbone.bridge is not None:
        raise UserError("the backbone already has a bridge; the Bridger cannot be applied twice")
    ref = next(backbone.parameters())
    backbone.bridge = build_bridger(backbone, config).to(device=ref.device, dtype=ref.dtype)
    if config.train_pos_embed:
        for name, param in backbone.clip.named_parameters():
            if "positional_embedding" in name:
                param.requires_grad_(True)
    if not config.freeze_bn_stats:
        backbone.unfreeze_batchnorm()


def bridger_parameter_count(model: RISModel) -> int:
    """Parameters of the Bridger alone (the ETRIS paper's count); 0 when none is attached."""
    bridge = model.backbone.bridge
    return sum(p.numel() for p in bridge.parameters()) if isinstance(bridge, Bridger) else 0
