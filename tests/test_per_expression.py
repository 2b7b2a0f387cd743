"""Per-expression results: packed compactly, unpacked exactly, and enough to re-aggregate every metric."""

import json

import numpy as np
import pytest
import torch

from benchmarks.metrics import PREC_THRESHOLDS, IoUMeter
from benchmarks.per_expression import from_meter, pack, unpack


def random_meter(n: int, seed: int) -> IoUMeter:
    """A meter fed random masks of random sizes, empty ones included, over three kinds."""
    gen = torch.Generator().manual_seed(seed)
    meter = IoUMeter()
    for i in range(n):
        side = int(torch.randint(1, 40, (1,), generator=gen))
        density = float(torch.rand(1, generator=gen))
        pred = torch.rand(side, side, generator=gen) < density * (i % 7 != 0)  # every 7th prediction empty
        target = torch.rand(side, side, generator=gen) < density * (i % 11 != 0)
        meter.update(pred, target, ("attribute", "relation", "ordinal")[i % 3])
    return meter


@pytest.mark.parametrize("seed", range(5))
def test_unpacked_counts_re_aggregate_to_the_meters_metrics_exactly(seed):
    meter = random_meter(300, seed)
    index = list(np.random.default_rng(seed).permutation(10_000)[:300])
    packed = json.loads(json.dumps(from_meter(meter, index)))  # through JSON, as a record holds it
    rows = unpack(packed)
    metrics = meter.compute()
    assert rows.index.tolist() == index
    assert rows.iou.tolist() == meter.ious  # bit-identical, so paired statistics see what the record reports
    assert 100 * rows.iou.mean() == metrics["mIoU"]
    assert 100 * rows.intersection.sum() / rows.union.sum() == pytest.approx(metrics["oIoU"], rel=1e-12)
    for t in PREC_THRESHOLDS:
        assert 100 * (rows.iou > t).mean() == metrics[f"prec@{t}"]
    kinds = np.asarray(rows.kinds)[rows.kind]
    for kind, value in metrics["per_kind"].items():
        assert 100 * rows.iou[kinds == kind].mean() == pytest.approx(value, rel=1e-12)


def test_packing_is_compact_for_a_shapes_sized_evaluation():
    """A shapes run scores 3 splits x 500 expressions at 64 px: well under the 50 KB budget per run."""
    size = sum(len(json.dumps(from_meter(random_meter(500, s), range(500)))) for s in range(3))
    assert size < 50_000, size


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one entry per expression"):
        pack([0, 1], [1], [1, 2], ["a", "b"])
    with pytest.raises(ValueError, match="cannot be stored"):
        pack([0], [-1], [1], ["a"])
    packed = pack([0, 1], [1, 2], [2, 2], ["a", None])
    with pytest.raises(ValueError, match="expected 3"):
        unpack({**packed, "n": 3})
    with pytest.raises(ValueError, match="unreadable"):
        unpack({**packed, "union": "not base64 zlib"})
    with pytest.raises(ValueError, match="encoding"):
        unpack({**packed, "encoding": "raw"})
