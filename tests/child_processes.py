"""Command-line runs that a test starts and must not leave behind, whatever way the test ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator


@contextlib.contextmanager
def running(*commands: list[str], **popen) -> Iterator[list[subprocess.Popen]]:
    """Starts each command in a session of its own: it and every process it starts (workers, data loaders) form
    one process group. On leaving the block, by an assertion, a timeout or normally, each group still there is
    killed and each command reaped, so no process outlives the test."""
    procs: list[subprocess.Popen] = []
    try:
        for command in commands:
            procs.append(subprocess.Popen(command, start_new_session=True, **popen))
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in procs:
            proc.communicate()  # reaps it and closes its pipes
