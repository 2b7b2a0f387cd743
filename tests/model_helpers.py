"""Small models and the `adapted` helper that the method tests share."""

from __future__ import annotations

import copy

import torch

from methods import get_method
from methods.backbone import BackboneConfig
from methods.model import RISModel

TINY = BackboneConfig(arch="risbench-tiny-vit", pretrained=None, image_size=64, text_len=16)


def build(config: BackboneConfig = TINY, seed: int = 0) -> RISModel:
    torch.manual_seed(seed)
    return RISModel.build(config, "tiny")


def adapted(model: RISModel, name: str, **overrides) -> RISModel:
    """A deep copy of `model` adapted by method `name` with options given as on the command line."""
    model = copy.deepcopy(model)
    spec = get_method(name)
    spec.apply(model, spec.make_config({k: str(v) for k, v in overrides.items()}))
    return model
