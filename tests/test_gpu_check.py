"""The GPU check script: its tiny mode runs every stage through the real CLI on CPU and writes what the GPU run
will write; its deadline, stage selection and fp16 fallback are checked without running anything heavy."""

import json
import os
import signal
import time

import numpy as np
import pytest

from benchmarks import gpu_check
from benchmarks.data.refcoco import RefCOCODataset
from benchmarks.data.synthetic_refer import COLOURS, write_synthetic_refer
from benchmarks.suites import PRECISIONS


@pytest.mark.processes
def test_tiny_check_writes_the_profile_document_records_and_summary(tmp_path, monkeypatch, capsys):
    """Every stage through real CLI subprocesses (bridger alone benched: each process start costs seconds)."""
    monkeypatch.setattr(gpu_check, "BENCH_METHODS", ("bridger",))
    assert gpu_check.main(["--tiny", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / f"{gpu_check.SUITE}-cpu.json").read_text())
    assert document["suite"] == gpu_check.SUITE and document["environment"]["device_type"] == "cpu"
    precisions = [p for p in gpu_check.PRECISIONS if p in PRECISIONS]  # fp16 once the suites know it
    assert len(document["rows"]) == len(precisions)  # one method (bridger), one row per precision profiled
    for row in document["rows"]:
        assert (row["method"], row["batch_size"], row["image_size"]) == ("bridger", 4, 64)
        assert row["throughput"]["train_images_per_s"] > 0 and row["gflops_per_image"] > 0
        memory = row["memory"]  # measured by two subprocesses at a time
        assert memory["train_peak_mb"] >= memory["train_baseline_mb"] > 0
        assert memory["infer_peak_mb"] >= memory["infer_baseline_mb"] > 0
    summary = json.loads((tmp_path / "gpu-check" / "summary.json").read_text())
    stages = {s["stage"]: s for s in summary["stages"]}
    assert list(stages) == ["profile", "data", "bench bridger"]
    assert all(s["status"] == "ok" for s in stages.values()), stages
    assert stages["profile"]["precisions"] == precisions
    if "fp16" not in PRECISIONS:
        assert "precision must be one of" in stages["profile"]["fp16_skipped"]
    assert summary["environment"]["device_type"] == "cpu" and summary["tiny"] is True
    for method in gpu_check.BENCH_METHODS:
        record = json.loads((tmp_path / "gpu-check" / f"bench-{method}.json").read_text())
        info = record["run_info"]
        assert (info["method"], info["suite"], info["status"]) == (method, gpu_check.SUITE, "ok")
        assert info["config"]["suite"]["dataset"] == "refcoco" and info["config"]["suite"]["pretrained"] is None
        assert record["train_info"]["steps_done"] == 3 == stages[f"bench {method}"]["steps_done"]
        assert record["meta_info"]["device"] == summary["environment"]["device"]
    assert "bench bridger" in capsys.readouterr().out  # the closing table


def _fake_stages(monkeypatch, answers):
    """run_stage replaced: records each argv and answers in turn."""
    calls = []

    def fake(name, argv, clock, env=None, reserve=0.0):
        calls.append((name, list(argv), reserve))
        return {"stage": name, "seconds": 0.0, **answers.pop(0)}

    monkeypatch.setattr(gpu_check, "run_stage", fake)
    return calls


def test_profile_falls_back_to_bf16_when_the_suites_do_not_know_fp16(tmp_path, monkeypatch):
    refusal = "error: suite 'paper-vitb16': precision must be one of fp32, bf16, got 'fp16'"
    calls = _fake_stages(monkeypatch, [{"status": "failed", "error": refusal}, {"status": "ok", "error": None}])
    result = gpu_check.profile_stage(gpu_check.REAL, "paper-vitb16", "cpu", tmp_path, gpu_check.Clock(60), 30.0)
    assert [argv[argv.index("--sweep-precision") + 1] for _, argv, _ in calls] == ["bf16,fp16", "bf16"]
    assert all(reserve == 30.0 for *_, reserve in calls)
    assert result["status"] == "ok" and result["precisions"] == ["bf16"] and result["fp16_skipped"] == refusal
    argv = calls[0][1]
    assert argv[argv.index("--batch-size") + 1] == "32" and argv[argv.index("--image-size") + 1] == "416"
    assert argv[argv.index("--out") + 1] == str(tmp_path / "paper-vitb16-cpu.json")


def test_other_profile_failures_are_reported_not_retried(tmp_path, monkeypatch):
    calls = _fake_stages(monkeypatch, [{"status": "failed", "error": "RuntimeError: CUDA error"}])
    result = gpu_check.profile_stage(gpu_check.REAL, "paper-vitb16", "cpu", tmp_path, gpu_check.Clock(60), 0.0)
    assert len(calls) == 1 and result["status"] == "failed" and "document" not in result


def test_a_spent_deadline_skips_the_stage():
    result = gpu_check.run_stage("bench full", ["bench"], gpu_check.Clock(10), reserve=20)
    assert result["status"] == "skipped" and result["error"] == "no time left"


def test_a_stage_streams_its_errors_and_keeps_the_last_line(capfd):
    result = gpu_check.run_stage("bench", ["bench", "--method", "lorax"], gpu_check.Clock(120))
    assert result["status"] == "failed" and result["exit_code"] == 2
    assert result["error"].startswith("error:") and "lorax" in result["error"]
    assert result["error"] in capfd.readouterr().err  # copied to ours as it came


def fake_cli(folder, code: str) -> None:
    """`python -m benchmarks` run from `folder` (the cwd comes first on sys.path) runs `code`."""
    package = folder / "benchmarks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(code)


SLOW_CLI = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]{pipes})
open("child.pid", "w").write(str(child.pid))
print("working on it", file=sys.stderr, flush=True)
time.sleep(60)
"""


def _alive(pid: int, within: float = 0.0) -> bool:
    """Whether `pid` still runs after up to `within` seconds (a SIGKILL is delivered, not waited for)."""
    deadline = time.monotonic() + within
    while True:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split()[2] == "Z":  # a zombie is dead
                    return False
        except FileNotFoundError:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.1)


@pytest.mark.parametrize("pipes", ["", ", stdout=subprocess.PIPE, stderr=subprocess.PIPE"],
                         ids=["inherits-stderr", "own-pipes"])
def test_a_stage_past_its_time_ends_with_everything_it_started(tmp_path, monkeypatch, capfd, pipes):
    """Like profile's memory workers (own pipes) or bench's data loaders (our stderr): a stage cut short must not
    leave them running into the next stage, and what it printed before is kept."""
    fake_cli(tmp_path, SLOW_CLI.format(pipes=pipes))
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    result = gpu_check.run_stage("profile", ["profile"], gpu_check.Clock(3.0))
    took = time.monotonic() - started
    pid = int((tmp_path / "child.pid").read_text())
    try:
        assert result["status"] == "timeout" and took < 8
        assert "working on it" in capfd.readouterr().err
        assert not _alive(pid, within=10)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


NOISY_CLI = """
import sys
sys.stderr.buffer.write(b"progress: 50\\xb5s per step\\n")  # not UTF-8 (a latin-1 micro sign)
sys.stderr.flush()
for i in range(2000):  # ~200 KB: more than a pipe holds
    print("line", i, "." * 90, file=sys.stderr)
print("done", file=sys.stderr)
"""


def test_a_stage_that_writes_bytes_that_are_not_utf8_still_ends_ok(tmp_path, monkeypatch, capfd):
    fake_cli(tmp_path, NOISY_CLI)
    monkeypatch.chdir(tmp_path)
    result = gpu_check.run_stage("bench", ["bench"], gpu_check.Clock(20.0))
    assert result["status"] == "ok", result
    assert "done" in capfd.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [(["--stages", "bench,train"], "--stages"),
                                               (["--stages", "bench,,profile"], "--stages"),
                                               (["--seconds", "0"], "--seconds")])
def test_bad_options_are_one_line_exit_2(tmp_path, argv, message, capsys):
    assert gpu_check.main(["--tiny", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_synthetic_refer_data_loads_with_the_boxes_as_masks(tmp_path):
    counts = write_synthetic_refer(tmp_path, images=12, height=48, width=64, seed=3)
    assert set(counts) == {"train", "val", "testA", "testB"} and counts["train"] > counts["val"] > 0
    for split, n in counts.items():
        dataset = RefCOCODataset("refcoco", split, tmp_path, 32)
        assert len(dataset) == n
    item = RefCOCODataset("refcoco", "train", tmp_path, 32)[0]
    colour = next(c for c in COLOURS if c in item["text"])
    mask = item["orig_mask"].numpy()
    assert item["orig_mask"].shape == (48, 64) and 48 * 64 // 36 <= mask.sum() <= 48 * 64 // 9 + 64
    rows, cols = np.nonzero(mask)  # the box's pixels are its colour where the later box does not cover them
    assert mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a filled rectangle
    assert colour in ("red", "green", "blue", "yellow")
