"""How many torch threads and sweep workers to use, from the cores this process may run on and how busy the
machine is. Standard library only.

Threads beyond the free cores make every thread wait for the others (a `bench` on a busy 2-core machine ran
4x faster with 1 thread than with 2), so `bench` takes the cores no other process is using *now*: the last
minute's load average would still count a run that just ended and give the next run of a loop fewer threads.
Its timings are comparable only on an idle machine, hence the warning when the 1-minute load average is
above the core count.

A sweep's thread count is not taken from the load: it changes float results, so it must follow from the
command line alone (cores // jobs). Its workers do not change results, so `--jobs auto` can simply take one
single-thread worker per core: on 2 cores, 2 processes x 1 thread trained 1.43x the images per second of
1 process x 2 threads (issue 20).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")


def cores() -> int:
    """The cores this process may run on: its affinity mask, which taskset, cpusets and containers narrow."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def running_now(samples: int = 9, interval: float = 0.02) -> float | None:
    """Runnable threads on the machine other than the one asking, now: the median of a few reads of
    /proc/stat's procs_running (which counts the reader). The load average where /proc/stat is missing."""
    counts = []
    for k in range(samples):
        try:
            text = PROC_STAT.read_text()
        except OSError:
            return load_average()
        counts += [int(line.split()[1]) - 1 for line in text.splitlines() if line.startswith("procs_running ")]
        if k + 1 < samples:
            time.sleep(interval)
    return statistics.median(counts) if counts else load_average()


def free_cores(cores: int, busy: float | None) -> int:
    """The cores left by `busy` runnable threads (to the nearest whole thread, a half counting as busy), between
    1 and `cores`."""
    if busy is None:
        return cores
    return max(1, min(cores, cores - math.floor(busy + 0.5)))


def bench_threads(torch_default: int) -> int | None:
    """`bench`'s torch threads when --threads is not given: the free cores, at most torch's own default; None
    (torch's default) when OMP_NUM_THREADS is set, as the user or torchrun (one thread per process) decided."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return min(torch_default, free_cores(cores(), running_now()))


def busy_warning(cores: int, load: float | None) -> str | None:
    """One line for stderr when the machine is already loaded as training starts (1-minute load average above
    the cores)."""
    if load is None or load <= cores:
        return None
    return (f"warning: the machine was already loaded when training started (1-minute load average {load:.1f} "
            f"on {cores} cores): the recorded timings are not comparable with those of an idle machine")


def sweep_workers(jobs: int | str, threads: int, cuda: bool, cores: int) -> tuple[int, int | None]:
    """(worker processes, torch threads each) for `sweep --jobs J --threads T`: `auto` is one worker per core
    on CPU and one on CUDA (the runs share the device); threads default to cores // jobs, at least 1, and to
    torch's default (None) with one job."""
    count = (1 if cuda else cores) if jobs == "auto" else int(jobs)
    if threads:
        return count, threads
    return count, max(1, cores // count) if count > 1 else None
