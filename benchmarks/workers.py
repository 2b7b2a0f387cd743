"""Worker processes for `sweep --jobs N`: each runs one job at a time with a fixed number of torch threads, and an
interrupt stops every running job the way it stops a run in a single process (checkpoint and record written).

Why not concurrent.futures: its workers die on a signal that lands between jobs, it hands jobs ahead to
busy workers (such a job would still start after Ctrl-C) and it does not expose its processes to signal. Here
the parent gives a job only to an idle worker and forwards an interrupt to the busy ones.

Signals: Ctrl-C reaches every process of the terminal's process group, a scheduler's SIGTERM may reach only
the parent, so the parent forwards what it gets (as SIGTERM) and a worker acts on the first signal only: a
second one must not cut short the checkpoint and record that the first one is writing. On Linux a worker also
gets SIGTERM when the parent dies (even by SIGKILL), so no run outlives its sweep unrecorded.

Workers are spawned (forking a process whose torch has started threads is unsafe), so each imports torch once,
then serves jobs until told to stop. A pool of one, or one job while no worker exists yet, runs in this
process instead: a worker would only add its start-up.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from benchmarks import interrupts
from riscore.errors import UserError

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


@dataclass(frozen=True)
class WorkerDied:
    """What a job returns when its worker ended without answering (killed, out of memory, crashed)."""

    exitcode: int | None


@dataclass(frozen=True)
class _Reply:
    value: Any = None
    interrupted: bool = False
    error: BaseException | None = None


# ---- in a worker process ----

_worker = {"stopping": False, "busy": False}


def _on_signal(signum, frame) -> None:
    if _worker["stopping"]:
        return  # told once: the job is already recording where it stands
    _worker["stopping"] = True
    if _worker["busy"]:
        interrupts.request()  # KeyboardInterrupt now, or at the end of the training step


def _die_with(parent: int) -> None:
    """SIGTERM this process when the parent dies (Linux); if it is already gone, stop now."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        _on_signal(signal.SIGTERM, None)


def _serve(conn: Connection, threads: int, parent: int) -> None:
    """A worker's life: jobs from `conn` until None (or the parent is gone), one reply each."""
    import torch

    torch.set_num_threads(threads)
    for sig in interrupts.SIGNALS:
        signal.signal(sig, _on_signal)
    _die_with(parent)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        try:
            reply = _call(*task)
        except KeyboardInterrupt:  # the signal landed just before or after the job
            reply = _Reply(interrupted=True)
        try:
            conn.send(reply)
        except OSError:
            return


def _call(fn: Callable[[Any], Any], item: Any) -> _Reply:
    _worker["busy"] = True
    try:
        if _worker["stopping"]:
            return _Reply(interrupted=True)
        return _Reply(value=fn(item))
    except KeyboardInterrupt:
        return _Reply(interrupted=True)
    except UserError as exc:  # bad input ends the sweep with its one-line message, as it would in one process
        return _Reply(error=UserError(str(exc)))
    except Exception as exc:
        traceback.print_exc()
        return _Reply(error=RuntimeError(f"a sweep worker failed: {type(exc).__name__}: {exc}"))
    finally:
        _worker["busy"] = False


# ---- in the parent ----

@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection


class Pool:
    """Up to `size` worker processes with `threads` torch threads each, started when first needed; a context
    manager (leaving it stops them, interrupting any job still running)."""

    def __init__(self, size: int, threads: int):
        if size < 1 or threads < 1:
            raise ValueError(f"a pool needs at least one worker and one thread, got {size} and {threads}")
        self.size, self.threads = size, threads
        self._context = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._busy: dict[_Worker, Any] = {}

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """(item, fn(item) or WorkerDied) as each job ends, in that order. An interrupted job, bad input or a
        failure in one worker interrupts the others, waits for them to record where they stand, and raises.
        `fn` must be picklable (a module-level function, or a functools.partial of one)."""
        pending = deque(items)
        if (self.size == 1 or len(pending) <= 1) and not (self._idle or self._busy):
            yield from ((item, fn(item)) for item in pending)
            return
        try:
            while pending or self._busy:
                with interrupts.deferred():  # an interrupt waits until the books say who runs what
                    while pending and (worker := self._available()):
                        self._busy[worker] = pending[0]
                        worker.conn.send((fn, pending.popleft()))
                ready = wait([w.conn for w in self._busy] + [w.process.sentinel for w in self._busy])
                with interrupts.deferred():
                    answers = self._collect(ready)
                for item, reply in answers:
                    if isinstance(reply, _Reply) and reply.interrupted:
                        raise KeyboardInterrupt
                    if isinstance(reply, _Reply) and reply.error is not None:
                        raise reply.error
                    yield item, reply.value if isinstance(reply, _Reply) else reply
        except BaseException:
            self._stop_busy()
            raise

    def close(self) -> None:
        """Stop every worker (interrupting the busy ones) and wait for them to end."""
        self._stop_busy()
        for worker in self._idle:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._idle:
            worker.process.join()
            worker.conn.close()
        self._idle = []

    def _available(self) -> _Worker | None:
        if self._idle:
            return self._idle.pop()
        if len(self._busy) >= self.size:
            return None
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child_end, self.threads, os.getpid()),
                                        name="risbench-sweep-worker")
        process.start()
        child_end.close()
        return _Worker(process, parent_end)

    def _collect(self, ready: list[Any]) -> list[tuple[Any, _Reply | WorkerDied]]:
        """The answers of the busy workers that `ready` says have one; a worker that died is dropped (a new
        one takes its place for the next job)."""
        answers = []
        for worker in [w for w in self._busy if w.conn in ready or w.process.sentinel in ready]:
            item = self._busy.pop(worker)
            try:
                reply = worker.conn.recv()
            except (EOFError, OSError):
                reply = None
            if reply is not None and worker.process.is_alive():
                self._idle.append(worker)
            else:
                worker.process.join()
                worker.conn.close()
            answers.append((item, reply if reply is not None else WorkerDied(worker.process.exitcode)))
        return answers

    def _stop_busy(self) -> None:
        """Interrupt the busy workers and wait until each has answered (or died); interrupts meanwhile are
        ignored, since the workers are already stopping."""
        with interrupts.ignored():
            for worker in self._busy:
                try:
                    os.kill(worker.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            while self._busy:
                self._collect(wait([w.conn for w in self._busy] + [w.process.sentinel for w in self._busy]))
