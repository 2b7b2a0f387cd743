"""FLOP counting that a reviewer can trust: fvcore plus the handles it lacks, split by model part.

fvcore traces with torch.jit and counts one multiply-add as one "flop". It has no handle for
aten::scaled_dot_product_attention, so every attention product is silently dropped, and in eval mode
under no_grad nn.MultiheadAttention takes a fused fast path that no counter sees. Here SDPA gets a
handle, the fast path is switched off while tracing, and every op without a handle is returned in the
report instead of being hidden. Numbers are FLOPs = 2 x multiply-adds of matrix products, the
convention of open_clip's published profile table, so they compare with it directly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

# fvcore calls torch.jit.script at import, which new torch flags as deprecated on every CLI start.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import (
        addmm_flop_jit,
        bmm_flop_jit,
        conv_flop_jit,
        einsum_flop_jit,
        get_shape,
        linear_flop_jit,
        matmul_flop_jit,
    )
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import (
    FlopCounterMode,
    conv_backward_flop,
)

aten = torch.ops.aten

CONVENTION = (
    "FLOPs = 2 x multiply-adds of matrix products (linear, matmul, convolution, attention) as in open_clip's "
    "profile table and torch.utils.flop_counter; norms, pooling, resampling and elementwise ops not counted; "
    "training counts attention as its math (4 products backward, no recomputation), whichever kernel runs"
)

# open_clip's published profile at 224 px and 77 tokens: (image GFLOPs, text GFLOPs), 2 x multiply-adds.
OPEN_CLIP_PROFILE: dict[str, tuple[float, float]] = {
    "RN50": (12.22, 5.96),
    "RN101": (19.54, 5.96),
    "ViT-B-32": (8.82, 5.96),
    "ViT-B-16": (35.13, 5.96),
    "ViT-L-14": (162.03, 13.3),
}


def _sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """q @ k^T and attn @ v at full length (a causal mask is not discounted, as torch's counter)."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def _baddbmm_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """F.multi_head_attention_forward's score product when attention weights are requested."""
    return bmm_flop_jit(inputs[1:3], outputs)


# Matrix products only: what open_clip's table and torch.utils.flop_counter count. fvcore's default norm,
# pooling and resampling estimates are left out so the three agree; those ops show in uncounted_ops.
HANDLES: dict[str, Callable[[list[Any], list[Any]], Any]] = {
    "aten::addmm": addmm_flop_jit,
    "aten::baddbmm": _baddbmm_macs,
    "aten::bmm": bmm_flop_jit,
    "aten::_convolution": conv_flop_jit,
    "aten::einsum": einsum_flop_jit,
    "aten::linear": linear_flop_jit,
    "aten::matmul": matmul_flop_jit,
    "aten::mm": matmul_flop_jit,
    "aten::scaled_dot_product_attention": _sdpa_macs,
}


@dataclass(frozen=True)
class FlopReport:
    """One forward pass, in FLOPs (2 x multiply-adds); by_module includes each module's descendants."""

    total: int
    by_module: dict[str, int]
    by_operator: dict[str, int]
    uncounted_ops: dict[str, int]  # op -> calls with no FLOP handle (norms, pooling, elementwise)
    convention: str = CONVENTION

    def module(self, name: str) -> int:
        return self.by_module.get(name, 0)


@contextmanager
def _counting_mode(module: nn.Module) -> Iterator[None]:
    """No MHA fast path, no autograd, and BatchNorm running statistics restored after the trace."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    buffers = [(b, b.detach().clone()) for b in module.buffers()]
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad():
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


def count_flops(module: nn.Module, inputs: Tensor | tuple[Any, ...]) -> FlopReport:
    """fvcore's count of `module(*inputs)` in the module's current train/eval mode, which it leaves intact."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    with _counting_mode(module):
        analysis = (
            FlopCountAnalysis(module, inputs)
            .clear_op_handles()
            .set_op_handle(**HANDLES)
            .tracer_warnings("none")
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
        )
        by_module = {name: 2 * int(n) for name, n in analysis.by_module().items()}
        return FlopReport(
            total=by_module[""],
            by_module=by_module,
            by_operator={op: 2 * int(n) for op, n in analysis.by_operator().items()},
            uncounted_ops=dict(sorted(analysis.unsupported_ops().items())),
        )


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's formula, with a grouped convolution's weight gradient counted once rather than `groups`
    times (the decoder's per-sample dynamic convolution is grouped by the batch)."""
    *middle, groups, mask = args
    def part(keep: int) -> int:
        only = [i == keep and bool(m) for i, m in enumerate(mask)]
        return conv_backward_flop(grad_out_shape, x_shape, w_shape, *middle, groups, only, out_val=out_shape)
    return part(0) + part(1) // groups


# added to torch's counter: the grouped-convolution fix (its own formulas are kept for every other op)
COUNTER_FORMULAS: dict[Any, Callable[..., int]] = {aten.convolution_backward: _conv_backward_flop}


def torch_flops(fn: Callable[[], Any]) -> int:
    """torch.utils.flop_counter's total for everything `fn` runs, a backward pass included (2 x MACs).

    Attention runs its math path while counting. torch counts a fused kernel's backward as five products (it
    recomputes the scores) against the math path's four, and which attention runs fused depends on device,
    dtype and shapes (the decoder's ran the math path on CPU and a fused kernel on an H200, so the same model
    counted more there). The math path gives one count everywhere: the model's rather than a kernel's."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False, custom_mapping=COUNTER_FORMULAS) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops()


class _Encoder(nn.Module):
    """Exposes one encode_* method of a CLIP model as forward, keeping the CLIP's module names."""

    def __init__(self, clip: nn.Module, method: str) -> None:
        super().__init__()
        self.clip = clip
        self.method = method

    def forward(self, x: Tensor) -> Tensor:
        return getattr(self.clip, self.method)(x)


def clip_tower_flops(clip: nn.Module, image_size: int, text_len: int) -> tuple[FlopReport, FlopReport]:
    """Image (encode_image, pool and projection included) and text (encode_text) FLOPs for one sample,
    counted as open_clip's profile table counts them."""
    images = torch.zeros(1, 3, image_size, image_size)
    tokens = torch.zeros(1, text_len, dtype=torch.long)
    tokens[0, 0], tokens[0, 1] = 1, 2  # argmax picks the end token as in real text
    image = count_flops(_Encoder(clip, "encode_image"), images)
    return image, count_flops(_Encoder(clip, "encode_text"), tokens)


@dataclass(frozen=True)
class PartModules:
    """Module names that make up each part of a model."""

    image_tower: Sequence[str]
    text_tower: Sequence[str]
    decoder: Sequence[str]


def split_parts(report: FlopReport, parts: PartModules) -> dict[str, int]:
    """FLOPs per part, disjoint and summing to the total.

    `other` is what ran outside every listed module's call: the backbone's glue code (the ViT output
    projection, the ResNet's spatial attention-pool product, the text projection).
    """
    out = {name: sum(report.module(m) for m in getattr(parts, name))
           for name in ("image_tower", "text_tower", "decoder")}
    out["other"] = report.total - sum(out.values())
    out["total"] = report.total
    return out
