"""Checkpoint and resume: a run killed (SIGKILL) or stopped (SIGTERM) and restarted ends as if never stopped."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from child_processes import running

from benchmarks.cli import main
from benchmarks.store import read_record

REPO = Path(__file__).resolve().parent.parent
# Long enough that a run stopped at step 10 has most of its training, evaluations and checkpoints ahead of it
STEPS = 30


def bench_args(tmp_path: Path, name: str) -> list[str]:
    return ["bench", "--method", "frozen", "--suite", "smoke", "--budget", "pretrained=none",
            "--budget", f"steps={STEPS}", "--budget", "log_every=5", "--allow-budget-override",
            "--checkpoint-every", "5", "--threads", "1", "--no-progress",
            "--out", str(tmp_path / name / "results"), "--checkpoint-dir", str(tmp_path / name / "ckpt")]


def only_record(root: Path) -> dict:
    files = list((root / "results").rglob("*.json"))
    assert len(files) == 1, files
    return read_record(files[0])


def checkpoint_step(root: Path) -> int:
    pointers = list((root / "ckpt").rglob("latest.json"))
    return json.loads(pointers[0].read_text())["step"] if pointers else 0


def start_and_stop_at(tmp_path: Path, name: str, step: int, sig: int) -> subprocess.Popen:
    """The run, sent `sig` once it has checkpointed `step`, and ended (killed if a check fails first)."""
    command = [sys.executable, "-m", "benchmarks", *bench_args(tmp_path, name)]
    with running(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as [proc]:
        deadline = time.monotonic() + 300  # a bound against hanging, not a speed check
        while checkpoint_step(tmp_path / name) < step:
            assert proc.poll() is None, f"run ended before step {step}: {proc.stderr.read().decode()[-500:]}"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(sig)
        proc.wait(timeout=120)
    return proc


def comparable(record: dict) -> tuple:
    metrics = {s: {k: v for k, v in m.items() if k not in ("eval_seconds", "images_per_second")}
               for s, m in record["results"].items()}
    losses = [(c["step"], c["loss"]) for c in record["train_info"]["curve"]]
    anytime = [(p["step"], p["images_seen"], p["mIoU"]) for p in record["train_info"]["anytime"]]
    return metrics, losses, anytime


@pytest.mark.processes
def test_sigkill_then_resume_gives_the_uninterrupted_result(tmp_path):
    assert main(bench_args(tmp_path, "reference")) == 0
    reference = only_record(tmp_path / "reference")

    proc = start_and_stop_at(tmp_path, "killed", 10, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not list((tmp_path / "killed" / "results").rglob("*.json"))  # nothing half-written
    assert main(bench_args(tmp_path, "killed")) == 0
    resumed = only_record(tmp_path / "killed")
    assert resumed["run_info"]["status"] == "ok"
    assert comparable(resumed) == comparable(reference)
    every = STEPS // 10  # the smoke suite's anytime evaluations: points before the kill kept
    assert [p["step"] for p in resumed["train_info"]["anytime"]] == list(range(every, STEPS + 1, every))
    assert not list((tmp_path / "killed" / "ckpt").rglob("*.safetensors"))  # cleaned up once recorded


@pytest.mark.processes
def test_sigterm_records_interrupted_then_resumes(tmp_path):
    proc = start_and_stop_at(tmp_path, "stopped", 5, signal.SIGTERM)
    assert proc.returncode == 130
    record = only_record(tmp_path / "stopped")
    assert record["run_info"]["status"] == "interrupted"
    assert checkpoint_step(tmp_path / "stopped") >= 5
    assert main(bench_args(tmp_path, "stopped")) == 0
    assert only_record(tmp_path / "stopped")["run_info"]["status"] == "ok"


def test_a_checkpoint_from_other_code_is_not_resumed(tmp_path):
    from model_helpers import build

    from benchmarks.checkpoint import Checkpointer

    model = build()
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    Checkpointer(tmp_path, "hash", code_version="abc").save(5, model, optimizer, scheduler, {"step": 5})
    assert Checkpointer(tmp_path, "hash", code_version="abc").latest_step() == 5
    assert Checkpointer(tmp_path, "hash", code_version="def").latest_step() is None
    assert Checkpointer(tmp_path, "other-hash", code_version="abc").latest_step() is None
