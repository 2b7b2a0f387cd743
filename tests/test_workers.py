"""The sweep's worker pool: jobs run at once in their own processes with the given threads; a dead worker, bad
input in one job or an interrupt of the parent alone stop the way a single process would."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from benchmarks import interrupts
from benchmarks.workers import Pool, WorkerDied
from riscore.errors import UserError


def wait_for(path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)


def job(item: tuple[str, str]) -> object:
    """What the tests ask a worker to do; each job first says it started (file started-<kind>)."""
    import torch

    kind, folder = item[0], Path(item[1])
    (folder / f"started-{kind}").write_text(str(os.getpid()))
    if kind.startswith("together"):  # returns only once every job of the test has started: they run at once
        for other in ("together-1", "together-2"):
            wait_for(folder / f"started-{other}")
    if kind.startswith("die"):
        wait_for(folder / ("started-die-too" if kind == "die" else "started-die"))  # both workers busy
        os.kill(os.getpid(), signal.SIGKILL)
    if kind in ("bad", "signal-parent", "swallow"):
        wait_for(folder / "started-slow")
    if kind == "bad":
        raise UserError("this job's input is bad")
    if kind in ("slow", "signal-parent", "swallow"):
        try:
            if kind == "signal-parent":  # as `kill <sweep pid>` or a scheduler's SIGTERM to the parent alone
                os.kill(os.getppid(), signal.SIGTERM)
            if kind == "swallow":  # the interrupt is lost to code that discards exceptions, then training steps go on
                with contextlib.suppress(KeyboardInterrupt):
                    os.kill(os.getppid(), signal.SIGTERM)
                    time.sleep(120)
                for _ in range(12_000):
                    with interrupts.deferred():
                        time.sleep(0.01)
            time.sleep(120)
        except KeyboardInterrupt:
            (folder / f"interrupted-{kind}").write_text("")
            raise
        return "not interrupted"
    return os.getpid(), torch.get_num_threads()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_workers_run_jobs_at_once_in_their_own_processes_with_the_given_threads(tmp_path):
    with Pool(2, threads=2) as pool:
        done = dict(pool.run(job, [(kind, str(tmp_path)) for kind in ("together-1", "together-2", "third")]))
        (alone, answer), = pool.run(job, [("alone", str(tmp_path))])  # an existing worker, not this process
    pids = {pid for pid, _ in done.values()}
    assert len(done) == 3 and len(pids) == 2 and os.getpid() not in pids and answer[0] in pids
    assert all(threads == 2 for _, threads in done.values())  # this process has 1 (conftest)
    assert all(gone(pid) for pid in pids)  # leaving the pool ends its workers
    with Pool(2, threads=2) as pool:  # one job and no worker yet: it runs here
        assert list(pool.run(job, [("here", str(tmp_path))])) == [(("here", str(tmp_path)), (os.getpid(), 1))]
    with Pool(1, threads=1) as pool:  # and so do all jobs of a pool of one
        assert {pid for _, (pid, _) in pool.run(job, [(f"one-{k}", str(tmp_path)) for k in range(2)])} == {os.getpid()}


@pytest.mark.processes
def test_dead_workers_are_reported_and_replaced(tmp_path):
    with Pool(2, threads=1) as pool:
        done = dict(pool.run(job, [(kind, str(tmp_path)) for kind in ("die", "die-too", "after")]))
    assert done[("die", str(tmp_path))] == done[("die-too", str(tmp_path))] == WorkerDied(-signal.SIGKILL)
    dead = {int((tmp_path / f"started-{kind}").read_text()) for kind in ("die", "die-too")}
    assert len(dead) == 2 and done[("after", str(tmp_path))][0] not in dead | {os.getpid()}


@pytest.mark.processes
def test_bad_input_in_one_job_interrupts_the_others_then_is_raised(tmp_path):
    with Pool(2, threads=1) as pool, pytest.raises(UserError, match="this job's input is bad"):
        list(pool.run(job, [(kind, str(tmp_path)) for kind in ("slow", "bad")]))
    assert (tmp_path / "interrupted-slow").exists()
    assert all(gone(int((tmp_path / f"started-{kind}").read_text())) for kind in ("slow", "bad"))


@pytest.mark.processes
@pytest.mark.parametrize("kind", ["signal-parent", "swallow"])
def test_an_interrupt_of_the_parent_alone_reaches_every_job_even_one_that_lost_it(tmp_path, kind):
    """`signal-parent`: the parent forwards its signal; `swallow`: that job discards it, then goes on with training
    steps, and stops at the end of the next one."""
    started = time.monotonic()
    with interrupts.handled(), Pool(2, threads=1) as pool, pytest.raises(KeyboardInterrupt):
        list(pool.run(job, [(name, str(tmp_path)) for name in ("slow", kind)]))
    assert (tmp_path / "interrupted-slow").exists() and (tmp_path / f"interrupted-{kind}").exists()
    assert time.monotonic() - started < 100  # not the jobs' 120 s of sleep or steps


def test_a_request_holds_until_the_handling_that_received_it_ends():
    with interrupts.handled():
        with contextlib.suppress(KeyboardInterrupt):
            interrupts.request()  # raised between steps and discarded
        for _ in range(2):  # every later step ends in the interrupt
            with pytest.raises(KeyboardInterrupt), interrupts.deferred():
                pass
    with interrupts.deferred():  # the next handling starts without it
        pass
