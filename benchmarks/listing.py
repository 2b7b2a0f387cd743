"""`bench --list-methods`: every registered method with what it trains on two backbones."""

from __future__ import annotations

import copy

import pandas as pd

from methods.backbone import BackboneConfig
from methods.model import RISModel
from methods.registry import get_method, list_methods

LISTED_BACKBONES = (("risbench-tiny-vit", 64, 16, "tiny"), ("ViT-B-16", 416, 17, "paper"))


def method_table() -> pd.DataFrame:
    """Parameter counts with random weights (counts do not depend on the weights' values)."""
    rows = []
    for arch, size, text_len, scale in LISTED_BACKBONES:
        base = RISModel.build(BackboneConfig(arch=arch, image_size=size, text_len=text_len), scale)
        for name in list_methods():
            spec = get_method(name)
            model = copy.deepcopy(base)
            spec.apply(model, spec.make_config())
            counts = model.parameter_counts()
            rows.append({"method": name, "backbone": arch, "trainable": counts.trainable,
                         "trainable %": 100 * counts.ratio_trainable, "added": counts.added,
                         "added % of CLIP": 100 * counts.ratio_added, "description": spec.description})
    return pd.DataFrame(rows)


def print_methods() -> None:
    print(method_table().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
