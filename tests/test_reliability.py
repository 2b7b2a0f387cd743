"""No run is ever stuck and resume is exact: unusable checkpoints, interrupts mid-step or while FLOPs are
counted, signals during start-up, write failures, orphaned temporary files, two identical runs at once."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from child_processes import running

import benchmarks.step as step_module
import benchmarks.train as train
from benchmarks.cli import main
from benchmarks.store import ResultStore, read_record

REPO = Path(__file__).resolve().parent.parent


def bench_args(root: Path, *extra: str, method: str = "lora", steps: int = 6) -> list[str]:
    return ["bench", "--method", method, "--suite", "smoke", "--budget", "pretrained=none", "--budget",
            f"steps={steps}", "--allow-budget-override", "--checkpoint-every", "2", "--threads", "1", "--no-progress",
            "--out", str(root / "results"), "--checkpoint-dir", str(root / "ckpt"), *extra]


def records(root: Path) -> list[dict]:
    return [read_record(p) for p in (root / "results").rglob("*.json")]


def comparable(record: dict) -> tuple:
    metrics = {s: {k: v for k, v in m.items() if k not in ("eval_seconds", "images_per_second")}
               for s, m in record["results"].items()}
    return metrics, [(c["step"], c["loss"]) for c in record["train_info"]["curve"]]


def interrupt_at_step(monkeypatch, step: int, *, mid_step: bool) -> None:
    """Deliver SIGTERM to this process during training step `step`: mid-step (after its forward pass drew the
    dropout masks, before the update) or, with mid_step False, just before it starts."""
    real_loss, real_step, calls = step_module.segmentation_loss, train.training_step, {"loss": 0, "step": 0}

    def loss(*args):
        calls["loss"] += 1
        if mid_step and calls["loss"] == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args)

    def training_step(*args):
        calls["step"] += 1
        if not mid_step and calls["step"] == step:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(step_module, "segmentation_loss", loss)
    monkeypatch.setattr(train, "training_step", training_step)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """An uninterrupted lora run with dropout 0.5 (masks drawn every step: any RNG slip shows in the curve)."""
    root = tmp_path_factory.mktemp("reference")
    assert main(bench_args(root, "--set", "dropout=0.5", "--budget", "log_every=1")) == 0
    return records(root)[0]


@pytest.mark.processes
def test_an_interrupt_mid_step_checkpoints_the_last_whole_step_and_resumes_exactly(tmp_path, monkeypatch, capsys,
                                                                                   reference):
    """Before, the interrupt checkpoint held step 2's weights with step 3's RNG (its dropout masks drawn)."""
    args = bench_args(tmp_path, "--set", "dropout=0.5", "--budget", "log_every=1")
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 3, mid_step=True)
        assert main(args) == 130
    assert records(tmp_path)[0]["run_info"]["status"] == "interrupted"
    assert records(tmp_path)[0]["train_info"]["steps_done"] == 3  # the interrupted step ran to its end
    capsys.readouterr()
    assert main(args) == 0
    assert "resuming lora seed 0 from step 3" in capsys.readouterr().err
    assert comparable(records(tmp_path)[0]) == comparable(reference)


@pytest.mark.parametrize("damage", ["truncate safetensors", "truncate pt", "pointer to a missing step",
                                    "wrong tensor shape"])
@pytest.mark.processes
def test_an_unusable_checkpoint_is_reported_once_and_the_run_restarts(tmp_path, monkeypatch, capsys, damage,
                                                                      reference):
    """Before, each of these made every retry a `failed` record (exit 1) until the folder was deleted by hand."""
    args = bench_args(tmp_path, "--set", "dropout=0.5", "--budget", "log_every=1")
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 4, mid_step=False)
        assert main(args) == 130
    folder = next((tmp_path / "ckpt").rglob("latest.json")).parent
    assert json.loads((folder / "latest.json").read_text())["step"] == 3
    if damage.startswith("truncate"):
        path = folder / f"step-3.{damage.split()[1]}"
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    elif damage == "pointer to a missing step":
        pointer = json.loads((folder / "latest.json").read_text())
        (folder / "latest.json").write_text(json.dumps({**pointer, "step": 5}))
    else:
        from safetensors.torch import load_file, save_file

        weights = load_file(folder / "step-3.safetensors")
        key = next(iter(weights))
        save_file({**weights, key: weights[key].flatten()[:1].clone()}, folder / "step-3.safetensors")
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: checkpoint")]
    assert len(warnings) == 1 and "starting the run afresh" in warnings[0], err
    assert "Traceback" not in err
    record = records(tmp_path)[0]
    assert record["run_info"]["status"] == "ok" and comparable(record) == comparable(reference)


def test_an_interrupt_while_flops_are_counted_is_recorded_and_resumes(tmp_path, monkeypatch, capsys):
    """Before, the exit said "recorded in <path>" but no record was written."""
    real = train.profile_run

    def interrupted(*args):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(train, "profile_run", interrupted)
    assert main(bench_args(tmp_path, steps=2)) == 130
    err = capsys.readouterr().err
    [record] = records(tmp_path)
    assert record["run_info"]["status"] == "interrupted" and "recorded in" in err
    monkeypatch.setattr(train, "profile_run", real)
    assert main(bench_args(tmp_path, steps=2)) == 0
    assert "resuming lora seed 0 from step 2" in capsys.readouterr().err
    [record] = records(tmp_path)
    assert record["run_info"]["status"] == "ok" and record["cost"]["gflops_per_image"] > 0


@pytest.mark.processes
@pytest.mark.parametrize("delay", [0.4, 1.0, 1.8])
def test_sigterm_during_start_up_exits_130(tmp_path, delay):
    """Before, a SIGTERM before the run's own handler ended the process by the signal (-15); one landing inside
    torch's import (C++ calling Python) aborted it (SIGABRT, -6)."""
    command = [sys.executable, "-m", "benchmarks", *bench_args(tmp_path)]
    with running(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as [proc]:
        time.sleep(delay)  # in start-up (imports, suite checks): a run takes several seconds more to begin training
        assert not records(tmp_path) and not list(tmp_path.rglob("latest.json"))
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().startswith("interrupted")
    assert not records(tmp_path)


@pytest.mark.processes
def test_a_write_failure_is_one_clear_error_and_leaves_no_partial_file(tmp_path):
    """`ulimit -f 64`: before, a traceback and a `failed` record."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run([sys.executable, "-m", "benchmarks", *bench_args(tmp_path, steps=4)], cwd=REPO,
                          capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write ") and "File too large" in lines[0]
    assert not records(tmp_path)
    assert not [p for p in tmp_path.rglob("*.tmp")]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_orphaned_temporary_files_are_removed_when_the_store_opens(tmp_path):
    """A kill between writing a record's temporary file and renaming it left the file for good."""
    import socket

    folder = tmp_path / "smoke" / "lora"
    folder.mkdir(parents=True)
    host = socket.gethostname()
    orphan = folder / f".abc-seed0.json~{host}~{dead_pid()}~x1.tmp"
    in_progress = folder / f".abc-seed1.json~{host}~{os.getpid()}~x2.tmp"  # a live writer's: kept
    old_style = folder / ".abc-seed2.json.x3.tmp"
    for path in (orphan, in_progress, old_style):
        path.write_text("{")
    os.utime(old_style, (time.time() - 7200, time.time() - 7200))
    ResultStore(tmp_path)
    assert not orphan.exists() and not old_style.exists() and in_progress.exists()


@pytest.mark.processes
def test_a_second_identical_run_waits_for_the_first_then_finds_its_record(tmp_path):
    """Before, two identical benches both trained the whole run."""
    from benchmarks.cli import build_parser, resolve_spec
    from benchmarks.lock import run_lock

    store_root = tmp_path / "results"
    args = bench_args(tmp_path, steps=2)

    path = ResultStore(store_root).path_for(resolve_spec(build_parser().parse_args(args)))
    command = [sys.executable, "-m", "benchmarks", *args]
    with contextlib.ExitStack() as cleanup:  # the second run is started once the lock is held, ended at the end
        with run_lock(path):  # this process plays the first run
            [proc] = cleanup.enter_context(running(command, cwd=REPO, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.PIPE, text=True))
            said = proc.stderr.readline()  # blocks until the second run speaks: it found the lock taken
            assert "is in progress in " in said and "waiting for it to finish" in said, said
            time.sleep(1.0)
            assert proc.poll() is None  # still waiting
            assert not records(tmp_path) and not (tmp_path / "ckpt").exists()  # and did no work
        err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 0 and records(tmp_path)[0]["run_info"]["status"] == "ok", err


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, capsys):
    from benchmarks.lock import lock_path, run_lock

    record = tmp_path / "run.json"
    hold = [sys.executable, "-c", "import sys, time; from benchmarks.lock import run_lock\n"
            f"with run_lock(__import__('pathlib').Path({str(record)!r})):\n"
            "    print('held', flush=True); time.sleep(600)"]
    with running(hold, cwd=REPO, stdout=subprocess.PIPE, text=True) as [holder]:
        assert holder.stdout.readline().strip() == "held"
        holder.kill()
        holder.wait()
    assert lock_path(record).exists()  # left behind by the kill
    probe = os.open(lock_path(record), os.O_RDWR)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError, not a hang, if still held
    finally:
        os.close(probe)
    capsys.readouterr()
    with run_lock(record):
        assert "waiting" not in capsys.readouterr().err  # taken at once: the kernel released the dead holder's lock
    assert not lock_path(record).exists()


def test_report_skips_a_record_with_a_wrong_typed_field(tmp_path, capsys):
    """Before, `run_info.lr = "abc"` was a ValueError traceback that stopped the whole report."""
    from test_report import make_record, write

    write(tmp_path / "results", make_record("frozen", seed=0, lr=1e-3, miou=10.0), "good")
    bad = make_record("lora", seed=0, lr=1e-3, miou=12.0)
    bad["run_info"]["lr"] = "abc"
    write(tmp_path / "results", bad, "bad")
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "reports")]) == 0
    err = capsys.readouterr().err
    assert "skipping" in err and "bad-seed0.json" in err and "Traceback" not in err
    assert "frozen" in (tmp_path / "reports" / "fixture" / "leaderboard.md").read_text()
