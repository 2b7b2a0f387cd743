"""`bench --list-methods`: every registered method, what it trains and its options with their defaults.

The plain listing builds no model, so it answers in about the time it takes to import torch;
`--counts` adds trainable-parameter counts, which need every method built on two backbones.
"""

from __future__ import annotations

import copy
from typing import Any

from methods.registry import SEPARATOR, get_method, list_methods

LISTED_BACKBONES = (("risbench-tiny-vit", 64, 16, "tiny"), ("ViT-B-16", 416, 17, "paper"))


def format_default(value: Any) -> str:
    """A default as it would be typed after `--set key=`."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)  # empty: `--set key=` gives ()
    return str(value)


def method_options(name: str) -> dict[str, str]:
    """Option name -> default of a method's config, in declaration order (`part.option` in a combination)."""
    return {key: format_default(value) for key, value in get_method(name).option_defaults().items()}


def options_listing() -> str:
    lines = []
    for name in list_methods():
        options = method_options(name)
        lines.append(f"{name:<12} {get_method(name).description}")
        lines.append(" " * 13 + ("options: " + " ".join(f"{k}={v}" for k, v in options.items()) if options
                                 else "options: none"))
    return "\n".join(lines)


def count_table():
    """Parameter counts with random weights (counts do not depend on the weights' values)."""
    import pandas as pd

    from methods.backbone import BackboneConfig
    from methods.model import RISModel

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
                         "added % of CLIP": 100 * counts.ratio_added,
                         "added % of image tower at 224 px (paper)": 100 * counts.ratio_paper})
    return pd.DataFrame(rows)


def print_methods(counts: bool = False) -> None:
    if counts:
        print(count_table().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    else:
        print(options_listing())
        print(f"\nany methods whose parameters do not collide combine as A{SEPARATOR}B (A applied first), options as "
              f"B.option; parameter counts on the default backbone and ViT-B/16: bench --list-methods --counts")
