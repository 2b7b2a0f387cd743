"""Every registered method, parametrized over the registry: a new method is tested without edits here."""


import pytest
import torch
from model_helpers import adapted

from methods import get_method, list_methods
from methods.decoder import segmentation_loss
from riscore.errors import UserError


@pytest.fixture(scope="module")
def batch(tiny):
    torch.manual_seed(1)
    images = torch.rand(2, 3, 64, 64)
    tokens = tiny.backbone.tokenize(["the small red circle", "the leftmost blue square"])
    masks = (torch.rand(2, 64, 64) > 0.5).float()
    return images, tokens, masks


@pytest.mark.parametrize("name", list_methods())
def test_one_step_changes_exactly_the_declared_parameters(tiny, batch, name):
    model = adapted(tiny, name)
    images, tokens, masks = batch
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "a method must train something"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.backbone.named_buffers()}
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    model.train()
    loss = segmentation_loss(model(images, tokens), masks)
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"declared trainable but unreached by the loss: {no_grad[:5]}"
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:5]}"
    assert len(changed) >= 0.9 * len(trainable)
    if not any(p.requires_grad for p in model.backbone.parameters()):
        assert all(torch.equal(b, buffers[n]) for n, b in model.backbone.named_buffers())


@pytest.mark.parametrize("name", [n for n in list_methods() if get_method(n).identity_at_init])
def test_identity_at_initialisation(tiny, batch, name):
    images, tokens, _ = batch
    model = adapted(tiny, name)
    torch.testing.assert_close(model.predict(images, tokens), tiny.predict(images, tokens),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list_methods())
def test_parameter_ledger_adds_up(tiny, name):
    counts = adapted(tiny, name).parameter_counts()
    base = tiny.parameter_counts()
    assert counts.total == base.total + counts.added
    assert counts.backbone == base.backbone and counts.decoder == base.decoder
    assert 0 < counts.ratio_trainable <= 1


def test_frozen_trains_the_decoder_only_and_full_trains_everything(tiny):
    frozen, full = adapted(tiny, "frozen").parameter_counts(), adapted(tiny, "full").parameter_counts()
    assert frozen.trainable == frozen.decoder and frozen.added == 0
    used = sum(p.numel() for p in tiny.backbone.encoder_parameters())
    assert full.trainable == used + full.decoder == full.total - 1  # all but CLIP's unused logit scale


def test_unknown_method_lists_known_ones_with_a_suggestion():
    with pytest.raises(UserError, match="Did you mean 'frozen'.*Known methods: .*full"):
        get_method("frozn")


def test_unknown_method_option_is_named():
    with pytest.raises(UserError, match="method 'full' has no option 'rank'"):
        get_method("full").make_config({"rank": "4"})
