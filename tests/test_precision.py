"""precision = fp16 (ETRIS): fp16 autocast with loss scaling in training, fp32 evaluation; CPU runs fp32 and says
so; the loss scaler's state is checkpointed so a resumed run skips the same steps."""

from __future__ import annotations

import pytest
import torch
from model_helpers import build

from benchmarks.checkpoint import Checkpointer
from benchmarks.step import Precision, autocast_dtype, training_step
from benchmarks.suites import load_suite

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("precision,device,train,evaluation", [
    ("fp16", CUDA, torch.float16, None), ("bf16", CUDA, torch.bfloat16, torch.bfloat16), ("fp32", CUDA, None, None),
    ("fp16", CPU, None, None), ("bf16", CPU, None, None), ("fp32", CPU, None, None)])
def test_what_each_precision_computes_in(precision, device, train, evaluation):
    suite = load_suite("smoke").replace({"precision": precision})
    used = Precision.of(suite, device)
    assert (used.train, used.eval) == (train, evaluation)
    assert autocast_dtype(suite, device) == evaluation  # predict/evaluate/reevaluate score as the run did
    if device.type == "cpu" or torch.cuda.is_available():  # torch disables a CUDA scaler without CUDA
        assert used.scaler(device).is_enabled() == (train == torch.float16)
    names = {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    assert used.describe() == {"precision": names[train], "eval_precision": names[evaluation]}


def one_step(scaler: torch.amp.GradScaler | None, grad_clip: float = 0.0,
             poison: bool = False) -> tuple[dict, dict]:
    """(trainable weights before, after) one training step; `poison` makes one gradient infinite."""
    torch.manual_seed(0)
    model = build()
    suite = load_suite("smoke").replace({"grad_clip": grad_clip})
    params = model.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-3, fused=True)
    if poison:
        params[0].register_hook(lambda grad: torch.full_like(grad, float("inf")))
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 64, 64, generator=gen)
    masks = (torch.rand(2, 64, 64, generator=gen) > 0.5).float()
    tokens = model.backbone.tokenize(["a red circle", "the square"])
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    training_step(model, suite, optimizer, images, tokens, masks, None, scaler)
    return before, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("grad_clip", [0.0, 0.5])
def test_a_scaled_step_makes_the_unscaled_update(grad_clip):
    """Scaling by a power of two and unscaling (before clipping) is exact: the same weights as no scaler."""
    _, plain = one_step(None, grad_clip)
    before, scaled = one_step(torch.amp.GradScaler("cpu", init_scale=2.0**12), grad_clip)
    assert any(not torch.equal(before[name], plain[name]) for name in plain)
    for name, value in plain.items():
        torch.testing.assert_close(scaled[name], value, rtol=1e-6, atol=1e-8, msg=name)


def test_a_step_whose_gradients_overflow_is_skipped_and_the_scale_shrinks():
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before, after = one_step(scaler, poison=True)
    assert all(torch.equal(after[name], before[name]) for name in before)
    assert scaler.get_scale() == 512.0
    _, moved = one_step(None)
    assert any(not torch.equal(moved[name], before[name]) for name in before)  # without the skip, it moves


def test_the_loss_scaler_is_checkpointed_and_restored(tmp_path):
    torch.manual_seed(0)
    model = build()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    scaler.load_state_dict({**scaler.state_dict(), "scale": 96.0, "_growth_tracker": 5})
    Checkpointer(tmp_path, "h", code_version="v").save(3, model, optimizer, scheduler, {"step": 3}, scaler)
    fresh = torch.amp.GradScaler("cpu")
    progress = Checkpointer(tmp_path, "h", code_version="v").load(model, optimizer, scheduler, CPU, fresh)
    assert progress == {"step": 3}
    assert fresh.state_dict() == scaler.state_dict()
    assert fresh.get_scale() == 96.0
