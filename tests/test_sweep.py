"""Sweep planning: equal learning-rate search, sharding, and resuming without repeating finished runs."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.errors import UserError
from benchmarks.store import SCHEMA_VERSION, ResultStore
from benchmarks.suites import load_suite
from benchmarks.sweep import Shard, chosen_lr, plan, run_sweep
from methods import get_method

REPO = Path(__file__).resolve().parent.parent
SUITE = load_suite("smoke").replace({"pretrained": None, "lr_grid": (1e-3, 3e-3), "seeds": (0, 1)})
METHODS = ["frozen", "lora"]
CONFIGS = {m: get_method(m).make_config() for m in METHODS}


def fake_record(status="ok", val=None):
    return {"schema_version": SCHEMA_VERSION, "run_info": {"status": status, "config_hash": None},
            "train_info": {}, "results": {"val": {"mIoU": val}} if val is not None else {}, "cost": {},
            "meta_info": {}}


def write(store, job, **kwargs):
    record = fake_record(**kwargs)
    record["run_info"]["config_hash"] = job.config_hash
    store.write(job, record)


def test_search_waits_for_every_rate_then_picks_the_best_validation_miou(tmp_path):
    store = ResultStore(tmp_path)
    phase1, phase2, waiting = plan(store, SUITE, METHODS, SUITE.seeds, CONFIGS)
    assert [(j.method, j.lr, j.seed) for j in phase1] == [
        ("frozen", 1e-3, 0), ("frozen", 3e-3, 0), ("lora", 1e-3, 0), ("lora", 3e-3, 0)]
    assert phase2 == [] and waiting == METHODS
    write(store, phase1[0], val=40.0)
    assert chosen_lr(store, SUITE, "frozen", CONFIGS["frozen"]) is None  # 3e-3 not run yet
    write(store, phase1[1], val=55.0)
    write(store, phase1[2], status="diverged")
    write(store, phase1[3], val=20.0)
    _, phase2, waiting = plan(store, SUITE, METHODS, SUITE.seeds, CONFIGS)
    assert waiting == []
    assert [(j.method, j.lr, j.seed) for j in phase2] == [
        ("frozen", 3e-3, 0), ("frozen", 3e-3, 1), ("lora", 3e-3, 0), ("lora", 3e-3, 1)]


def test_shards_partition_the_jobs():
    phase1, _, _ = plan(ResultStore("/nonexistent"), SUITE, METHODS, SUITE.seeds, CONFIGS)
    shards = [Shard.parse(f"{i}/3").take(phase1) for i in range(3)]
    assert sorted(j.config_hash for s in shards for j in s) == sorted(j.config_hash for j in phase1)
    assert sum(len(s) for s in shards) == len(phase1)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(UserError, match="--shard"):
            Shard.parse(bad)


def test_killed_sweep_restarts_without_repeating_finished_runs(tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, "-m", "benchmarks", "sweep", "--suite", "smoke", "--method", "frozen",
               "--method", "lora", "--budget", "pretrained=none", "--budget", "lr_grid=0.001,0.003",
               "--budget", "seeds=0,1", "--allow-budget-override", "--threads", "1",
               "--out", str(out), "--checkpoint-dir", str(tmp_path / "ckpt")]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(out.rglob("*.json"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    done_before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    counts = run_sweep(SUITE, methods=METHODS, store=ResultStore(out), device=torch.device("cpu"),
                       checkpoint_root=tmp_path / "ckpt")
    assert counts["skipped"] >= len(done_before) and counts["not ok"] == 0
    records = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    assert len(records) == 6  # 2 methods x (2 search rates + 1 more seed)
    assert all(r["run_info"]["status"] == "ok" for r in records)
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items())  # finished runs not repeated
