"""Fixtures for the step-time suite: the default suite's model per method, random weights.

Weights do not change step time, so no checkpoint is needed. Torch runs one CPU thread so that runs
compared with --benchmark-compare are not at the mercy of other processes' thread contention.
"""

from __future__ import annotations

import logging

import pytest
import torch

from benchmarks.profile import Batch, Profiled, build_profiled, example_batch, profile_suite
from benchmarks.suites import Suite, load_suite
from methods import get_method

torch.set_num_threads(1)
logging.getLogger().setLevel(logging.ERROR)  # open_clip's "no pretrained weights" notice



@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="session")
def speed_suite() -> Suite:
    return profile_suite(load_suite("shapes"))


@pytest.fixture
def profiled(speed_suite: Suite, method: str, device: torch.device) -> Profiled:
    built = build_profiled(speed_suite, method, get_method(method).make_config())
    built.model.to(device)
    return built


@pytest.fixture
def batch(speed_suite: Suite, profiled: Profiled, device: torch.device) -> Batch:
    return example_batch(profiled.model, speed_suite.batch_size).to(device)


@pytest.fixture
def extra_info(benchmark, speed_suite: Suite, method: str, device: torch.device) -> dict:
    info = {"method": method, "backbone": speed_suite.backbone, "image_size": speed_suite.image_size,
            "text_len": speed_suite.text_len, "batch_size": speed_suite.batch_size, "weights": "random",
            "device": device.type, "threads": torch.get_num_threads()}
    benchmark.extra_info.update(info)
    return info
