"""Step time per registered method on the default suite: one training step and one inference batch.

Both steps end in .item(), which waits for the device, so the timings include all queued GPU work.
"""

from __future__ import annotations

import math

import pytest

from benchmarks.profile import make_infer_step, make_train_step
from methods import list_methods


@pytest.mark.parametrize("method", list_methods())
def test_train_step(benchmark, speed_suite, profiled, batch, device, extra_info):
    step = make_train_step(profiled.model, speed_suite, batch, device)
    loss = benchmark.pedantic(step, rounds=5, warmup_rounds=1, iterations=1)
    assert math.isfinite(loss)


@pytest.mark.parametrize("method", list_methods())
def test_inference_batch(benchmark, speed_suite, profiled, batch, device, extra_info):
    step = make_infer_step(profiled.model, speed_suite, batch, device)
    mean_logit = benchmark.pedantic(step, rounds=5, warmup_rounds=1, iterations=1)
    assert math.isfinite(mean_logit)
