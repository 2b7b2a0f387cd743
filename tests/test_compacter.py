"""Compacter: PHM weights are Kronecker sums with rules shared by every layer; the count is analytic."""

import pytest
import torch
from model_helpers import adapted

from methods import get_method
from methods.compacter import PHMBottleneck, PHMLinear, PHMRules
from riscore.errors import UserError


def test_phm_weight_is_the_kronecker_sum():
    torch.manual_seed(0)
    rules = PHMRules(4)
    layer = PHMLinear(rules, 12, 8, rank=2, zero_init=False)
    by_hand = sum(torch.kron(rules.weight[i], layer.s[i] @ layer.t[i]) for i in range(4))
    torch.testing.assert_close(layer.weight(), by_hand)
    x = torch.randn(3, 12)
    torch.testing.assert_close(layer(x), x @ by_hand + layer.bias)


def test_rules_are_one_parameter_shared_by_every_layer(tiny):
    model = adapted(tiny, "compacter")
    layers = [m for m in model.modules() if isinstance(m, PHMLinear)]
    assert len(layers) == 2 * 2 * (6 + 4)  # down + up, after attn and mlp, 6 image + 4 text blocks
    assert {id(layer.rules) for layer in layers} == {id(model.backbone.phm_rules.weight)}
    assert sum(k.endswith("phm_rules.weight") for k in model.state_dict()) == 1  # saved once
    assert sum(isinstance(m, PHMBottleneck) for m in model.modules()) == len(layers) // 2


def phm_params(width: int, hidden: int, n: int, rank: int) -> int:
    down = n * (width // n) * rank + n * rank * (hidden // n) + hidden
    up = n * (hidden // n) * rank + n * rank * (width // n) + width
    return down + up


@pytest.mark.parametrize("rank", [1, 2])
def test_count_is_analytic_on_vit_b16(vit_b16_ris, rank):
    counts = adapted(vit_b16_ris, "compacter", rank=rank).parameter_counts()
    expected = 24 * phm_params(768, 24, 4, rank) + 24 * phm_params(512, 24, 4, rank) + 4**3
    assert counts.added == counts.trainable - counts.decoder == expected


def test_shared_rules_train_from_every_layer(tiny):
    model = adapted(tiny, "compacter", zero_init_up=False)
    images, tokens = torch.rand(2, 3, 64, 64), tiny.backbone.tokenize(["a red circle", "the left square"])
    model(images, tokens).sum().backward()
    rules = next(m for m in model.modules() if isinstance(m, PHMLinear)).rules
    assert rules.grad is not None and rules.grad.abs().sum() > 0


@pytest.mark.parametrize("overrides, message", [
    ({"phm_dim": "5"}, "phm_dim must be a positive divisor of bottleneck 24"),
    ({"rank": "0"}, "rank must be >= 1"),
    ({"placement": "ffn"}, "placement must be a non-empty subset"),
])
def test_bad_options_are_named(overrides, message):
    with pytest.raises(UserError, match=message):
        get_method("compacter").make_config(overrides)
