"""The shared decoder: shapes per backbone family, masking, sentence conditioning, loss, parameter count."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from methods.decoder import DecoderConfig, RISDecoder, segmentation_loss, sine_positions_2d
from riscore.errors import UserError

SMALL = {"word_dim": 16, "state_dim": 12, "vis_dim": 32, "num_layers": 2, "num_heads": 4, "dim_ffn": 48}


def small_decoder(in_channels=(24, 20, 16), tap_strides=(16, 16, 16), dropout=0.0, gate="linear") -> RISDecoder:
    torch.manual_seed(0)
    config = DecoderConfig(in_channels=in_channels, tap_strides=tap_strides, dropout=dropout, gate=gate, **SMALL)
    return RISDecoder(config).eval()


def inputs(decoder: RISDecoder, sizes, batch=2, length=7, valid=(4, 6)):
    cfg = decoder.config
    gen = torch.Generator().manual_seed(1)
    visual = [torch.randn(batch, c, s, s, generator=gen) for c, s in zip(cfg.in_channels, sizes, strict=True)]
    words = torch.randn(batch, length, cfg.word_dim, generator=gen)
    pad_mask = torch.arange(length)[None, :] >= torch.tensor(valid)[:, None]
    sentence = torch.randn(batch, cfg.state_dim, generator=gen)
    return visual, words, pad_mask, sentence


def test_vit_like_taps_give_logits_at_a_quarter_of_the_input():
    decoder = small_decoder()
    # 128 px input, patch 16: every tap is 8x8 -> logits 32x32 (1/4 of 128).
    logits = decoder(*inputs(decoder, (8, 8, 8)))
    assert logits.shape == (2, 1, 32, 32)
    assert torch.isfinite(logits).all()


def test_resnet_like_taps_are_brought_to_the_stride_16_grid():
    decoder = small_decoder(tap_strides=(8, 16, 32))
    # 128 px input: strides 8/16/32 -> 16x16, 8x8, 4x4 taps; logits 32x32.
    logits = decoder(*inputs(decoder, (16, 8, 4)))
    assert logits.shape == (2, 1, 32, 32)


def test_tap_sizes_that_contradict_the_strides_are_refused():
    decoder = small_decoder(tap_strides=(16, 16, 16))
    with pytest.raises(ValueError, match="tap_strides"):
        decoder(*inputs(decoder, (16, 8, 4)))


def test_padded_words_do_not_affect_the_output_but_real_words_do():
    decoder = small_decoder()
    visual, words, pad_mask, sentence = inputs(decoder, (4, 4, 4))
    reference = decoder(visual, words, pad_mask, sentence)

    scrambled = words.clone()
    scrambled[pad_mask] = 100.0 * torch.randn(int(pad_mask.sum()), words.shape[-1])
    torch.testing.assert_close(decoder(visual, scrambled, pad_mask, sentence), reference)

    changed = words.clone()
    changed[:, 0] += 1.0  # position 0 is a real word in every sample
    assert not torch.allclose(decoder(visual, changed, pad_mask, sentence), reference, atol=1e-4)


def test_the_output_kernel_is_generated_from_the_sentence():
    decoder = small_decoder()
    visual, words, pad_mask, sentence = inputs(decoder, (4, 4, 4))
    features = torch.randn(2, decoder.config.vis_dim, 4, 4)
    other = sentence + 1.0
    # Same visual features into the projector, different sentence: a different dynamic kernel.
    assert not torch.allclose(
        decoder.projector(features, sentence), decoder.projector(features, other), atol=1e-4
    )
    assert not torch.allclose(
        decoder(visual, words, pad_mask, sentence), decoder(visual, words, pad_mask, other), atol=1e-4
    )


def test_each_sample_is_decoded_with_its_own_kernel():
    decoder = small_decoder()
    visual, words, pad_mask, sentence = inputs(decoder, (4, 4, 4))
    batched = decoder(visual, words, pad_mask, sentence)
    for i in range(2):
        alone = decoder(
            [v[i : i + 1] for v in visual], words[i : i + 1], pad_mask[i : i + 1], sentence[i : i + 1]
        )
        torch.testing.assert_close(alone, batched[i : i + 1], atol=1e-5, rtol=1e-5)


def test_every_parameter_receives_a_gradient():
    decoder = small_decoder(tap_strides=(8, 16, 32), dropout=0.1).train()
    logits = decoder(*inputs(decoder, (8, 4, 2)))
    segmentation_loss(logits, (torch.rand(2, 64, 64) > 0.5).float()).backward()
    dead = [name for name, p in decoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_fully_padded_expression_is_refused():
    decoder = small_decoder()
    visual, words, pad_mask, sentence = inputs(decoder, (4, 4, 4), valid=(0, 3))
    with pytest.raises(ValueError, match="pad_mask"):
        decoder(visual, words, pad_mask, sentence)


def test_wrong_word_width_is_refused():
    decoder = small_decoder()
    visual, words, pad_mask, sentence = inputs(decoder, (4, 4, 4))
    with pytest.raises(ValueError, match="words"):
        decoder(visual, words[..., :-2], pad_mask, sentence)


def test_2d_positions_encode_column_then_row():
    pos = sine_positions_2d(8, 3, 5).reshape(3, 5, 8)
    assert torch.equal(pos[0, :, :4], pos[2, :, :4])  # first half: column only
    assert torch.equal(pos[:, 0, 4:], pos[:, 4, 4:])  # second half: row only
    torch.testing.assert_close(pos[0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0] * 2))
    torch.testing.assert_close(pos[2, 1, 4], torch.tensor(math.sin(2.0)))


def test_loss_equals_hand_computed_bce_on_the_nearest_resized_mask():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 0.0]]]])
    # 4x4 mask; nearest to 2x2 samples rows/cols 0 and 2 -> targets [[1, 0], [0, 1]].
    mask = torch.tensor(
        [[[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]]]
    )

    def bce(z: float, y: float) -> float:
        p = 1.0 / (1.0 + math.exp(-z))
        return -(y * math.log(p) + (1.0 - y) * math.log(1.0 - p))

    expected = (bce(2.0, 1.0) + bce(-1.0, 0.0) + bce(0.5, 0.0) + bce(0.0, 1.0)) / 4
    assert segmentation_loss(logits, mask).item() == pytest.approx(expected, rel=1e-6)


def test_loss_refuses_a_mask_for_another_batch():
    with pytest.raises(ValueError, match="mask"):
        segmentation_loss(torch.zeros(2, 1, 4, 4), torch.zeros(3, 16, 16))


def expected_parameters(cfg: DecoderConfig) -> int:
    """Closed-form count of the architecture as described in DESIGN (BatchNorm: weight + bias)."""
    d, s, w, f = cfg.vis_dim, cfg.state_dim, cfg.word_dim, cfg.dim_ffn
    (c0, c1, c2), (s0, s1, s2) = cfg.in_channels, cfg.tap_strides
    down, up = s1 // s0, s2 // s1
    hierarchical = (
        c0 * d * down**2 + c1 * d + c2 * d * up**2 + 3 * 2 * d  # tap projections + BN
        + (3 * (s * d + d) if cfg.gate == "linear" else s * d + d + 3 * 4 * (d * d + d))  # sentence gates
        + 3 * d * d + 2 * d  # aggregation 1x1
        + (d + 2) * d * 9 + 2 * d + d * d * 9 + 2 * d  # CoordConv 3x3 + 3x3
    )  # fmt: skip
    attention = 4 * (d * d + d)
    cross_attention = 2 * (d * d + d) + 2 * (w * d + d)
    ffn = d * f + f + 2 * f + f * d + d
    layer = 5 * 2 * d + attention + cross_attention + ffn
    half = d // 2
    projector = (
        9 * d * d + 2 * d + 9 * d * half + 2 * half + half * half + half + s * (9 * half + 1) + 9 * half + 1
    )
    return hierarchical + cfg.num_layers * layer + 2 * d + projector


@pytest.mark.parametrize(
    ("widths", "text", "embed", "strides", "scale"),
    [
        ((768, 768, 512), 512, 512, (16, 16, 16), "paper"),  # ViT-B/16 at ETRIS's sizes
        ((512, 1024, 1024), 512, 1024, (8, 16, 32), "paper"),  # RN50
        ((128, 128, 128), 96, 128, (8, 8, 8), "tiny"),  # the offline tiny ViT
    ],
)
@pytest.mark.parametrize("gate", ["linear", "attention"])
def test_parameter_count_matches_the_derived_formula(widths, text, embed, strides, scale, gate):
    cfg = DecoderConfig.for_backbone(widths, text, embed, scale=scale, tap_strides=strides, gate=gate)
    decoder = RISDecoder(cfg)
    total = sum(p.numel() for p in decoder.parameters())
    assert total == expected_parameters(cfg)
    assert total == sum(sum(p.numel() for p in part.parameters()) for part in decoder.children())


def test_paper_scale_matches_etris_sizes():
    cfg = DecoderConfig.for_backbone((768, 768, 512), 512, 512, scale="paper")
    assert (cfg.vis_dim, cfg.num_layers, cfg.num_heads, cfg.dim_ffn, cfg.dropout) == (512, 3, 8, 512, 0.1)
    tiny = DecoderConfig.for_backbone((768, 768, 512), 512, 512, scale="tiny")
    assert tiny.vis_dim < cfg.vis_dim and tiny.num_layers < cfg.num_layers


def test_unknown_scale_is_a_user_error():
    with pytest.raises(UserError, match="tiny"):
        DecoderConfig.for_backbone((8, 8, 8), 8, 8, scale="huge")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"in_channels": (8, 8)}, "in_channels"),
        ({"vis_dim": 30}, "vis_dim"),
        ({"num_heads": 5}, "num_heads"),
        ({"word_dim": 15}, "word_dim"),
        ({"tap_strides": (16, 8, 32)}, "tap_strides"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_layers": 0}, "num_layers"),
        ({"gate": "mlp"}, "gate"),
    ],
)
def test_invalid_config_names_the_field(change, field):
    args = {"in_channels": (8, 8, 8), **SMALL, **change}
    with pytest.raises(ValueError, match=field):
        DecoderConfig(**args)


def test_attention_layers_are_unfused():
    # FLOP counters and peft see explicit q/k/v/out Linears; nn.MultiheadAttention hides them.
    decoder = small_decoder()
    assert not any(isinstance(m, nn.MultiheadAttention) for m in decoder.modules())


def test_attention_gate_is_the_affine_map_of_the_sentence_and_its_query_key_never_matter():
    """ETRIS's neck gate: every pixel attends to the one (projected) sentence token, so the softmax is 1 and the
    gate is out_proj(v_proj(token)) at every pixel, whatever q/k; their gradients vanish up to rounding."""
    decoder = small_decoder(tap_strides=(8, 16, 32), gate="attention")
    visual, words, pad_mask, sentence = inputs(decoder, (8, 4, 2))
    hier = decoder.hierarchical
    token = hier.sentence_proj(sentence)
    level = hier.projections[1](visual[1])
    with torch.no_grad():
        for gate in hier.gates:
            affine = gate.out_proj(gate.v_proj(token))[:, :, None, None]
            torch.testing.assert_close(hier._gated(gate, level, sentence, token[:, None]), level * affine,
                                       atol=1e-6, rtol=1e-5)
        before = decoder(visual, words, pad_mask, sentence)
        for gate in hier.gates:
            gate.q_proj.weight.normal_()
            gate.k_proj.bias.normal_()
        torch.testing.assert_close(decoder(visual, words, pad_mask, sentence), before, atol=1e-5, rtol=1e-5)
    decoder.train()
    segmentation_loss(decoder(visual, words, pad_mask, sentence), (torch.rand(2, 64, 64) > 0.5).float()).backward()
    grads = {n: p.grad.abs().max().item() for n, p in decoder.named_parameters() if ".gates." in n}
    query_key = [g for n, g in grads.items() if "q_proj" in n or "k_proj" in n]
    others = [g for n, g in grads.items() if "v_proj" in n or "out_proj" in n]
    assert len(query_key) == len(others) == 12 and max(query_key) < 1e-6 * min(others)


def test_linear_gate_keeps_the_module_names_of_earlier_saved_models():
    names = {n for n in small_decoder().state_dict() if n.startswith("hierarchical.gates")}
    assert names == {f"hierarchical.gates.{i}.{kind}" for i in range(3) for kind in ("weight", "bias")}

@pytest.mark.parametrize("tap_strides, sizes", [((16, 16, 16), (8, 8, 8)), ((8, 16, 32), (16, 8, 4))])
@pytest.mark.parametrize("component", ["hierarchical_alignment", "global_alignment"])
def test_a_removed_component_is_gone_and_the_logits_keep_their_shape(tap_strides, sizes, component):
    torch.manual_seed(0)
    config = DecoderConfig(in_channels=(24, 20, 16), tap_strides=tap_strides, dropout=0.0, **SMALL,
                           **{component: False})
    decoder, full = RISDecoder(config).eval(), small_decoder(tap_strides=tap_strides)
    visual, words, pad_mask, sentence = inputs(decoder, sizes)
    logits = decoder(visual, words, pad_mask, sentence)
    assert logits.shape == full(visual, words, pad_mask, sentence).shape
    assert sum(p.numel() for p in decoder.parameters()) < sum(p.numel() for p in full.parameters())
    if component == "global_alignment":  # the words no longer reach the mask except through the sentence
        assert decoder.global_alignment is None
        other = torch.randn_like(words)
        torch.testing.assert_close(decoder(visual, other, pad_mask, sentence), logits)
    else:  # only the last tap is read
        moved = [visual[0] + 1, visual[1] - 1, visual[2]]
        torch.testing.assert_close(decoder(moved, words, pad_mask, sentence), logits)


def test_unknown_components_and_non_bool_values_are_refused():
    from methods.decoder import check_components

    with pytest.raises(UserError, match="unknown decoder component 'projector'; choose from hierarchical_alignment"):
        check_components({"projector": False})
    with pytest.raises(UserError, match="global_alignment=1: expected true or false"):
        check_components({"global_alignment": 1})
