import math

import pytest
import torch

from benchmarks.data.letterbox import Letterbox
from benchmarks.metrics import IoUMeter, logits_to_mask, logits_to_masks


def _row(ones: range, width: int = 20) -> torch.Tensor:
    m = torch.zeros(1, width, dtype=torch.bool)
    m[0, list(ones)] = True
    return m


def test_iou_of_overlapping_and_disjoint_masks():
    pred = torch.zeros(4, 4, dtype=torch.bool)
    pred[:2, :2] = True  # 4 pixels
    target = torch.zeros(4, 4, dtype=torch.bool)
    target[:2, :3] = True  # 6 pixels, contains pred
    meter = IoUMeter()
    assert meter.update(pred, target) == pytest.approx(4 / 6)
    pred2 = torch.zeros(4, 4, dtype=torch.bool)
    pred2[3, :3] = True
    target2 = torch.zeros(4, 4, dtype=torch.bool)
    target2[0, :3] = True
    assert meter.update(pred2, target2) == 0.0  # intersection 0, union 6
    out = meter.compute()
    assert out["n"] == 2
    assert out["mIoU"] == pytest.approx(100 * (4 / 6 + 0) / 2)
    assert out["oIoU"] == pytest.approx(100 * (4 + 0) / (6 + 6))


def test_precision_counts_iou_strictly_above_threshold():
    meter = IoUMeter()
    cases = [  # (pred pixels, target pixels) -> IoU
        (range(0, 1), range(0, 2)),  # 1/2 = 0.5 exactly: not counted at 0.5
        (range(0, 3), range(0, 5)),  # 3/5 = 0.6
        (range(0, 3), range(0, 4)),  # 3/4 = 0.75
        (range(0, 19), range(0, 20)),  # 19/20 = 0.95
        (range(0, 2), range(5, 7)),  # 0
    ]
    ious = [meter.update(_row(p), _row(t)) for p, t in cases]
    assert ious == pytest.approx([0.5, 0.6, 0.75, 0.95, 0.0])
    out = meter.compute()
    assert out["prec@0.5"] == pytest.approx(60.0)
    assert out["prec@0.6"] == pytest.approx(40.0)
    assert out["prec@0.7"] == pytest.approx(40.0)
    assert out["prec@0.8"] == pytest.approx(20.0)
    assert out["prec@0.9"] == pytest.approx(20.0)
    assert out["mIoU"] == pytest.approx(100 * sum(ious) / 5)
    assert out["oIoU"] == pytest.approx(100 * (1 + 3 + 3 + 19 + 0) / (2 + 5 + 4 + 20 + 4))


def test_empty_cases():
    empty, full = _row(range(0)), _row(range(3, 8))
    meter = IoUMeter()
    assert meter.update(empty, empty) == 1.0  # correct "nothing"
    assert meter.update(empty, full) == 0.0
    assert meter.update(full, empty) == 0.0
    out = meter.compute()
    assert out["mIoU"] == pytest.approx(100 / 3)
    assert out["oIoU"] == pytest.approx(0.0)  # 0 intersection over 10 union pixels
    only_empty = IoUMeter()
    only_empty.update(empty, empty)
    assert only_empty.compute()["oIoU"] == 100.0


def test_no_updates_gives_none_not_nan():
    out = IoUMeter().compute()
    assert out["n"] == 0 and out["per_kind"] == {}
    assert all(out[k] is None for k in ("mIoU", "oIoU", "prec@0.5", "prec@0.9"))


def test_per_kind_miou():
    meter = IoUMeter()
    meter.update(_row(range(2)), _row(range(4)), kind="position")  # 0.5
    meter.update(_row(range(4)), _row(range(4)), kind="position")  # 1.0
    meter.update(_row(range(1)), _row(range(4)), kind="attribute")  # 0.25
    meter.update(_row(range(4)), _row(range(4)))  # no kind: only in the totals
    out = meter.compute()
    assert out["per_kind"] == pytest.approx({"attribute": 25.0, "position": 75.0})
    assert out["n"] == 4


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="differ in shape"):
        IoUMeter().update(torch.zeros(3, 4, dtype=torch.bool), torch.zeros(4, 3, dtype=torch.bool))


def test_threshold_applies_to_probabilities():
    lb = Letterbox.identity(6)
    logits = torch.zeros(6, 6)  # probability 0.5 everywhere
    assert logits_to_mask(logits, lb).all()  # 0.5 > 0.35
    assert not logits_to_mask(logits, lb, threshold=0.6).any()
    assert logits_to_mask(torch.full((6, 6), math.log(0.3 / 0.7)), lb).sum() == 0  # p = 0.3


def test_letterboxed_rectangle_maps_back_to_original():
    lb = Letterbox.fit(30, 60, 20)  # scale 1/3, content rows 5..14
    logits = torch.full((20, 20), -10.0)
    logits[:5] = 10.0  # confident padding: must be cropped, not stretched into the image
    logits[5 + 2 : 5 + 5, 4:10] = 10.0
    expected = torch.zeros(30, 60, dtype=torch.bool)
    expected[6:15, 12:30] = True
    pred = logits_to_mask(logits, lb)
    assert pred.shape == (30, 60) and pred.dtype == torch.bool
    assert torch.equal(pred, expected)


def test_low_resolution_logits_are_upsampled_to_the_input_size():
    lb = Letterbox.identity(20)
    logits = torch.full((10, 10), -10.0)
    logits[3:7, 3:7] = 10.0  # block covering input rows/cols ~6..14
    pred = logits_to_mask(logits, lb)
    assert pred.shape == (20, 20)
    assert pred[8:12, 8:12].all()
    assert not pred[:4].any() and not pred[17:].any() and not pred[:, :4].any() and not pred[:, 17:].any()


def test_batched_variant_matches_single():
    lbs = [Letterbox.fit(30, 60, 16), Letterbox.fit(50, 20, 16)]
    logits = torch.randn(2, 8, 8) * 3
    batched = logits_to_masks(logits, lbs)
    for i, lb in enumerate(lbs):
        assert torch.equal(batched[i], logits_to_mask(logits[i], lb))
    assert batched[1].shape == (50, 20)


def test_batched_variant_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="letterboxes"):
        logits_to_masks(torch.zeros(2, 4, 4), [Letterbox.identity(4)])
    with pytest.raises(ValueError, match="same input size"):
        logits_to_masks(torch.zeros(2, 4, 4), [Letterbox.identity(4), Letterbox.identity(8)])
