"""Sweep planning: equal learning-rate search, sharding, and resuming without repeating finished runs."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from child_processes import exit_code, running

from benchmarks.checkpoint import Checkpointer
from benchmarks.paper_tables import get_table, run_tables, table_entries
from benchmarks.store import SCHEMA_VERSION, ResultStore, read_record
from benchmarks.suites import load_suite
from benchmarks.sweep import Shard, chosen_lr, method_entries, plan, run_sweep
from riscore.errors import UserError

REPO = Path(__file__).resolve().parent.parent
# A bound against hanging, not a speed check: start-up and a few steps take minutes on a busy machine.
SAFETY_SECONDS = 300
SUITE = load_suite("smoke").replace({"pretrained": None, "lr_grid": (1e-3, 3e-3), "seeds": (0, 1)})
METHODS = ["frozen", "lora"]
ENTRIES = method_entries(SUITE, METHODS)


def fake_record(status="ok", val=None):
    return {"schema_version": SCHEMA_VERSION,
            "run_info": {"suite": "smoke", "method": "full", "seed": 0, "lr": 1e-3, "status": status,
                         "config_hash": "0" * 64},
            "train_info": {}, "results": {"val": {"mIoU": val, "oIoU": val, "n": 8}} if val is not None else {},
            "cost": {},
            "meta_info": {}}


def write(store, job, **kwargs):
    record = fake_record(**kwargs)
    record["run_info"]["config_hash"] = job.config_hash
    store.write(job, record)


def test_search_waits_for_every_rate_then_picks_the_best_validation_miou(tmp_path):
    store = ResultStore(tmp_path)
    phase1, phase2, waiting = plan(store, ENTRIES)
    assert [(j.method, j.lr, j.seed) for j in phase1] == [
        ("frozen", 1e-3, 0), ("frozen", 3e-3, 0), ("lora", 1e-3, 0), ("lora", 3e-3, 0)]
    assert phase2 == [] and waiting == METHODS
    write(store, phase1[0], val=40.0)
    assert chosen_lr(store, SUITE, "frozen", ENTRIES[0].config) is None  # 3e-3 not run yet
    write(store, phase1[1], val=55.0)
    write(store, phase1[2], status="diverged")
    write(store, phase1[3], val=20.0)
    _, phase2, waiting = plan(store, ENTRIES)
    assert waiting == []
    assert [(j.method, j.lr, j.seed) for j in phase2] == [("frozen", 3e-3, 1), ("lora", 3e-3, 1)]  # seed 0 searched


def test_shards_partition_the_jobs():
    phase1, _, _ = plan(ResultStore("/nonexistent"), ENTRIES)
    shards = [Shard.parse(f"{i}/3").take(phase1) for i in range(3)]
    assert sorted(j.config_hash for s in shards for j in s) == sorted(j.config_hash for j in phase1)
    assert sum(len(s) for s in shards) == len(phase1)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(UserError, match="--shard"):
            Shard.parse(bad)


def wait_until_gone(group: int, seconds: float = 120) -> None:
    """Until no process of the process group `group` is left (a sweep started in a session of its own)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"processes of group {group} still running"
        time.sleep(0.05)


def tiny_suite_file(folder: Path, **changed: str) -> Path:
    """The smoke suite with these keys changed (TOML values), written as a suite file."""
    smoke = (REPO / "benchmarks/suites/smoke.toml").read_text()
    lines = [line for line in smoke.splitlines() if line.split(" = ")[0] not in {*changed, "pretrained"}]
    suite_file = folder / "tiny-sweep.toml"
    suite_file.write_text("\n".join([*lines, *(f"{k} = {v}" for k, v in changed.items())]) + "\n")
    return suite_file


@pytest.mark.processes
def test_killed_sweep_restarts_without_repeating_finished_runs(tmp_path):
    """Killed with SIGKILL: its workers, told by the kernel that their parent died, record and stop."""
    out = tmp_path / "results"
    command = [sys.executable, "-m", "benchmarks", "sweep", "--suite", "smoke", "--method", "frozen",
               "--method", "lora", "--budget", "pretrained=none", "--budget", "lr_grid=0.001,0.003",
               "--budget", "seeds=0,1", "--allow-budget-override", "--threads", "1", "--jobs", "2",
               "--out", str(out), "--checkpoint-dir", str(tmp_path / "ckpt")]
    with running(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as [proc]:
        deadline = time.monotonic() + SAFETY_SECONDS
        while len(list(out.rglob("*.json"))) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.kill()  # the sweep alone: its workers must notice and stop by themselves
        proc.wait()
        wait_until_gone(proc.pid)
    done_before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json") if read_record(p)["run_info"]["status"] == "ok"}
    counts = run_sweep(SUITE, methods=METHODS, store=ResultStore(out), device=torch.device("cpu"),
                       checkpoint_root=tmp_path / "ckpt")
    assert counts["skipped"] >= len(done_before) and counts["not ok"] == 0
    records = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    assert len(records) == 6  # 2 methods x (2 search rates + 1 more seed)
    assert all(r["run_info"]["status"] == "ok" for r in records)
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items())  # finished runs not repeated


@pytest.mark.processes
def test_concurrent_shards_write_every_record_once_and_leave_nothing_to_redo(tmp_path):
    """Four shard processes on one results folder, as a Slurm array or `&` would start them."""
    suite_file = tiny_suite_file(tmp_path, steps="2", batch_size="2", eval_limit="2", lr_grid="[1e-3, 3e-3]",
                                 seeds="[0, 1]")
    out = tmp_path / "results"
    command = [sys.executable, "-m", "benchmarks", "sweep", "--suite", str(suite_file), "--method", "frozen",
               "--method", "lora", "--out", str(out), "--checkpoint-dir", str(tmp_path / "ckpt"), "--threads", "1",
               "--no-progress"]

    shards = [[*command, "--shard", f"{i}/4"] for i in range(4)]
    ran = []  # every shard names each run it starts: "[shard i/n] method lr=.. seed=.. -> path"
    with running(*shards, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as procs:
        deadline = time.monotonic() + SAFETY_SECONDS
        for proc in procs:
            output = proc.communicate(timeout=max(deadline - time.monotonic(), 1))[0]
            assert proc.returncode == 0, output
            ran += [Path(line.split(" -> ")[1]) for line in output.splitlines() if line.startswith("[shard ")]
    suite, store = load_suite(str(suite_file)), ResultStore(out)
    phase1, _, _ = plan(store, method_entries(suite, METHODS))
    _, phase2, waiting = plan(store, method_entries(suite, METHODS))
    expected = {store.path_for(job) for job in phase1 + phase2}
    assert waiting == [] and len(expected) == 6  # every search ran: 2 methods x (2 rates + 1 more seed)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert sorted(ran) == sorted(files)  # no run twice, by two shards or by one
    assert {store.path_for(job) for job in phase1} <= set(files) <= expected  # and no temporary file left
    assert all(read_record(p)["run_info"]["status"] == "ok" for p in files)
    # A shard whose search run ended before another shard's leaves that method's second seed waiting (the
    # shard that owns it may already have planned): the next invocation runs exactly what is missing, once.
    sweep = functools.partial(run_sweep, suite, methods=METHODS, store=store, device=torch.device("cpu"),
                              checkpoint_root=tmp_path / "ckpt")
    assert sweep()["ok"] == len(expected) - len(files)
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted(expected)
    assert sweep() == {"skipped": 6, "ok": 0, "not ok": 0, "waiting": 0}  # each run counted once
    assert not [p for p in (tmp_path / "ckpt").rglob("*") if p.is_file()]  # checkpoints go once recorded


def test_an_ablation_point_runs_one_method_with_its_option_under_its_own_search(tmp_path):
    store = ResultStore(tmp_path / "results")
    one_seed = SUITE.replace({"steps": 2, "eval_limit": 2, "seeds": (0,), "lr_grid": (1e-3,)})
    counts = run_sweep(one_seed, methods=["lora"], store=store, device=torch.device("cpu"),
                       checkpoint_root=tmp_path / "ckpt", options={"rank": "2"})
    assert counts["ok"] == 1
    (path,) = (tmp_path / "results").rglob("*.json")
    assert read_record(path)["run_info"]["method_config"]["rank"] == 2
    default = run_sweep(one_seed, methods=["lora"], store=store, device=torch.device("cpu"),
                        checkpoint_root=tmp_path / "ckpt", dry_run=True)
    assert default["skipped"] == 0  # the default config is a different run, not the ablation point
    with pytest.raises(UserError, match="exactly one --method"):
        run_sweep(one_seed, methods=METHODS, store=store, device=torch.device("cpu"),
                  checkpoint_root=tmp_path / "ckpt", options={"rank": "2"})


def test_dry_run_lists_the_search_then_says_what_follows_and_writes_nothing(tmp_path, capsys):
    counts = run_sweep(SUITE, methods=METHODS, store=ResultStore(tmp_path / "results"), device=torch.device("cpu"),
                       checkpoint_root=tmp_path / "checkpoints", dry_run=True)
    err = capsys.readouterr().err
    assert err.count("  to run: ") == 4 and "then the seeds of frozen, lora at the rate" in err
    assert counts["to run"] == 4 and counts["skipped"] == 0
    assert "other shards" not in err
    assert not (tmp_path / "results").exists()


def test_dry_run_lists_every_run_of_the_sweep_once_with_its_status(tmp_path, capsys):
    store = ResultStore(tmp_path / "results")
    phase1, _, _ = plan(store, ENTRIES)
    for job, score in zip(phase1, (40.0, 55.0, 30.0, 20.0), strict=True):
        write(store, job, val=score)
    counts = run_sweep(SUITE, methods=METHODS, store=store, device=torch.device("cpu"),
                       checkpoint_root=tmp_path / "checkpoints", dry_run=True)
    lines = capsys.readouterr().err.splitlines()
    finished = [line for line in lines if line.startswith("finished: ")]
    to_run = [line for line in lines if line.startswith("  to run: ")]
    assert len(finished) == counts["skipped"] == 4  # the search runs, not listed again in phase 2
    assert [line.split(" -> ")[0] for line in to_run] == ["  to run: frozen lr=0.003 seed=1",
                                                          "  to run: lora lr=0.001 seed=1"]
    assert counts == {"skipped": 4, "to run": 2, "waiting": 0}


def test_a_table_runs_every_rows_search_before_any_rows_seeds(tmp_path, capsys):
    """Rows are entries of one sweep: a worker free during one row's last search run takes another row's."""
    table, store = get_table(7), ResultStore(tmp_path / "results")
    phase1, _, _ = plan(store, table_entries(table, SUITE))
    first_row = phase1[:len(SUITE.lr_grid)]
    for job, score in zip(first_row, (40.0, 55.0), strict=True):  # the first row's search has ended
        write(store, job, val=score)
    counts = run_tables([(table, SUITE)], store=store, device=torch.device("cpu"),
                        checkpoint_root=tmp_path / "ckpt", dry_run=True)
    runs = [line.split(" -> ")[0].split(": ")[1] for line in capsys.readouterr().err.splitlines()
            if line.startswith(("  to run: ", "finished: "))]
    searches = len(table.rows) * len(SUITE.lr_grid)
    waiting = len(table.rows) - 1
    assert len(runs) == searches + 1 and counts == {"skipped": 2, "to run": searches - 1, "waiting": waiting}
    assert all(run.endswith("seed=0") for run in runs[:searches]) and runs[-1] == "bridger lr=0.003 seed=1"



def test_a_row_two_tables_share_runs_once_under_both_names(tmp_path, capsys, monkeypatch):
    """The default Bridger is "2->n, 3 Bridgers" in Table 4 and "64" in Table 7: one search, named by both rows;
    every other row's progress lines name their own row."""
    import benchmarks.sweep as sweep

    monkeypatch.setattr(sweep, "run_job", lambda job, setup: sweep.Outcome("ok", "ok", None, 50.0, 1.0))
    four, seven = get_table(4), get_table(7)
    run_tables([(four, SUITE), (seven, SUITE)], store=ResultStore(tmp_path / "results"),
               device=torch.device("cpu"), checkpoint_root=tmp_path / "ckpt")
    searched = [line.split("] ", 1)[1].split(": ok", 1)[0] for line in capsys.readouterr().err.splitlines()
                if line.startswith("[search ")]
    assert len(searched) == len(set(searched))  # no run twice
    shared = "bridger (table 4: 2->n, 3 Bridgers = table 7: 64)"
    names = {run.split(" lr=")[0] for run in searched}
    alone = {f"bridger (table {t.number}: {row.label})" for t in (four, seven) for row in t.rows if not row.options}
    assert shared in names and len(names) == len(four.rows) + len(seven.rows) - 1 and not alone & names


def test_equal_entries_built_apart_are_the_same_runs():
    again = method_entries(SUITE.replace({}), ["lora"], {"rank": "8"})[0]
    assert ENTRIES[1].runs() == again.runs() and ENTRIES[0].runs() != again.runs()
    assert method_entries(SUITE, ["lora"], {"rank": "4"})[0].runs() != again.runs()


TIMINGS = ("eval_seconds", "images_per_second")


def _metrics(record):
    """Everything of a record that the computation decides (not timings, dates or the machine)."""
    train = record["train_info"]
    results = {split: {k: v for k, v in scores.items() if k not in TIMINGS}
               for split, scores in record["results"].items()}
    return {"run": {k: record["run_info"][k] for k in ("config_hash", "lr", "seed", "status", "error")},
            "results": results, "baselines": record["baselines"], "curve": train["curve"],
            "final_loss": train["final_loss"], "anytime": [(p["step"], p["mIoU"]) for p in train["anytime"]],
            "threads": record["meta_info"]["threads"]}


@pytest.mark.processes
def test_two_workers_write_the_records_of_the_same_runs_made_one_after_another(tmp_path, capsys):
    """issue 20: `--jobs 2` (1 thread each) against the same sweep in this process with 1 thread."""
    suite = SUITE.replace({"steps": 3, "eval_limit": 4, "eval_every": 2})
    records = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        counts = run_sweep(suite, methods=["lora"], store=ResultStore(out), device=torch.device("cpu"),
                           checkpoint_root=tmp_path / f"ckpt{jobs}", jobs=jobs, threads=1)
        assert counts == {"skipped": 0, "ok": 3, "not ok": 0, "waiting": 0}  # 2 search rates + 1 more seed
        records[jobs] = {p.relative_to(out): _metrics(read_record(p)) for p in out.rglob("*.json")}
        finished = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("[search", "[seeds"))]
        assert len(finished) == 3 and all(": ok, val mIoU " in line for line in finished)
    assert len(records[1]) == 3 and records[1].keys() == records[2].keys()
    for path, serial in records[1].items():
        assert serial["threads"] == 1 and serial == records[2][path], path


@pytest.mark.processes
def test_ctrl_c_stops_every_worker_with_whole_records_and_checkpoints(tmp_path):
    """Ctrl-C reaches the whole process group: each worker records its run as interrupted, with a checkpoint
    at the step it recorded, the sweep exits 130 and no process of it is left."""
    suite_file = tiny_suite_file(tmp_path, steps="100000", batch_size="2", eval_limit="2", lr_grid="[1e-3, 3e-3]")
    out, ckpt, log = tmp_path / "results", tmp_path / "ckpt", tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "benchmarks", "sweep", "--suite", str(suite_file), "--method", "lora",
               "--jobs", "2", "--threads", "1", "--checkpoint-every", "1", "--no-save-model", "--out", str(out),
               "--checkpoint-dir", str(ckpt)]
    with log.open("w") as stderr, running(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr) as [proc]:
        deadline = time.monotonic() + SAFETY_SECONDS
        while len(list(ckpt.rglob("latest.json"))) < 2:  # both runs are training
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        assert exit_code(proc, 120, log) == 130, log.read_text()
        wait_until_gone(proc.pid)
    assert "sweep interrupted: run the same command again to continue" in log.read_text()
    paths = sorted(out.rglob("*.json"))
    assert len(paths) == 2 and not [p for p in tmp_path.rglob("*.tmp")]
    for path in paths:
        info = read_record(path)["run_info"]
        step = int(info["error"].removeprefix("interrupted at step "))
        checkpoints = Checkpointer(ckpt / path.relative_to(out).with_suffix(""), info["config_hash"])
        assert info["status"] == "interrupted" and step >= 1 and checkpoints.latest_step() == step
