"""Multi-head attention with explicit q/k/v/out Linear layers, a drop-in for nn.MultiheadAttention.

Why: nn.MultiheadAttention keeps q/k/v in one fused `in_proj_weight` and calls `out_proj` through
F.multi_head_attention_forward rather than its forward. So peft LoRA wrapping the whole module applies
the out_proj delta twice (W + 2dW), targeting `attn.out_proj` trains nothing (its forward never runs),
and fvcore / peft cannot see q, k, v as separate layers. Four plain nn.Linear layers computed with
F.scaled_dot_product_attention fix all three and give the same numbers as the fused module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _as_float_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=dtype).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


class UnfusedAttention(nn.Module):
    """Same call signature and output tuple as nn.MultiheadAttention (attention weights never returned)."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        *,
        kdim: int | None = None,
        vdim: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(kdim or embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(vdim or embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> UnfusedAttention:
        """Copy a fused module's weights (same device and dtype); bias_k/bias_v variants are refused."""
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("nn.MultiheadAttention with add_bias_kv or add_zero_attn cannot be unfused")
        has_bias = mha.in_proj_bias is not None
        new = cls(
            mha.embed_dim,
            mha.num_heads,
            kdim=mha.kdim,
            vdim=mha.vdim,
            bias=has_bias,
            dropout=mha.dropout,
            batch_first=mha.batch_first,
        )
        ref = mha.out_proj.weight
        new.to(device=ref.device, dtype=ref.dtype)
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.detach().chunk(3, dim=0)
        else:
            weights = (mha.q_proj_weight.detach(), mha.k_proj_weight.detach(), mha.v_proj_weight.detach())
        biases = mha.in_proj_bias.detach().chunk(3, dim=0) if has_bias else (None, None, None)
        with torch.no_grad():
            for lin, w, b in zip((new.q_proj, new.k_proj, new.v_proj), weights, biases, strict=True):
                lin.weight.copy_(w)
                if b is not None:
                    lin.bias.copy_(b)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if has_bias:
                new.out_proj.bias.copy_(mha.out_proj.bias)
        new.train(mha.training)
        return new

    def _split_heads(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def _additive_mask(
        self, attn_mask: Tensor | None, key_padding_mask: Tensor | None, like: Tensor
    ) -> Tensor | None:
        """One float mask broadcastable to [B, H, Lq, Lk]; bool masks use MHA's True = 'do not attend'."""
        mask = None
        if attn_mask is not None:
            mask = _as_float_mask(attn_mask, like.dtype)
            if mask.dim() == 3:  # [B*H, Lq, Lk] as MHA accepts
                mask = mask.view(-1, self.num_heads, *mask.shape[-2:])
        if key_padding_mask is not None:
            kpm = _as_float_mask(key_padding_mask, like.dtype)[:, None, None, :]
            mask = kpm if mask is None else mask + kpm
        return mask

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = False,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, None]:
        if need_weights:
            raise ValueError("UnfusedAttention returns no attention weights; call it with need_weights=False")
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        q = self._split_heads(self.q_proj(query))
        k = self._split_heads(self.k_proj(key))
        v = self._split_heads(self.v_proj(value))
        mask = self._additive_mask(attn_mask, key_padding_mask, q)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal and mask is None,
        )
        out = self.out_proj(out.transpose(1, 2).reshape(q.shape[0], q.shape[2], self.embed_dim))
        if unbatched:
            out = out.squeeze(1)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


def unfuse_attention(module: nn.Module) -> int:
    """Replace every nn.MultiheadAttention inside `module` (in place); returns how many were replaced."""
    targets = [
        (parent, name, child)
        for parent in module.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.MultiheadAttention)
    ]
    for parent, name, child in targets:
        setattr(parent, name, UnfusedAttention.from_mha(child))
    return len(targets)
