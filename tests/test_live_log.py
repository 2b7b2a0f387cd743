"""`bench --log tensorboard`: event files that tensorboard's own reader parses, holding the run's curve, its anytime
evaluations and predicted masks, without changing the run; refused in one line when tensorboard is missing."""

import io
import math
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import benchmarks.train as train
from benchmarks.cli import main
from benchmarks.live_log import PREDICTIONS, TensorBoardLog
from benchmarks.store import read_record

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

# grad_clip 0: the logged norm is the gradient's own; 4 steps, a curve point each, evaluations at 2 and 4
BUDGET = ["--budget", "steps=4", "--budget", "eval_every=2", "--budget", "grad_clip=0.0",
          "--allow-budget-override"]


def _bench(tmp_path: Path, *extra: str, out: str = "results") -> int:
    return main(["bench", "--method", "lora", "--suite", "smoke", *BUDGET, "--out", str(tmp_path / out),
                 "--checkpoint-dir", str(tmp_path / "ckpt"), "--no-save-model", "--threads", "1", "--no-progress",
                 "--reference", str(tmp_path), *extra])


def _events(folder: Path):
    reader = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    reader.Reload()
    return reader


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One logged run and the same run unlogged (FLOPs not counted: not what this tests, and slow)."""
    tmp = tmp_path_factory.mktemp("live")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "count_flops", lambda *args: {})
        assert _bench(tmp, "--log", "tensorboard", "--log-dir", str(tmp / "tb")) == 0
        assert _bench(tmp, out="plain") == 0
    (record_path,) = (tmp / "results").rglob("*.json")
    (plain_path,) = (tmp / "plain").rglob("*.json")
    return tmp, record_path, read_record(record_path), read_record(plain_path)


def test_event_files_hold_the_curve_the_evaluations_and_predictions(logged):
    tmp, record_path, record, _ = logged
    folder = tmp / "tb" / record_path.relative_to(tmp / "results").with_suffix("")  # named like the record
    assert list(folder.glob("events.out.tfevents.*"))
    events = _events(folder)
    curve, anytime = record["train_info"]["curve"], record["train_info"]["anytime"]
    loss, lr, norm = (events.Scalars(f"train/{k}") for k in ("loss", "lr", "grad_norm"))
    assert [e.step for e in loss] == [p["step"] for p in curve] == [1, 2, 3, 4]
    assert [e.value for e in loss] == pytest.approx([p["loss"] for p in curve], rel=1e-6)
    assert [e.value for e in lr] == pytest.approx([p["lr"] for p in curve], rel=1e-6)
    assert [e.step for e in norm] == [1, 2, 3, 4] and all(math.isfinite(e.value) and e.value > 0 for e in norm)
    miou = events.Scalars("anytime_val/mIoU")
    assert [(e.step, e.value) for e in miou] == [(p["step"], pytest.approx(p["mIoU"], rel=1e-6)) for p in anytime]
    assert [e.step for e in miou] == [2, 4]
    assert {f"anytime_val/{k}" for k in ("oIoU", "prec@0.5", "prec@0.9")} <= set(events.Tags()["scalars"])
    assert sorted(events.Tags()["images"]) == [f"predictions/{k}" for k in range(PREDICTIONS)]
    for k in range(PREDICTIONS):
        images = events.Images(f"predictions/{k}")
        assert [e.step for e in images] == [2, 4]
        with Image.open(io.BytesIO(images[-1].encoded_image_string)) as png:
            assert png.size == (images[-1].width, images[-1].height) and png.width >= 64


def test_logging_leaves_the_run_unchanged(logged):
    """Same seed without --log: identical curve, anytime curve and metrics (logging draws no random number)."""
    _, _, record, other = logged
    assert other["train_info"]["curve"] == record["train_info"]["curve"]
    assert [p["mIoU"] for p in other["train_info"]["anytime"]] == [p["mIoU"] for p in record["train_info"]["anytime"]]
    assert other["results"] == {split: {**v, "eval_seconds": other["results"][split]["eval_seconds"],
                                        "images_per_second": other["results"][split]["images_per_second"]}
                                for split, v in record["results"].items()}


def test_grad_norm_is_the_norm_of_the_gradient_the_optimizer_applies(tmp_path):
    weights = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(weights, lr=0.1)
    log = TensorBoardLog(tmp_path)
    log.start(optimizer, 0)
    for grads in ([3.0, 0.0, 4.0], [0.0, 6.0, 8.0]):  # norms 5 and 10
        weights[0].grad, weights[1].grad = torch.tensor(grads[:2]), torch.tensor(grads[2:])
        optimizer.step()
    log.curve_point({"step": 2, "loss": 1.0, "lr": 0.1})
    log.close()
    assert [e.value for e in _events(tmp_path).Scalars("train/grad_norm")] == [7.5]  # mean over the point's steps


def test_missing_tensorboard_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    assert _bench(tmp_path, "--log", "tensorboard", "--log-dir", str(tmp_path / "tb")) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --log tensorboard needs the tensorboard package: pip install 'risbench[tensorboard]'"
    assert not (tmp_path / "results").exists() and not (tmp_path / "tb").exists()


def test_event_files_never_go_under_a_results_folder(tmp_path, capsys):
    assert _bench(tmp_path, "--log", "tensorboard", "--log-dir", str(tmp_path / "results" / "tb")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --log-dir {tmp_path / 'results' / 'tb'} is inside the results folder")
    assert not (tmp_path / "results").exists()
