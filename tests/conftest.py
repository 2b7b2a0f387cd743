"""Shared fixtures. Tests are CPU-only and offline; keep torch to one thread per xdist worker."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def models_outside_the_repo(tmp_path_factory: pytest.TempPathFactory):
    """Runs save their trained models (default runs/models/); tests keep them in a temporary folder instead,
    subprocesses included."""
    os.environ["RISBENCH_MODELS"] = str(tmp_path_factory.mktemp("models"))


# The modules that take longest (their processes, paper-scale models, module fixtures), longest first. CI runs
# `-n 2 --dist loadscope`: each module goes whole to one worker (its module fixtures built once) in collection
# order, so starting with these leaves the short modules to even out the two workers at the end.
LONGEST_FIRST = ("test_sweep", "test_distributed", "test_reliability", "test_backbone", "test_gpu_check",
                 "test_resume", "test_selection", "test_combinations", "test_cli_fuzz", "test_bridger",
                 "test_workers", "test_profile", "test_cli", "test_train")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest keep their order
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def no_model_built(monkeypatch):
    """Any torch module built during the test fails it: bad input must be refused before any work starts."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built: bad input was not refused before the work started")

    monkeypatch.setattr(torch.nn.Module, "__init__", refuse)


@pytest.fixture(scope="module")
def tiny():
    """The default tiny RIS model with random weights (seed 0)."""
    from model_helpers import build

    return build()


@pytest.fixture(scope="module")
def vit_b16_ris():
    """ViT-B/16 at 32 px with the tiny decoder: parameter counts do not depend on the image size."""
    from model_helpers import build

    from methods.backbone import BackboneConfig

    return build(BackboneConfig(arch="ViT-B-16", image_size=32, text_len=8))
