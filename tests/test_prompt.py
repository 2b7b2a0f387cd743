"""Prompt tuning: visual prompts leave the token layout alone, text context keeps EOT and padding right."""


import pytest
import torch
from model_helpers import adapted as shared_adapted

from methods import get_method
from methods.prompt import PromptedBlock, shift_for_context
from riscore.errors import UserError

SOT, EOT = 49406, 49407  # open_clip's start/end-of-text token ids


def adapted(model, **overrides):
    return shared_adapted(model, "prompt", **overrides)


def test_context_shifts_the_expression_and_its_end_token():
    tokens = torch.tensor([[SOT, 11, 12, EOT, 0, 0, 0, 0],
                           [SOT, 21, EOT, 0, 0, 0, 0, 0]])
    shifted = shift_for_context(tokens, 3)
    assert shifted.tolist() == [[SOT, SOT, SOT, SOT, 11, 12, EOT, 0],
                                [SOT, SOT, SOT, SOT, 21, EOT, 0, 0]]
    assert (shifted.argmax(-1) == tokens.argmax(-1) + 3).all()
    assert ((shifted == 0).sum(-1) == (tokens == 0).sum(-1) - 3).all()


def test_context_truncates_a_long_expression_but_keeps_its_end_token():
    tokens = torch.tensor([[SOT, 1, 2, 3, 4, 5, 6, EOT]])  # already full length
    assert shift_for_context(tokens, 2).tolist() == [[SOT, SOT, SOT, 1, 2, 3, 4, EOT]]
    with pytest.raises(UserError, match="at most 6"):
        shift_for_context(tokens, 7)


def test_features_keep_their_shapes_and_text_sees_the_shifted_ids(tiny):
    model = adapted(tiny, vision_tokens=3, text_tokens=4)
    images = torch.rand(2, 3, 64, 64)
    tokens = tiny.backbone.tokenize(["the small red circle", "a very long expression " * 5])
    base = tiny.backbone.encode(images, tokens)
    feats = model.backbone.encode(images, tokens)
    assert [f.shape for f in feats.visual] == [f.shape for f in base.visual]
    assert feats.words.shape == base.words.shape and feats.sentence.shape == base.sentence.shape
    expected_pad = torch.zeros(2, 16, dtype=torch.bool)
    expected_pad[0, int(tokens[0].argmax()) + 4 + 1:] = True  # the short one: 4 fewer padding slots
    assert torch.equal(feats.pad_mask, expected_pad)
    ids, emb = model.backbone.embed_text(tokens)
    assert ids[:, -1].tolist() == [0, EOT]  # the long one was cut, its end token kept at the end
    ctx = model.backbone.text_prompt.ctx + tiny.backbone.clip.positional_embedding[1:5]
    torch.testing.assert_close(emb[0, 1:5], ctx)
    torch.testing.assert_close(emb[:, 0], tiny.backbone.text_stem(tokens)[:, 0])


def test_prompts_change_the_output_but_not_the_frozen_weights(tiny):
    images, tokens = torch.rand(2, 3, 64, 64), tiny.backbone.tokenize(["a red circle", "the left square"])
    model = adapted(tiny)
    assert not torch.allclose(model.predict(images, tokens), tiny.predict(images, tokens), atol=1e-4)
    trainable = [n for n, p in model.backbone.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith((".prompts", ".ctx")) for n in trainable)


def test_vision_prompts_are_inserted_and_dropped_inside_each_block(tiny):
    model = adapted(tiny, vision_tokens=5, depth=2, text_tokens=0)
    blocks = model.backbone.image_stages
    assert [isinstance(b, PromptedBlock) for b in blocks] == [True, True] + [False] * 4
    x = torch.randn(2, 65, 128)
    out = blocks[0](x)
    assert out.shape == x.shape
    with torch.no_grad():
        blocks[0].prompts.normal_()  # (a constant shift would vanish in the LayerNorm)
    assert not torch.allclose(blocks[0](x), out, atol=1e-4)  # the prompts take part in attention


@pytest.mark.parametrize("vision_tokens, depth, text_tokens", [(8, 0, 4), (2, 3, 0), (0, 0, 6)])
def test_trainable_count_is_analytic(tiny, vision_tokens, depth, text_tokens):
    counts = adapted(tiny, vision_tokens=vision_tokens, depth=depth, text_tokens=text_tokens).parameter_counts()
    expected = vision_tokens * 128 * (depth or 6) + text_tokens * 96
    assert counts.added == counts.trainable - counts.decoder == expected


@pytest.mark.parametrize("overrides, message", [
    ({"depth": 7}, "prompt depth 7 exceeds the 6 vision blocks"),
    ({"text_tokens": 15}, "text_tokens 15 leave no room in text_len 16; use at most 14"),
])
def test_sizes_that_do_not_fit_are_refused(tiny, overrides, message):
    with pytest.raises(UserError, match=message):
        adapted(tiny, **overrides)


def test_nothing_to_train_is_refused():
    with pytest.raises(UserError, match="vision_tokens and text_tokens are both 0"):
        get_method("prompt").make_config({"vision_tokens": "0", "text_tokens": "0"})
