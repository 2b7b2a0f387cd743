"""Ctrl-C and SIGTERM become KeyboardInterrupt, except in the middle of a training step or of importing torch, where
they wait for its end.

An interrupt that lands mid-step would otherwise leave the step half done (dropout masks drawn, weights maybe
half updated), and the checkpoint saved on the way out would not be the state of any step: the resumed run
would differ from an uninterrupted one. Deferring to the step's end makes the saved state exactly the state
after the last completed step, for every method. During torch's import its extension modules run Python code
from C++ (pybind11), where a KeyboardInterrupt cannot unwind: the process aborts (SIGABRT) instead of exiting 130.

A request to stop is sticky: the end of every later `deferred` block raises again. An interrupt raised between
steps can be lost to code that discards exceptions (a finalizer, C code that clears errors); a sweep worker that
lost it would train on while its parent waits for it (seen once in 35 Ctrl-Cs of a two-worker sweep under load).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"deferring": False, "pending": False}


def request() -> None:
    """Interrupt now (KeyboardInterrupt), or at the end of the current `deferred` block: what a signal does; sweep
    workers call it themselves (benchmarks/workers.py)."""
    _state["pending"] = True
    if not _state["deferring"]:
        raise KeyboardInterrupt


def _handler(signum, frame) -> None:
    request()


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt (held back inside `deferred`) for the duration. Installed
    first thing by the CLI, so a scheduler's SIGTERM during start-up also ends in exit 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.update(deferring=False, pending=False)
    previous = {sig: signal.signal(sig, _handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _state.update(deferring=False, pending=False)  # a request ends with the handling that received it


@contextmanager
def deferred() -> Iterator[None]:
    """The body (a training step, an import of native code) runs to its end even if interrupted; the interrupt
    (this one or an earlier one that was lost) is raised just after it."""
    _state["deferring"] = True
    try:
        yield
    finally:
        _state["deferring"] = False
    if _state["pending"]:
        raise KeyboardInterrupt


@contextmanager
def ignored() -> Iterator[None]:
    """SIGINT and SIGTERM are dropped for the duration (in the main thread; elsewhere signals never land):
    for waiting on processes that are already stopping, where an interrupt could only lose track of them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
