"""Threads and workers from the machine (issue 20): bench takes the free cores and warns on a loaded machine;
sweep --jobs splits the cores."""

from __future__ import annotations

import pytest
import torch

from benchmarks import cpu
from benchmarks.cli import main
from benchmarks.store import read_record


@pytest.mark.parametrize("cores", range(1, 9))
def test_free_cores_leave_room_for_what_runs_and_keep_at_least_one(cores):
    busy_values = [k / 10 for k in range(0, 10 * cores + 31)]
    free = [cpu.free_cores(cores, busy) for busy in busy_values]
    assert cpu.free_cores(cores, None) == cores == free[0]  # idle (or unknown): every core
    assert all(1 <= f <= cores for f in free)
    assert free == sorted(free, reverse=True)  # busier never gives more threads
    for busy, f in zip(busy_values, free, strict=True):
        whole_busy = int(busy + 0.5)  # busy threads, to the nearest whole one (halves up)
        assert f == max(1, cores - whole_busy), (busy, f)
    assert cpu.free_cores(2, 0.4) == 2 and cpu.free_cores(2, 0.5) == 1 and cpu.free_cores(4, 1.2) == 3


def test_running_now_counts_the_other_runnable_threads(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    monkeypatch.setattr(cpu, "PROC_STAT", stat)
    stat.write_text("cpu  1 2 3\nprocs_running 4\nprocs_blocked 0\n")
    assert cpu.running_now(samples=3, interval=0) == 3  # the reader itself is not load
    stat.unlink()
    monkeypatch.setattr(cpu.os, "getloadavg", lambda: (2.5, 1.0, 0.5))
    assert cpu.running_now(samples=3, interval=0) == 2.5  # no /proc/stat: the load average


@pytest.mark.parametrize("running,torch_default,expected", [(0.0, 4, 4), (1.2, 4, 3), (3.9, 4, 1), (0.0, 2, 2),
                                                          (1.0, 2, 2), (9.0, 8, 1)])
def test_bench_threads_are_the_free_cores_at_most_torchs_default(monkeypatch, running, torch_default, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu, "cores", lambda: 4)
    monkeypatch.setattr(cpu, "running_now", lambda: running)
    assert cpu.bench_threads(torch_default) == expected
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's (or torchrun's) choice: torch's default stands
    assert cpu.bench_threads(torch_default) is None


def test_the_warning_is_one_line_only_above_the_core_count():
    assert cpu.busy_warning(2, None) is None and cpu.busy_warning(2, 2.0) is None and cpu.busy_warning(8, 7.9) is None
    line = cpu.busy_warning(2, 3.14)
    assert line.startswith("warning: ") and "\n" not in line and "(1-minute load average 3.1 on 2 cores)" in line


@pytest.mark.parametrize("jobs,threads,cuda,cores,expected", [
    ("auto", 0, False, 2, (2, 1)),  # one single-thread worker per core
    ("auto", 0, False, 1, (1, None)),  # one job: torch's default threads, as before --jobs
    ("auto", 0, True, 16, (1, None)),  # one device: one run at a time
    ("3", 0, False, 8, (3, 2)), ("4", 0, False, 2, (4, 1)), (1, 0, False, 8, (1, None)),
    ("auto", 3, False, 2, (2, 3)), ("2", 5, True, 2, (2, 5)),  # --threads wins
])
def test_sweep_workers_split_the_cores(jobs, threads, cuda, cores, expected):
    assert cpu.sweep_workers(jobs, threads, cuda, cores) == expected


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_bench_on_a_loaded_machine_warns_once_and_trains_on_the_free_cores(tmp_path, monkeypatch, capsys,
                                                                            torch_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu, "cores", lambda: 4)
    monkeypatch.setattr(cpu, "load_average", lambda: 6.0)
    monkeypatch.setattr(cpu, "running_now", lambda: 1.0)
    torch.set_num_threads(4)
    out = tmp_path / "results"
    assert main(["bench", "--method", "frozen", "--suite", "smoke", "--budget", "steps=1", "--budget", "eval_limit=2",
                 "--allow-budget-override", "--no-progress", "--no-save-model", "--out", str(out),
                 "--checkpoint-dir", str(tmp_path / "ckpt")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: the machine was already loaded when training started (1-minute load average 6.0 "
                        "on 4 cores): the recorded timings are not comparable with those of an idle machine"]
    (path,) = out.rglob("*.json")
    assert read_record(path)["meta_info"]["threads"] == 3
