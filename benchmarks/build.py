"""The model a run trains: the suite's backbone and decoder, adapted by a method (shared by training, profiling
and loading a saved model, so all three build exactly the same network)."""

from __future__ import annotations

from typing import Any

from benchmarks.suites import Suite
from methods.backbone import BackboneConfig
from methods.model import RISModel
from methods.registry import get_method


def backbone_config(suite: Suite) -> BackboneConfig:
    return BackboneConfig(arch=suite.backbone, pretrained=suite.pretrained_source(), image_size=suite.image_size,
                          text_len=suite.text_len, quick_gelu=suite.quick_gelu, attnpool=suite.attnpool)


def build_base_model(suite: Suite) -> RISModel:
    """The suite's backbone (frozen) and decoder, before any method.

    With the suite's `train_batchnorm` CLIP's BatchNorm runs on batch statistics in training whatever the
    method (no method freezes it again once unfrozen).
    """
    model = RISModel.build(backbone_config(suite), suite.decoder_scale, gate=suite.gate,
                           decoder_components=suite.decoder_options)
    if suite.train_batchnorm:
        model.backbone.unfreeze_batchnorm()
    return model


def build_model(suite: Suite, method: str, method_config: Any) -> RISModel:
    """The suite's base model adapted by `method`."""
    model = build_base_model(suite)
    get_method(method).apply(model, method_config)
    return model
