"""target = soft (ETRIS): the training mask letterboxed bilinearly, with the covered fraction at the edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.data import build_dataset, collate
from benchmarks.data.letterbox import Letterbox
from benchmarks.data.targets import training_collate


@pytest.mark.parametrize("case", range(12))
def test_a_soft_mask_is_the_binary_one_with_fractional_edges(case):
    rng = np.random.default_rng(case)
    h, w = (int(v) for v in rng.integers(20, 90, size=2))
    size = int(rng.integers(16, 64))
    top, left = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    mask = np.zeros((h, w), dtype=bool)
    mask[top:top + int(rng.integers(4, h - top + 1)), left:left + int(rng.integers(4, w - left + 1))] = True
    box = Letterbox.fit(h, w, size)
    soft, binary = box.apply_mask(mask, soft=True), box.apply_mask(mask)
    assert soft.shape == binary.shape == (size, size) and soft.dtype == torch.float32
    assert 0 <= soft.min() and soft.max() <= 1
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    # wherever the two disagree by half or more they sit on the mask's edge: a neighbour of the other value
    differ = (soft - binary).abs() >= 0.5
    edge = torch.nn.functional.max_pool2d(binary[None], 3, 1, 1)[0] != -torch.nn.functional.max_pool2d(
        -binary[None], 3, 1, 1)[0]
    assert not (differ & ~edge).any()
    pad = torch.ones(size, size, dtype=torch.bool)
    pad[box.pad_top:box.pad_top + box.content_h, box.pad_left:box.pad_left + box.content_w] = False
    assert soft[pad].eq(0).all()  # padding is background in both
    assert abs(soft.sum() - mask.mean() * box.content_h * box.content_w) < 0.1 * binary.sum() + 4


def test_without_a_resize_the_soft_mask_is_the_binary_one():
    mask = np.random.default_rng(0).random((32, 32)) > 0.5
    box = Letterbox.identity(32)
    assert torch.equal(box.apply_mask(mask, soft=True), box.apply_mask(mask))


def test_the_soft_training_batch_replaces_only_the_mask(tmp_path):
    from refer_fixture import build_refer

    build_refer(tmp_path, splits=("train",))
    dataset = build_dataset("refcoco", "train", 24, {"root": str(tmp_path)})  # 40x60 and 50x30 images: resized
    items = [dataset[i] for i in range(len(dataset))]
    assert training_collate("binary") is collate
    soft, binary = training_collate("soft")(items), collate(items)
    assert torch.equal(soft["image"], binary["image"]) and soft["text"] == binary["text"]
    fractional = (soft["mask"] > 0) & (soft["mask"] < 1)
    assert fractional.any() and not ((binary["mask"] > 0) & (binary["mask"] < 1)).any()
    for item, target in zip(items, soft["mask"], strict=True):
        assert torch.equal(target, item["letterbox"].apply_mask(item["orig_mask"], soft=True))
