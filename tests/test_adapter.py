"""Houlsby and AdaptFormer bottleneck adapters: what they compute, where, and how many parameters."""


import pytest
import torch
from model_helpers import adapted

from methods import get_method
from methods.adapter import ParallelAdapter, SerialAdapter
from methods.backbone import BackboneConfig
from methods.model import RISModel
from riscore.errors import UserError


def bottleneck_params(width: int, hidden: int) -> int:
    return 2 * width * hidden + hidden + width  # down (W, b) + up (W, b)


def test_serial_adapter_adds_its_output_after_attention_and_mlp(tiny):
    model = adapted(tiny, "adapter", bottleneck=4, zero_init_up=False)
    block = model.backbone.text_blocks[1]
    assert isinstance(block.attn, SerialAdapter) and isinstance(block.mlp, SerialAdapter)
    x = torch.randn(2, 5, 96)
    y = block.attn.inner(x, x, x, need_weights=False)[0]
    out = block.attn(x, x, x, need_weights=False)[0]
    ad = block.attn.adapter
    by_hand = y + ad.up(torch.nn.functional.gelu(ad.down(y)))
    torch.testing.assert_close(out, by_hand)
    assert not torch.allclose(out, y, atol=1e-4)
    z = block.mlp.inner(x)
    torch.testing.assert_close(block.mlp(x), z + block.mlp.adapter(z))


def test_adaptformer_is_a_scaled_parallel_branch_on_the_mlp(tiny):
    model = adapted(tiny, "adaptformer", bottleneck=4, scale=0.5, zero_init_up=False)
    block = model.backbone.image_stages[0]
    assert isinstance(block.mlp, ParallelAdapter) and not isinstance(block.attn, SerialAdapter)
    x = torch.randn(2, 5, 128)
    ad = block.mlp.adapter
    by_hand = block.mlp.inner(x) + 0.5 * ad.up(torch.relu(ad.down(x)))
    torch.testing.assert_close(block.mlp(x), by_hand)


def test_identity_only_with_zero_up_projection(tiny):
    images, tokens = torch.rand(2, 3, 64, 64), tiny.backbone.tokenize(["a red circle", "the left square"])
    base = tiny.predict(images, tokens)
    torch.testing.assert_close(adapted(tiny, "adapter").predict(images, tokens), base)
    moved = adapted(tiny, "adapter", zero_init_up=False).predict(images, tokens)
    assert not torch.allclose(moved, base, atol=1e-4)


def test_houlsby_count_is_analytic_on_vit_b16(vit_b16_ris):
    hidden = 64
    counts = adapted(vit_b16_ris, "adapter", bottleneck=hidden).parameter_counts()
    expected = 12 * 2 * bottleneck_params(768, hidden) + 12 * 2 * bottleneck_params(512, hidden)
    assert counts.added == expected
    assert counts.trainable == expected + counts.decoder


def test_adaptformer_count_is_analytic_on_vit_b16(vit_b16_ris):
    hidden = 16
    counts = adapted(vit_b16_ris, "adaptformer", bottleneck=hidden, towers="image").parameter_counts()
    assert counts.added == counts.trainable - counts.decoder == 12 * bottleneck_params(768, hidden)


def test_placement_selects_sublayers(tiny):
    model = adapted(tiny, "adapter", placement="mlp", towers="text")
    assert all(isinstance(b.mlp, SerialAdapter) and not isinstance(b.attn, SerialAdapter)
               for b in model.backbone.text_blocks)
    assert not any(isinstance(b.mlp, SerialAdapter) for b in model.backbone.image_stages)


@pytest.mark.parametrize("name, overrides, message", [
    ("adapter", {"placement": "attn,ffn"}, "placement must be a non-empty subset of attn,mlp"),
    ("adapter", {"bottleneck": "0"}, "bottleneck must be >= 1"),
    ("adaptformer", {"scale": "0"}, "scale must be positive"),
    ("adaptformer", {"activation": "tanh"}, "activation must be one of gelu, relu"),
])
def test_bad_options_are_named(name, overrides, message):
    with pytest.raises(UserError, match=message):
        get_method(name).make_config(overrides)


def test_resnet_image_tower_has_no_blocks_to_adapt():
    model = RISModel.build(BackboneConfig(arch="RN50", image_size=64, text_len=8), "tiny")
    with pytest.raises(UserError, match="ResNet image tower is adapted through its text tower only"):
        adapted(model, "adapter", towers="image")
    counts = adapted(model, "adaptformer", bottleneck=8).parameter_counts()
    assert counts.added == 12 * bottleneck_params(512, 8)  # text tower only
