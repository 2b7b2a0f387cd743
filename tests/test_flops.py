"""FLOP counting: attention is never dropped, open_clip's published table is reproduced, fvcore with the
added handles agrees with torch's counter, and whatever is not counted is reported."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.flops import OPEN_CLIP_PROFILE, clip_tower_flops, count_flops, torch_flops
from methods.attention import UnfusedAttention
from methods.backbone import Backbone, BackboneConfig
from methods.model import RISModel

logging.getLogger().setLevel(logging.ERROR)  # open_clip's "no pretrained weights" notice


def attention_flops(batch: int, tokens: int, width: int) -> int:
    """q, k, v and out projections plus q.k^T and attn.v, 2 FLOPs per multiply-add."""
    projections = 4 * batch * tokens * width * width
    products = 2 * batch * tokens * tokens * width
    return 2 * (projections + products)


def test_sdpa_is_counted():
    attn = UnfusedAttention(32, 4, batch_first=True)
    x = torch.randn(2, 10, 32)
    report = count_flops(attn, (x, x, x))
    assert report.total == attention_flops(2, 10, 32)
    assert report.by_operator["scaled_dot_product_attention"] == 2 * 2 * 10 * 10 * 32 * 2


@pytest.mark.parametrize("causal", [False, True])
def test_torch_counter_counts_attention_once(causal):
    """The counter sees attention exactly once, forward and backward, as its math: the same count on every
    device and torch in the allowed range (which attention runs fused differs by device, and torch's counter has
    no formula for the CPU's fused kernel in 2.4 or 2.14)."""
    q, k, v = (torch.randn(2, 4, 10, 8, requires_grad=True) for _ in range(3))
    products = 2 * 2 * 4 * 10 * 10 * 8 * 2  # q.k^T and attn.v, 2 FLOPs per multiply-add
    assert torch_flops(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)) == products
    backward = torch_flops(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal).sum().backward())
    assert backward == 3 * products  # the forward's two products and the backward's four, no recomputation


def test_mha_fast_path_cannot_hide_attention():
    """Frozen nn.MultiheadAttention in eval mode would take the fused fast path that no counter sees."""
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval().requires_grad_(False)
    x = torch.randn(2, 10, 32)
    assert count_flops(mha, (x, x, x)).total == attention_flops(2, 10, 32)
    assert torch.backends.mha.get_fastpath_enabled()  # restored afterwards


def test_uncounted_ops_are_reported():
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.GELU())
    report = count_flops(model, torch.randn(3, 8))
    assert report.total == 2 * 3 * 8 * 8
    assert report.uncounted_ops == {"aten::gelu": 1, "aten::layer_norm": 1}


def test_counting_leaves_batchnorm_statistics_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    before = model[1].running_mean.clone()
    count_flops(model, torch.randn(2, 3, 8, 8) + 5)
    assert torch.equal(model[1].running_mean, before)
    assert model.training


def test_grouped_conv_backward_is_counted_once_per_group():
    """torch's own formula counts a grouped convolution's weight gradient `groups` times over."""
    x = torch.randn(1, 6, 8, 8)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    total = torch_flops(lambda: F.conv2d(x, w, padding=1, groups=3).sum().backward())
    per_pass = 2 * 3 * 2 * 9 * 64  # out channels x in channels per group x kernel x positions
    assert total == 2 * per_pass  # forward + weight gradient (x needs no gradient)


@pytest.fixture(scope="module")
def vit_b16() -> RISModel:
    return RISModel.build(BackboneConfig(arch="ViT-B-16", image_size=224, text_len=77), "tiny")


@pytest.fixture(scope="module")
def rn50() -> nn.Module:
    return Backbone(BackboneConfig(arch="RN50", image_size=224, text_len=77)).clip


@pytest.mark.parametrize("arch", ["ViT-B-16", "RN50"])
def test_open_clip_published_profile(arch, request):
    """Within 2% of open_clip's table (random weights, 224 px, 77 tokens, 2 x multiply-adds)."""
    if arch == "ViT-B-16":
        clip = request.getfixturevalue("vit_b16").backbone.clip
    else:
        clip = request.getfixturevalue("rn50")
    image, text = clip_tower_flops(clip, 224, 77)
    published_image, published_text = OPEN_CLIP_PROFILE[arch]
    assert image.total / 1e9 == pytest.approx(published_image, rel=0.02)
    assert text.total / 1e9 == pytest.approx(published_text, rel=0.02)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fvcore_agrees_with_torch_counter(vit_b16, mode):
    model = vit_b16.train(mode == "train")
    images = torch.rand(1, 3, 224, 224)
    tokens = model.backbone.tokenize(["a dog on the left"])
    fvcore_total = count_flops(model, (images, tokens)).total
    with torch.no_grad():
        torch_total = torch_flops(lambda: model(images, tokens))
    assert fvcore_total == pytest.approx(torch_total, rel=0.02)
    assert fvcore_total / 1e9 > 35.13 + 5.96  # both towers, attention included, plus the decoder
