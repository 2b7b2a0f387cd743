"""LoRA and the peft family: where they act, what they compute, and what they train."""

import copy

import pytest
import torch
from model_helpers import adapted
from torch import nn

from methods import get_method
from methods.attention import UnfusedAttention
from methods.backbone import BackboneConfig
from methods.model import RISModel
from methods.targets import select_linears
from riscore.errors import UserError

ALL_ROLES = "q,k,v,out,c_fc,c_proj"


def targeted_layers(model, towers="both", targets=("q", "v")):
    """(in, out, role) of every Linear the selection picks on an unadapted model."""
    clip = model.backbone.clip
    modules = dict(clip.named_modules())
    return [(modules[n].in_features, modules[n].out_features, role)
            for n, role in select_linears(clip, towers, targets).items()]


def test_selection_picks_roles_per_tower(tiny):
    clip = tiny.backbone.clip
    chosen = select_linears(clip, "text", ["q", "c_proj"])
    assert len(chosen) == 2 * len(tiny.backbone.text_blocks)
    assert all(not n.startswith("visual.") for n in chosen)
    assert {n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1] for n in chosen} == {"attn.q_proj", "mlp.c_proj"}
    image = select_linears(clip, "image", ["out"])
    assert set(image) == {f"visual.transformer.resblocks.{i}.attn.out_proj" for i in range(6)}


@pytest.mark.parametrize("overrides, message", [
    ({"towers": "vision"}, "towers must be one of"),
    ({"targets": "q,qkv"}, r"targets \['qkv'\] unknown"),
    ({"rank": "0"}, "rank must be >= 1"),
    ({"dropout": "1.5"}, "dropout must be in"),
])
def test_bad_options_are_named(overrides, message):
    with pytest.raises(UserError, match=message):
        get_method("lora").make_config(overrides)


def test_ia3_feedforward_must_be_targeted():
    with pytest.raises(UserError, match=r"feedforward \['c_fc'\] must also be in targets"):
        get_method("ia3").make_config({"feedforward": "c_fc"})


def _lora_pair(layer: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    return layer.base_layer, layer.lora_A["risbench"], layer.lora_B["risbench"]


def test_lora_adds_the_scaled_product_exactly_once(tiny):
    rank, alpha = 4, 6.0
    model = adapted(tiny, "lora", rank=rank, alpha=alpha, targets=ALL_ROLES)
    attn = model.backbone.text_blocks[0].attn
    torch.manual_seed(3)
    merged = UnfusedAttention(attn.embed_dim, attn.num_heads, batch_first=attn.batch_first)
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        base, lora_a, lora_b = _lora_pair(getattr(attn, name))
        with torch.no_grad():
            lora_a.weight.normal_()
            lora_b.weight.normal_()
            getattr(merged, name).weight.copy_(base.weight + alpha / rank * lora_b.weight @ lora_a.weight)
            getattr(merged, name).bias.copy_(base.bias)
    x = torch.randn(2, 5, attn.embed_dim)
    layer = attn.q_proj
    by_hand = x @ merged.q_proj.weight.T + merged.q_proj.bias
    torch.testing.assert_close(layer(x), by_hand, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(layer(x), layer.base_layer(x), atol=1e-3)
    # the whole attention (out_proj included) sees each update once, not W + 2dW
    torch.testing.assert_close(attn(x, x, x)[0], merged(x, x, x)[0], rtol=1e-4, atol=1e-4)


def test_lora_trains_r_times_in_plus_out_per_target_on_vit_b16(vit_b16_ris):
    rank = 8
    counts = adapted(vit_b16_ris, "lora", rank=rank).parameter_counts()
    layers = targeted_layers(vit_b16_ris)
    assert len(layers) == 2 * 12 + 2 * 12
    expected = sum(rank * (i + o) for i, o, _ in layers)
    assert expected == 12 * 2 * rank * (768 + 768) + 12 * 2 * rank * (512 + 512)
    assert counts.added == expected
    assert counts.trainable == expected + counts.decoder


@pytest.mark.parametrize("name, per_layer", [
    ("dora", lambda i, o, role: 8 * (i + o) + o),  # plus one magnitude per output row
    ("loha", lambda i, o, role: 2 * 8 * (i + o)),  # two rank-8 pairs
    ("ia3", lambda i, o, role: i if role == "c_proj" else o),  # c_proj is feed-forward: scales its input
])
def test_peft_family_trains_the_analytic_count(tiny, name, per_layer):
    spec = get_method(name)
    config = spec.make_config({"rank": "8"} if name != "ia3" else {})
    layers = targeted_layers(tiny, config.towers, config.targets)
    counts = adapted(tiny, name, **({"rank": 8} if name != "ia3" else {})).parameter_counts()
    assert counts.added == counts.trainable - counts.decoder == sum(per_layer(*layer) for layer in layers)


def test_peft_keeps_other_trainable_parameters(tiny):
    model = copy.deepcopy(tiny)
    model.backbone.clip.positional_embedding.requires_grad_(True)  # e.g. set by a method applied earlier
    spec = get_method("lora")
    spec.apply(model, spec.make_config())
    assert model.backbone.clip.positional_embedding.requires_grad
    assert not model.backbone.clip.token_embedding.weight.requires_grad


def test_text_only_lora_leaves_the_image_tower_alone(tiny):
    model = adapted(tiny, "lora", towers="text", targets=ALL_ROLES)
    names = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert names and all(".visual." not in n and "lora_" in n for n in names)
    assert len(names) == 2 * 6 * len(tiny.backbone.text_blocks)


def test_oft_block_size_must_divide_the_layers(tiny):
    with pytest.raises(UserError, match=r"block_size 7 does not divide the targeted widths \[96, 128\]"):
        adapted(tiny, "oft", block_size=7)


def test_resnet_image_tower_offers_its_attention_pool():
    clip = RISModel.build(BackboneConfig(arch="RN50", image_size=64, text_len=8), "tiny").backbone.clip
    roles = select_linears(clip, "image", ["q", "k", "v", "out"])
    assert roles == {"visual.attnpool.q_proj": "q", "visual.attnpool.k_proj": "k",
                     "visual.attnpool.v_proj": "v", "visual.attnpool.c_proj": "out"}
    with pytest.raises(UserError, match="no Linear layer matches towers=image targets=c_fc"):
        select_linears(clip, "image", ["c_fc"])
