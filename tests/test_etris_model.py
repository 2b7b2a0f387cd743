"""The paper suites build ETRIS's model: its trainable totals, its paper ratio, its train-mode CLIP BatchNorm."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from benchmarks.build import build_base_model
from benchmarks.suites import Suite, load_suite
from methods import get_method
from methods.bridger import BridgerConfig, bridger_parameter_count, build_bridger
from methods.model import RISModel
from riscore.errors import UserError


def random_weights(name: str) -> Suite:
    return load_suite(name).replace({"pretrained": None})  # counts do not depend on the weights' values


def apply(model: RISModel, method: str, **options) -> RISModel:
    spec = get_method(method)
    spec.apply(model, spec.make_config(options))
    return model


@pytest.mark.parametrize(("suite", "trainable", "bridger", "paper_ratio"), [
    ("paper-vitb16", 23_829_313, 598_592, "0.69%"),
    ("paper-rn50", 28_819_009, 1_942_080, "5.07%"),
    ("paper-rn101", 26_328_129, 1_942_080, "3.45%"),
])
def test_paper_suites_train_as_many_parameters_as_etris_code(suite: str, trainable: int, bridger: int,
                                                             paper_ratio: str) -> None:
    """ETRIS's released code at random init and 416 px: its whole trainable model (Bridger, decoder with the
    attention gate, CLIP's positional embeddings), and the paper's ratio over the image tower at 224 px."""
    torch.manual_seed(0)
    model = build_base_model(random_weights(suite))
    # the paper's 1.61% is the width-128 Bridger over CLIP ViT-B/16's image tower at 224 px (86.19M)
    wide = sum(p.numel() for p in build_bridger(model.backbone, BridgerConfig(width=128)).parameters())
    counts = apply(model, "bridger").parameter_counts()
    assert (counts.trainable, bridger_parameter_count(model), counts.added) == (trainable, bridger, bridger)
    assert f"{100 * counts.ratio_paper:.2f}%" == paper_ratio
    if suite == "paper-vitb16":
        paper = dataclasses.replace(counts, added=wide)
        assert (wide, paper.image_tower_224, f"{100 * paper.ratio_paper:.2f}%") == (1_387_648, 86_192_640, "1.61%")


def test_train_batchnorm_runs_clip_batchnorm_on_batch_statistics_whatever_the_method() -> None:
    """Even the bridger with freeze_bn_stats=true gets train-mode CLIP BatchNorm under the suite switch (running
    statistics move, ETRIS's connect branch included); eval mode still uses the running ones. Without the
    switch the methods decide, as before (tests/test_bridger.py)."""
    suite = Suite(name="bn", backbone="RN50", image_size=64, attnpool="etris", train_batchnorm=True)
    torch.manual_seed(0)
    model = apply(build_base_model(suite), "bridger", freeze_bn_stats=True)
    bns = [m for m in model.backbone.clip.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) > 50 and model.backbone.clip.visual.attnpool.connect[1] in bns
    before = [bn.running_mean.clone() for bn in bns]
    model.train()
    assert all(bn.training for bn in bns)
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64), model.backbone.tokenize(["a cat", "the left dog"]))
    assert all(not torch.equal(bn.running_mean, b) for bn, b in zip(bns, before, strict=True))
    model.eval()
    assert not any(bn.training for bn in bns)


@pytest.mark.parametrize(("key", "value"), [("attnpool", "cris"), ("gate", "mlp"), ("quick_gelu", "yes please")])
def test_bad_switch_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(UserError, match=key):
        load_suite("smoke").replace({key: value})


def test_switches_at_their_defaults_leave_the_identity_alone() -> None:
    """Records made before the switches existed keep their identity (see ADDED_KEY_DEFAULTS)."""
    smoke = load_suite("smoke")
    assert not {"quick_gelu", "attnpool", "train_batchnorm", "gate"} & set(smoke.identity())
    changed = smoke.replace({"gate": "attention", "train_batchnorm": "true"}).identity()
    assert (changed["gate"], changed["train_batchnorm"]) == ("attention", True)
