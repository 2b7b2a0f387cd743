"""The ETRIS-style lightweight decoder and loss shared by every method.

Every PET method feeds this same module, so leaderboard rows differ only in how the encoders are
adapted. Structure (ETRIS, ICCV 2023): hierarchical alignment of three visual taps gated by the
sentence, global alignment (pre-norm self-attention over the map, cross-attention to the words, FFN),
and a projector whose 3x3 output kernel is generated per sample from the sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from methods.attention import UnfusedAttention
from riscore.choices import GATES
from riscore.errors import UserError

Scale = Literal["paper", "tiny"]

# ETRIS's released configs (bridge_v16 / bridge_r50): vis_dim 512, 3 layers, 8 heads, dim_ffn 512.
# "tiny" keeps the same structure at 1/8 of the width so a CPU step on the offline backbone stays cheap.
# ETRIS's Table 6 removes these; a suite turns them off with decoder_options (a suite-level ablation)
COMPONENTS = ("hierarchical_alignment", "global_alignment")

_SIZES: dict[str, dict[str, int | float]] = {
    "paper": {"vis_dim": 512, "num_layers": 3, "num_heads": 8, "dim_ffn": 512, "dropout": 0.1},
    "tiny": {"vis_dim": 64, "num_layers": 2, "num_heads": 4, "dim_ffn": 128, "dropout": 0.1},
}


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"DecoderConfig.{name} must be a positive integer, got {value}")


@dataclass(frozen=True)
class DecoderConfig:
    """Sizes of the decoder; `tap_strides` are the pixel strides of the three visual taps.

    The middle tap sets the working resolution: the finer tap is brought down to it with a strided conv,
    the coarser one up with a transposed conv, and the logits come out at 4x that resolution.
    """

    in_channels: tuple[int, int, int]
    word_dim: int
    state_dim: int
    tap_strides: tuple[int, int, int] = (16, 16, 16)
    vis_dim: int = 512
    num_layers: int = 3
    num_heads: int = 8
    dim_ffn: int = 512
    dropout: float = 0.1
    gate: str = "linear"  # how the sentence gates each level, see HierarchicalAlignment
    hierarchical_alignment: bool = True  # False: the last tap alone, projected, ungated (Table 6)
    global_alignment: bool = True  # False: the projector reads the aligned map directly (Table 6)

    def __post_init__(self) -> None:
        for name in ("in_channels", "tap_strides"):
            value = getattr(self, name)
            if len(value) != 3:
                raise ValueError(f"DecoderConfig.{name} needs exactly 3 entries (one per tap), got {value}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
            for v in getattr(self, name):
                _positive(name, v)
        for name in ("word_dim", "state_dim", "vis_dim", "num_layers", "num_heads", "dim_ffn"):
            _positive(name, getattr(self, name))
        fine, mid, coarse = self.tap_strides
        if mid % fine or coarse % mid:
            raise ValueError(
                f"DecoderConfig.tap_strides {self.tap_strides} must be non-decreasing multiples of each "
                "other (e.g. (16, 16, 16) for ViT, (8, 16, 32) for ResNet)"
            )
        if self.vis_dim % 4:
            raise ValueError(
                f"DecoderConfig.vis_dim must be a multiple of 4 (2D sine positions), got {self.vis_dim}"
            )
        if self.vis_dim % self.num_heads:
            raise ValueError(
                f"DecoderConfig.vis_dim {self.vis_dim} must be divisible by num_heads {self.num_heads}"
            )
        if self.word_dim % 2:
            raise ValueError(f"DecoderConfig.word_dim must be even (1D sine positions), got {self.word_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DecoderConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.gate not in GATES:
            raise ValueError(f"DecoderConfig.gate must be one of {', '.join(GATES)}, got {self.gate!r}")

    @classmethod
    def for_backbone(
        cls,
        tap_widths: tuple[int, int, int] | list[int],
        text_width: int,
        embed_dim: int,
        scale: Scale = "paper",
        tap_strides: tuple[int, int, int] = (16, 16, 16),
        gate: str = "linear",
        components: dict[str, bool] | None = None,
    ) -> DecoderConfig:
        """ETRIS's sizes ("paper") or the reduced ones for the offline backbone ("tiny"); `components` turns
        parts of COMPONENTS off."""
        if scale not in _SIZES:
            raise UserError(f"unknown decoder scale '{scale}'; choose one of {', '.join(_SIZES)}")
        check_components(components or {})
        return cls(
            in_channels=tuple(tap_widths),
            word_dim=text_width,
            state_dim=embed_dim,
            tap_strides=tuple(tap_strides),
            gate=gate,
            **_SIZES[scale],
            **(components or {}),
        )


def check_components(components: dict[str, object]) -> None:
    """UserError unless every key is a decoder component and every value a bool."""
    for key, value in components.items():
        if key not in COMPONENTS:
            raise UserError(f"unknown decoder component '{key}'; choose from {', '.join(COMPONENTS)}")
        if not isinstance(value, bool):
            raise UserError(f"decoder component {key}={value!r}: expected true or false")


def conv_bn_relu(in_dim: int, out_dim: int, kernel: int = 1, stride: int = 1, padding: int = 0) -> nn.Module:
    conv = nn.Conv2d(in_dim, out_dim, kernel, stride, padding, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_dim), nn.ReLU(True))


def _resample_to_middle(in_dim: int, out_dim: int, factor: int, upsample: bool) -> nn.Module:
    """Project a tap to `out_dim` and move it by `factor` (a non-overlapping kernel, as ETRIS)."""
    if not upsample or factor == 1:
        return conv_bn_relu(in_dim, out_dim, factor, factor)
    deconv = nn.ConvTranspose2d(in_dim, out_dim, factor, factor, bias=False)
    return nn.Sequential(deconv, nn.BatchNorm2d(out_dim), nn.ReLU(True))


def sine_positions_1d(dim: int, length: int, *, device=None, dtype=None) -> Tensor:
    """[length, dim] transformer sine/cosine table (sin on even channels, cos on odd)."""
    freqs = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10000.0) / dim))
    angles = torch.arange(length, device=device)[:, None] * freqs[None, :]
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1).to(dtype)


def sine_positions_2d(dim: int, height: int, width: int, *, device=None, dtype=None) -> Tensor:
    """[height * width, dim]: the first half of the channels encodes the column, the second the row."""
    half = dim // 2
    cols = sine_positions_1d(half, width, device=device, dtype=dtype)  # [W, half]
    rows = sine_positions_1d(half, height, device=device, dtype=dtype)  # [H, half]
    grid = torch.cat((cols[None].expand(height, -1, -1), rows[:, None].expand(-1, width, -1)), dim=-1)
    return grid.reshape(height * width, dim)


class CoordConv(nn.Module):
    """A 3x3 conv that also sees normalised x/y coordinates, so absolute position words can be resolved."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_dim + 2, out_dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
        coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=0)  # [2, H, W]: x then y
        return self.conv(torch.cat((x, coords[None].expand(b, -1, -1, -1)), dim=1))


class HierarchicalAlignment(nn.Module):
    """Bring the three taps to the middle tap's grid, gate each by the sentence, fuse, add coordinates.

    ETRIS gates with a cross-attention from every pixel to the single sentence token (after one Linear
    shared by the levels); a softmax over one key is identically 1, so that attention reduces to an affine
    map of the sentence. gate="linear" uses that map directly (one Linear per level): same function class,
    without query/key weights that never matter. gate="attention" is ETRIS's parameterisation: its q/k
    cannot change the output and their gradients vanish up to rounding, but the initialisation, Adam's
    dynamics and the parameter count are ETRIS's.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        fine, mid, coarse = config.tap_strides
        self.down, self.up = mid // fine, coarse // mid
        c0, c1, c2 = config.in_channels
        d = config.vis_dim
        self.projections = nn.ModuleList(
            [
                _resample_to_middle(c0, d, self.down, upsample=False),
                conv_bn_relu(c1, d),
                _resample_to_middle(c2, d, self.up, upsample=True),
            ]
        )
        # gate="linear" keeps the module names earlier saved models have; "attention" has torch's MHA init, as ETRIS
        self.sentence_proj = nn.Linear(config.state_dim, d) if config.gate == "attention" else None
        self.gates = nn.ModuleList([
            nn.Linear(config.state_dim, d) if self.sentence_proj is None
            else UnfusedAttention.from_mha(nn.MultiheadAttention(d, config.num_heads, batch_first=True))
            for _ in range(3)
        ])
        self.aggregate = conv_bn_relu(3 * d, d)
        self.coordconv = nn.Sequential(CoordConv(d, d), conv_bn_relu(d, d, 3, padding=1))

    def forward(self, visual: list[Tensor], sentence: Tensor) -> Tensor:
        h, w = visual[1].shape[-2:]
        expected = [(h * self.down, w * self.down), (h, w), (h // self.up, w // self.up)]
        got = [tuple(v.shape[-2:]) for v in visual]
        if got != expected or h % self.up or w % self.up:
            raise ValueError(f"tap sizes {got} do not fit DecoderConfig.tap_strides; expected {expected}")
        token = None if self.sentence_proj is None else self.sentence_proj(sentence)[:, None]  # [B, 1, d]
        levels = [self._gated(gate, proj(v), sentence, token)
                  for proj, gate, v in zip(self.projections, self.gates, visual, strict=True)]
        return self.coordconv(self.aggregate(torch.cat(levels, dim=1)))

    @staticmethod
    def _gated(gate: nn.Module, level: Tensor, sentence: Tensor, token: Tensor | None) -> Tensor:
        if token is None:
            return level * gate(sentence)[:, :, None, None]
        b, c, h, w = level.shape
        pixels = level.flatten(2).transpose(1, 2)  # [B, HW, d]: every pixel queries the one sentence token
        attended = gate(pixels, token, token)[0]
        return level * attended.transpose(1, 2).reshape(b, c, h, w)


class LastTapOnly(nn.Module):
    """Table 6's "without hierarchical alignment": the last (image-head) tap alone, moved to the middle grid
    and projected, with no other level and no sentence gate."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        _, mid, coarse = config.tap_strides
        self.project = _resample_to_middle(config.in_channels[2], config.vis_dim, coarse // mid, upsample=True)

    def forward(self, visual: list[Tensor], sentence: Tensor) -> Tensor:
        del sentence
        return self.project(visual[2])


class GlobalAlignmentLayer(nn.Module):
    """Pre-norm layer; each attention output is also normalised before the residual add (as ETRIS)."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        d, p = config.vis_dim, config.dropout
        self.self_norm_in, self.self_norm_out = nn.LayerNorm(d), nn.LayerNorm(d)
        self.cross_norm_in, self.cross_norm_out = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn_norm_in = nn.LayerNorm(d)
        self.self_attn = UnfusedAttention(d, config.num_heads, dropout=p, batch_first=True)
        self.cross_attn = UnfusedAttention(
            d, config.num_heads, kdim=config.word_dim, vdim=config.word_dim, dropout=p, batch_first=True
        )
        self.ffn = nn.Sequential(
            nn.Linear(d, config.dim_ffn),
            nn.ReLU(True),
            nn.Dropout(p),
            nn.LayerNorm(config.dim_ffn),
            nn.Linear(config.dim_ffn, d),
        )
        self.drop = nn.Dropout(p)

    def forward(
        self, vis: Tensor, vis_pos: Tensor, words: Tensor, words_pos: Tensor, pad_mask: Tensor
    ) -> Tensor:
        x = self.self_norm_in(vis)
        q = x + vis_pos
        vis = vis + self.drop(self.self_norm_out(self.self_attn(q, q, x)[0]))
        x = self.cross_norm_in(vis)
        attended = self.cross_attn(x + vis_pos, words + words_pos, words, key_padding_mask=pad_mask)[0]
        vis = vis + self.drop(self.cross_norm_out(attended))
        return vis + self.drop(self.ffn(self.ffn_norm_in(vis)))


class GlobalAlignment(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList([GlobalAlignmentLayer(config) for _ in range(config.num_layers)])
        self.norm = nn.LayerNorm(config.vis_dim)

    def forward(self, vis: Tensor, words: Tensor, pad_mask: Tensor) -> Tensor:
        b, c, h, w = vis.shape
        vis_pos = sine_positions_2d(c, h, w, device=vis.device, dtype=vis.dtype)[None]
        length, width = words.shape[1:]
        words_pos = sine_positions_1d(width, length, device=words.device, dtype=words.dtype)[None]
        x = vis.flatten(2).transpose(1, 2)  # [B, HW, C]
        for layer in self.layers:
            x = layer(x, vis_pos, words, words_pos, pad_mask)
        return self.norm(x).transpose(1, 2).reshape(b, c, h, w)


class Projector(nn.Module):
    """Upsample 4x, then one 3x3 conv whose kernel and bias are generated from each sample's sentence."""

    kernel_size = 3

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        d = config.vis_dim
        self.out_dim = d // 2
        self.visual = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear"),
            conv_bn_relu(d, d, 3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear"),
            conv_bn_relu(d, self.out_dim, 3, padding=1),
            nn.Conv2d(self.out_dim, self.out_dim, 1),
        )
        self.kernel = nn.Linear(config.state_dim, self.out_dim * self.kernel_size**2 + 1)

    def forward(self, x: Tensor, sentence: Tensor) -> Tensor:
        x = self.visual(x)
        b, c, h, w = x.shape
        params = self.kernel(sentence)
        weight = params[:, :-1].reshape(b, c, self.kernel_size, self.kernel_size)
        # One group per sample: the batch becomes the channel axis of a single image.
        pad = self.kernel_size // 2
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, params[:, -1], padding=pad, groups=b)
        return out.transpose(0, 1)


class RISDecoder(nn.Module):
    """(visual taps, words, padding mask, sentence) -> mask logits [B, 1, 4h, 4w] on the middle tap's grid."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.hierarchical = HierarchicalAlignment(config) if config.hierarchical_alignment else LastTapOnly(config)
        self.global_alignment = GlobalAlignment(config) if config.global_alignment else None
        self.projector = Projector(config)

    def forward(self, visual: list[Tensor], words: Tensor, pad_mask: Tensor, sentence: Tensor) -> Tensor:
        self._check_inputs(visual, words, pad_mask, sentence)
        fused = self.hierarchical(visual, sentence)
        if self.global_alignment is not None:
            fused = self.global_alignment(fused, words, pad_mask)
        return self.projector(fused, sentence)

    def _check_inputs(self, visual: list[Tensor], words: Tensor, pad_mask: Tensor, sentence: Tensor) -> None:
        cfg = self.config
        if len(visual) != 3 or any(v.dim() != 4 for v in visual):
            raise ValueError("visual must be a list of 3 feature maps [B, C, H, W]")
        channels = tuple(v.shape[1] for v in visual)
        if channels != cfg.in_channels:
            raise ValueError(f"visual tap channels {channels} != DecoderConfig.in_channels {cfg.in_channels}")
        b = visual[0].shape[0]
        if words.dim() != 3 or words.shape[0] != b or words.shape[-1] != cfg.word_dim:
            raise ValueError(f"words must be [{b}, L, {cfg.word_dim}], got {list(words.shape)}")
        if pad_mask.dtype != torch.bool or pad_mask.shape != words.shape[:2]:
            raise ValueError(
                f"pad_mask must be bool {list(words.shape[:2])}, got {pad_mask.dtype} {list(pad_mask.shape)}"
            )
        if sentence.shape != (b, cfg.state_dim):
            raise ValueError(f"sentence must be [{b}, {cfg.state_dim}], got {list(sentence.shape)}")
        if bool(pad_mask.all(dim=1).any()):
            raise ValueError("pad_mask marks every word of an expression as padding; attention is undefined")


def segmentation_loss(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean BCE with logits against the mask resized (nearest) to the logits' grid, as ETRIS trains."""
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be [B, 1, h, w], got {list(logits.shape)}")
    if mask.dim() != 3 or mask.shape[0] != logits.shape[0]:
        raise ValueError(f"mask must be [{logits.shape[0]}, S, S], got {list(mask.shape)}")
    target = F.interpolate(mask[:, None].to(logits.dtype), size=logits.shape[-2:], mode="nearest")
    return F.binary_cross_entropy_with_logits(logits, target)
