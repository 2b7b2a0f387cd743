import math

import pytest
import torch

import benchmarks.step as step
import benchmarks.train as train
from benchmarks.per_expression import unpack
from benchmarks.store import ResultStore, RunSpec, read_record
from benchmarks.suites import load_suite
from methods import get_method

CPU = torch.device("cpu")


def smoke_spec(method="frozen", seed=0, **budget):
    suite = load_suite("smoke").replace({"pretrained": None, **budget})
    return RunSpec(suite, method, get_method(method).make_config(), lr=suite.lr, seed=seed)


def test_smoke_run_writes_a_complete_record(tmp_path):
    store = ResultStore(tmp_path)
    spec = smoke_spec("full")
    record = train.run(spec, store, device=CPU, progress=False)
    assert record == read_record(store.path_for(spec))
    info = record["run_info"]
    assert info["status"] == "ok" and info["error"] is None
    assert info["config_hash"] == spec.config_hash and info["seed"] == 0 and info["method"] == "full"
    assert record["train_info"]["steps_done"] == spec.suite.steps
    assert record["train_info"]["images_seen"] == spec.suite.steps * spec.suite.batch_size
    assert [c["step"] for c in record["train_info"]["curve"]] == [1, 2, 3]
    train_info = record["train_info"]  # smoke: 3 steps, so an anytime point at every step on the val subset
    assert [p["step"] for p in train_info["anytime"]] == [1, 2, 3]
    assert [p["images_seen"] for p in train_info["anytime"]] == [4, 8, 12]
    flops = record["cost"]["train_gflops_per_image"]
    assert [p["train_gflops"] for p in train_info["anytime"]] == [4 * flops, 8 * flops, 12 * flops]
    seconds = [p["train_seconds"] for p in train_info["anytime"]]
    assert 0 < seconds[0] < seconds[1] < seconds[2] <= train_info["train_seconds"]
    assert train_info["anytime_expressions"] == min(spec.suite.anytime_limit, spec.suite.eval_limit)
    best = max(train_info["anytime"], key=lambda p: p["mIoU"])
    assert train_info["best_anytime_step"] == best["step"]
    assert train_info["anytime"][-1]["mIoU"] == record["results"]["val"]["mIoU"]  # same weights, same expressions
    assert record["cost"]["memory_cap_gb"] is None
    val = record["results"]["val"]
    assert val["n"] == spec.suite.eval_limit
    for key in ("mIoU", "oIoU", "prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9"):
        assert 0 <= val[key] <= 100 and not math.isnan(val[key])
    rows = unpack(val["per_expression"])
    assert rows.index.tolist() == list(range(spec.suite.eval_limit))  # the suite's first expressions, in order
    assert 100 * rows.iou.mean() == val["mIoU"]
    assert set(record["baselines"]["val"]) >= {"predict_all"}
    params = record["cost"]["params"]
    assert params["trainable"] == params["total"] - 1  # all but CLIP's contrastive logit scale
    assert record["cost"]["peak_memory_train_mb"] > 0
    meta = record["meta_info"]
    assert {"git_sha", "git_dirty", "packages", "device"} <= set(meta)
    assert meta["packages"]["open_clip_torch"]


def test_same_seed_gives_identical_metrics(tmp_path):
    records = [train.run(smoke_spec(), ResultStore(tmp_path / str(i)), device=CPU, progress=False)
               for i in range(2)]
    assert _metrics(records[0]) == _metrics(records[1])
    assert [c["loss"] for c in records[0]["train_info"]["curve"]] == \
        [c["loss"] for c in records[1]["train_info"]["curve"]]


def test_nan_loss_ends_as_diverged_with_its_record(tmp_path, monkeypatch):
    real_loss = step.segmentation_loss
    monkeypatch.setattr(step, "segmentation_loss", lambda logits, mask: real_loss(logits, mask) * math.nan)
    store = ResultStore(tmp_path)
    spec = smoke_spec()
    record = train.run(spec, store, device=CPU, progress=False)
    assert record["run_info"]["status"] == "diverged" and "nan" in record["run_info"]["error"]
    assert record["train_info"]["steps_done"] == 0 and record["results"] == {}
    assert read_record(store.path_for(spec))["run_info"]["status"] == "diverged"
    assert store.is_finished(spec)  # a divergence is the budget's outcome: a sweep does not re-roll it


def test_a_memory_cap_on_cpu_is_reported_against_the_measured_peak(tmp_path):
    spec = smoke_spec(memory_cap_gb=0.001)  # 1 MiB: any process exceeds it
    cost = train.run(spec, ResultStore(tmp_path), device=CPU, progress=False)["cost"]
    assert cost["memory_cap_gb"] == 0.001 and cost["memory_cap_enforced"] is False
    assert cost["over_memory_cap"] is True and cost["peak_memory_train_mb"] > 1
    roomy = train.run(smoke_spec(memory_cap_gb=1000.0), ResultStore(tmp_path), device=CPU, progress=False)["cost"]
    assert roomy["over_memory_cap"] is False


@pytest.mark.gpu
def test_a_memory_cap_on_cuda_is_enforced_and_ends_as_oom(tmp_path):
    spec = smoke_spec("full", memory_cap_gb=0.01)  # 10 MiB: the full model's weights alone do not fit
    record = train.run(spec, ResultStore(tmp_path), device=torch.device("cuda"), progress=False)
    assert record["run_info"]["status"] == "oom" and record["cost"]["memory_cap_enforced"] is True
    assert record["results"] == {}
    free = train.run(smoke_spec("full"), ResultStore(tmp_path / "free"), device=torch.device("cuda"), progress=False)
    assert free["run_info"]["status"] == "ok"  # the cap of the previous run is lifted


@pytest.mark.parametrize("schedule,expected", [("step", [1.0, 1.0, 0.1, 0.1]), ("constant", [1.0] * 4)])
def test_learning_rate_schedule(schedule, expected):
    suite = load_suite("smoke").replace({"steps": 4, "schedule": schedule, "lr_drop_at": 0.5})
    assert [train.lr_factor(suite, s) for s in range(4)] == expected
    warm = suite.replace({"warmup_steps": 2})
    assert train.lr_factor(warm, 0) == 0.5


def _metrics(record):
    """Per-split metrics without the wall-clock fields."""
    return {split: {k: v for k, v in m.items() if k not in ("eval_seconds", "images_per_second")}
            for split, m in record["results"].items()}
