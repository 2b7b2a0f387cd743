"""The model a run trains: the suite's backbone and decoder, adapted by a method (shared by training, profiling
and loading a saved model, so all three build exactly the same network)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.suites import Suite
from methods.backbone import BackboneConfig
from methods.model import RISModel
from methods.registry import get_method
from riscore.errors import UserError

HOST_ALLOCATION_FAILED = "can't allocate memory"  # torch's CPU allocator, when the OS refuses a request


def backbone_config(suite: Suite) -> BackboneConfig:
    return BackboneConfig(arch=suite.backbone, pretrained=suite.pretrained_source(), image_size=suite.image_size,
                          text_len=suite.text_len, quick_gelu=suite.quick_gelu, attnpool=suite.attnpool)


@contextmanager
def refused_if_too_big(suite: Suite, method: str | None = None) -> Iterator[None]:
    """A model whose weights this machine cannot even allocate is bad input (a size option such as rank or width,
    or an image size, far too large), refused in one line before training, without a record; whatever the
    method, as the allocator is what says so. Running out of device memory later, while training, stays a
    run's outcome (`oom`)."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError) and HOST_ALLOCATION_FAILED not in str(exc):
            raise
        size = re.search(r"allocate (\d+) bytes", str(exc))
        asked = f" (one tensor of {int(size.group(1)) / 2**30:.1f} GiB)" if size else ""
        what, fix = ((f"method {method} on suite '{suite.name}'", "smaller method options (--set)") if method else
                     (f"suite '{suite.name}'", f"a smaller image_size than {suite.image_size}"))
        raise UserError(f"the model of {what} does not fit in this machine's memory{asked}; choose {fix}") from None


def build_base_model(suite: Suite) -> RISModel:
    """The suite's backbone (frozen) and decoder, before any method.

    With the suite's `train_batchnorm` CLIP's BatchNorm runs on batch statistics in training whatever the
    method (no method freezes it again once unfrozen).
    """
    with refused_if_too_big(suite):
        model = RISModel.build(backbone_config(suite), suite.decoder_scale, gate=suite.gate,
                               decoder_components=suite.decoder_options)
    if suite.train_batchnorm:
        model.backbone.unfreeze_batchnorm()
    return model


def build_model(suite: Suite, method: str, method_config: Any) -> RISModel:
    """The suite's base model adapted by `method`."""
    model = build_base_model(suite)
    with refused_if_too_big(suite, method):
        get_method(method).apply(model, method_config)
    return model
