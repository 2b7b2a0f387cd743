"""The committed offline backbone: loads through the real open_clip path and reproduces its card."""

import json
from pathlib import Path

import open_clip
import pytest
import torch

from benchmarks.pretrain import ARCH, CARD_NAME, WEIGHTS_NAME, retrieval_accuracy
from methods.backbone import Backbone, BackboneConfig, register_model_configs

ASSETS = Path(__file__).resolve().parent.parent / "methods" / "assets"


@pytest.fixture(scope="module")
def card():
    return json.loads((ASSETS / CARD_NAME).read_text())


def test_weights_file_is_small_enough_to_commit():
    assert (ASSETS / WEIGHTS_NAME).stat().st_size <= 20 * 2**20


def test_committed_backbone_reproduces_its_recorded_retrieval_accuracy(card):
    register_model_configs()
    model = open_clip.create_model(ARCH, pretrained=str(ASSETS / WEIGHTS_NAME))
    recorded = card["retrieval_val"]["trained"]
    measured = retrieval_accuracy(model, recorded["pairs"])
    for key in ("image_to_text_top1", "text_to_image_top1"):
        assert measured[key] == pytest.approx(recorded[key], abs=0.5), key
    # and pretraining was worth it: far above the untrained architecture and chance
    untrained = card["retrieval_val"]["untrained_same_arch"]
    assert measured["image_to_text_top1"] > 5 * max(untrained["image_to_text_top1"], recorded["chance_top1"])


def test_backbone_loads_the_committed_weights_in_fp32():
    backbone = Backbone(BackboneConfig(arch=ARCH, pretrained=str(ASSETS / WEIGHTS_NAME)))
    assert all(p.dtype == torch.float32 for p in backbone.parameters())
    register_model_configs()
    reference = open_clip.create_model(ARCH, pretrained=str(ASSETS / WEIGHTS_NAME))
    torch.testing.assert_close(backbone.clip.token_embedding.weight, reference.token_embedding.weight)
