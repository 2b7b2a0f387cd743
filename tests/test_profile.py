"""The profiler: figures add up, it never disturbs a run (RNG), memory is a real measurement, and the
CLI's JSON is machine readable."""

from __future__ import annotations

import argparse
import json
import logging
import random

import numpy as np
import pytest
import torch

import benchmarks.profile as profile_module
from benchmarks.cli import add_profile_arguments
from benchmarks.profile import (
    MemoryJob,
    ProfileOptions,
    cmd_profile,
    measure_memory_in_subprocess,
    profile,
    profile_run,
    profile_suite,
    ratio_table,
)
from benchmarks.suites import load_suite
from methods import get_method, list_methods
from riscore.errors import UserError

logging.getLogger().setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def suite():
    return profile_suite(load_suite("shapes"), image_size=32, text_len=8, batch_size=2)


def rng_states():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


@pytest.mark.parametrize("method", list_methods())
def test_profile_run_parts_add_up_and_rng_is_untouched(suite, method):
    before = rng_states()
    cost = profile_run(suite, method, get_method(method).make_config())
    after = rng_states()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    parts = cost["gflops_per_image_parts"]
    assert sum(v for k, v in parts.items() if k != "total") == pytest.approx(parts["total"], rel=1e-9)
    assert parts["total"] == cost["gflops_per_image"] > 0
    assert min(parts["image_tower"], parts["text_tower"], parts["decoder"]) > 0
    if method in ("frozen", "full"):
        assert parts["method"] == 0 and cost["gflops_per_forward_fixed"] == 0
    assert cost["train_gflops_per_image"] > cost["gflops_per_image"]  # forward in train mode + backward


@pytest.mark.gpu
@pytest.mark.parametrize("method", list_methods())
def test_flops_counted_on_cuda_are_the_cpu_count_and_leave_the_cuda_rng_alone(suite, method, monkeypatch):
    """Runs and profiles on a GPU count where the model is (seconds instead of minutes at paper scale): the
    count must not depend on the device, and counting must not move the run's CUDA generator (dropout)."""
    cuda = torch.device("cuda")
    config = get_method(method).make_config()
    on_cpu = profile_run(suite, method, config)
    monkeypatch.setattr(profile_module, "_RUN_FLOPS", {})  # counted afresh, on the GPU
    before = torch.cuda.get_rng_state(cuda)
    on_cuda = profile_run(suite, method, config, cuda)
    assert torch.equal(torch.cuda.get_rng_state(cuda), before)
    assert on_cuda == on_cpu


def test_training_flops_follow_what_trains(suite):
    frozen, full = (profile_run(suite, m, get_method(m).make_config()) for m in ("frozen", "full"))
    assert frozen["gflops_per_image"] == full["gflops_per_image"]
    # full back-propagates through both towers; frozen only through the decoder
    assert full["train_gflops_per_image"] > 1.5 * frozen["train_gflops_per_image"]


def test_a_runs_flops_are_counted_once_per_process_and_each_caller_gets_a_copy(suite, monkeypatch):
    """A sweep's seeds and a resumed run reuse the count; another config or suite is counted afresh."""
    lora = get_method("lora")
    first = profile_run(suite, "lora", lora.make_config())

    def counted_again(*args):
        raise AssertionError("counted again")

    monkeypatch.setattr(profile_module, "flop_profile", counted_again)
    again = profile_run(suite, "lora", lora.make_config())
    assert again == first and again is not first
    again["gflops_per_image_parts"]["total"] = -1.0  # a caller's changes stay its own
    assert profile_run(suite, "lora", lora.make_config()) == first
    for other_suite, config in ((suite, lora.make_config({"rank": 2})), (profile_suite(suite, image_size=64),
                                                                      lora.make_config())):
        with pytest.raises(AssertionError, match="counted again"):
            profile_run(other_suite, "lora", config)


def test_sweep_rows_scale_with_size_and_batch(suite):
    options = ProfileOptions(warmup=1, repeats=1, memory=False)
    rows = profile(suite, ["full"], options, image_sizes=[32, 64], batch_sizes=[1, 3])
    assert [(r["image_size"], r["batch_size"], r["method"]) for r in rows] == [
        (s, b, "full") for s in (32, 64) for b in (1, 3)]
    by = {(r["image_size"], r["batch_size"], r["method"]): r for r in rows}
    assert by[64, 1, "full"]["gflops_per_image_parts"]["image_tower"] > \
        3 * by[32, 1, "full"]["gflops_per_image_parts"]["image_tower"]
    one, three = (by[32, b, "full"]["train_gflops_per_step"] for b in (1, 3))
    assert three == pytest.approx(3 * one)
    assert all(r["throughput"]["train_step_s"] > 0 for r in rows)
    ratios = ratio_table(rows)
    assert (ratios[ratios.method == "full"].filter(like="xfull") == 1).all().all()


def test_memory_is_measured_in_a_fresh_process(suite):
    """Full fine-tuning must show grads and AdamW state above the post-build baseline, never zero."""
    job = MemoryJob(suite, "full", get_method("full").make_config(), "train", "cpu", warmup=1, threads=1)
    got = measure_memory_in_subprocess(job)
    assert got["kind"] == "cpu_subprocess_peak_rss"
    trainable_mb = 6.7e6 * 4 / 2**20  # the tiny model's parameters, in fp32
    assert got["baseline_mb"] > trainable_mb
    if got["peak_since_build"]:
        assert got["peak_mb"] - got["baseline_mb"] > 2 * trainable_mb  # gradient + two Adam moments


def run_cli(argv, capsys):
    parser = argparse.ArgumentParser()
    add_profile_arguments(parser)
    code = cmd_profile(parser.parse_args(argv))
    return code, capsys.readouterr().out


def test_cli_json_is_the_only_stdout(tmp_path, capsys):
    out = tmp_path / "cost.json"
    code, stdout = run_cli(["--method", "frozen", "--image-size", "32", "--text-len", "8", "--flops-only",
                            "--json", "--out", str(out)], capsys)
    document = json.loads(stdout)
    assert code == 0 and json.loads(out.read_text()) == document
    assert "2 x multiply-adds" in document["flop_convention"]
    (row,) = document["rows"]
    assert (row["method"], row["image_size"], row["text_len"], row["weights"]) == ("frozen", 32, 8, "random")
    assert row["params"]["trainable"] < row["params"]["total"]


def test_cli_rejects_bad_sweep(capsys):
    with pytest.raises(UserError, match="--sweep-batch-size"):
        run_cli(["--method", "frozen", "--flops-only", "--sweep-batch-size", "8,x"], capsys)


def test_cli_rejects_an_unknown_precision_before_building_models(capsys, no_model_built):
    with pytest.raises(UserError, match="precision must be one of fp32, bf16.*got 'fp8'"):
        run_cli(["--method", "frozen", "--sweep-precision", "bf16,fp8"], capsys)


def test_precision_sweep_gives_a_row_per_precision(suite):
    """Models and FLOPs are shared; on CPU every precision runs (and is labelled) fp32."""
    rows = profile(suite, ["frozen"], ProfileOptions(warmup=1, repeats=1, memory=False), precisions=["fp32", "bf16"])
    assert [(r["method"], r["precision"]) for r in rows] == [("frozen", "fp32"), ("frozen", "fp32")]
    assert rows[0]["gflops_per_image"] == rows[1]["gflops_per_image"]


def test_cli_set_gives_each_method_its_options_and_prints_the_paper_ratio(capsys):
    """`--set width=...` reaches the Bridger only (lora has no width); the paper's ratio (added / image tower at
    224 px) is printed as the paper prints it (paper-vitb16 with width=128 gives 1.61%: tests/test_etris_model.py)."""
    argv = ["--method", "bridger", "--method", "lora", "--image-size", "32", "--text-len", "8", "--flops-only"]
    code, stdout = run_cli([*argv, "--set", "width=8", "--json"], capsys)
    rows = {r["method"]: r for r in json.loads(stdout)["rows"]}
    bridger = rows["bridger"]["params"]
    assert code == 0 and bridger["added"] < 20_000  # width 8, not the default 64
    assert bridger["ratio_paper"] == bridger["added"] / bridger["image_tower_224"]
    assert rows["lora"]["params"]["added"] > 0
    code, stdout = run_cli([*argv[:2], *argv[4:], "--set", "width=8"], capsys)
    assert code == 0 and "paper ratio" in stdout and f"{100 * bridger['ratio_paper']:.2f}%" in stdout
    with pytest.raises(UserError, match="--set rank: no profiled method"):
        run_cli(["--method", "bridger", "--flops-only", "--set", "rank=4"], capsys)
