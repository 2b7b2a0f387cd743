"""Conv-Adapter: what it computes beside a ResNet 3x3 conv and a ViT MLP, and its parameter count."""

import pytest
import torch
from model_helpers import adapted

from methods import get_method
from methods.backbone import BackboneConfig
from methods.convadapter import ParallelConv, ParallelGrid
from methods.model import RISModel
from riscore.errors import UserError


@pytest.fixture(scope="module")
def rn50():
    torch.manual_seed(0)
    return RISModel.build(BackboneConfig(arch="RN50", image_size=64, text_len=8), "tiny")


def expected_count(planes: list[int], reduction: int, kernel: int) -> int:
    """Per block: depth-wise (C k^2), point-wise (C/r x C), scale (C)."""
    return sum(c * kernel**2 + (c // reduction) * c + c for c in planes)


def test_count_is_analytic_on_rn50(rn50):
    # ModifiedResNet RN50: 3, 4, 6, 3 bottleneck blocks of widths 64, 128, 256, 512 (the 3x3 conv's)
    planes = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
    for reduction in (2, 4):
        counts = adapted(rn50, "convadapter", reduction=reduction).parameter_counts()
        assert counts.added == counts.trainable - counts.decoder == expected_count(planes, reduction, 3)


def test_resnet_adapter_adds_a_depthwise_bottleneck_beside_the_3x3_conv(rn50):
    model = adapted(rn50, "convadapter", zero_init_up=False, reduction=4)
    block = model.backbone.image_stages[1][0]
    assert isinstance(block.conv2, ParallelConv)
    assert not any(isinstance(m, ParallelConv) for m in model.backbone.text_blocks.modules())
    x = torch.randn(2, 128, 8, 8)
    ad = block.conv2.adapter
    assert ad.down.groups == 32 and ad.down.out_channels == 32 and ad.up.out_channels == 128
    by_hand = block.conv2.inner(x) + ad.up(torch.relu(ad.down(x))) * ad.scale.view(1, -1, 1, 1)
    torch.testing.assert_close(block.conv2(x), by_hand)
    assert not torch.allclose(block.conv2(x), block.conv2.inner(x), atol=1e-4)


def test_vit_adapter_moves_the_patch_tokens_only(tiny):
    model = adapted(tiny, "convadapter", zero_init_up=False)
    block = model.backbone.image_stages[0]
    assert isinstance(block.mlp, ParallelGrid)
    grid = model.backbone.grid
    x = torch.randn(2, 3 + grid**2, 128)  # class token and two prompt-like tokens before the patches
    delta = block.mlp(x) - block.mlp.inner(x)
    assert torch.equal(delta[:, :3], torch.zeros_like(delta[:, :3]))
    patches = x[:, 3:].transpose(1, 2).reshape(2, 128, grid, grid)
    torch.testing.assert_close(delta[:, 3:], block.mlp.adapter(patches).flatten(2).transpose(1, 2))


@pytest.mark.parametrize("overrides, message", [
    ({"kernel": "2"}, "kernel must be a positive odd number"),
    ({"reduction": "0"}, "reduction must be >= 1"),
])
def test_bad_options_are_named(overrides, message):
    with pytest.raises(UserError, match=message):
        get_method("convadapter").make_config(overrides)


def test_a_reduction_that_does_not_divide_the_width_is_refused(tiny):
    with pytest.raises(UserError, match="reduction 3 does not divide the width 128"):
        adapted(tiny, "convadapter", reduction=3)
