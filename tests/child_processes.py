"""Command-line runs that a test starts and must not leave behind, whatever way the test ends."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


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


def exit_code(proc: subprocess.Popen, seconds: float, log: Path) -> int:
    """The command's exit code once it ends. Still running after `seconds` (a bound against hanging, not a speed
    check) fails the test with what the command wrote to `log` and where each process of its group stands."""
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {seconds} s later; its processes:\n{_group_state(proc.pid)}\n"
                    f"its output (end):\n{log.read_text()[-4000:]}")


def _group_state(group: int) -> str:
    """pid, state, kernel wait channel and command line of every process in `group` (Linux /proc)."""
    lines = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == group:
                wchan = (stat.parent / "wchan").read_text()
                command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                lines.append(f"{stat.parent.name} {fields[0]} {wchan} {command[:200]}")
    return "\n".join(lines) or "none left"
