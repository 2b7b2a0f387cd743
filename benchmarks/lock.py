"""One process at a time per run: a second identical `bench` (or sweep job) waits for the first, then finds its
record, instead of training the same run twice.

The lock is an flock(2) on a small file in the temporary folder, named after the run's record path (so
nothing is written among results or checkpoints, even by a run refused later): the kernel releases it when
its holder ends however it ends, so the lock of a killed process is simply taken over. The file names its
holder (host and pid) for the message the waiting process prints. Processes on one machine see each
other's locks; shards on several machines never share a run.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def holder() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


def lock_path(record: Path) -> Path:
    key = hashlib.sha256(str(Path(record).absolute()).encode()).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / f"risbench-locks-{os.getuid()}" / f"{key}.lock"


@contextmanager
def run_lock(record: Path) -> Iterator[None]:
    """Hold the lock of the run that writes `record` for the duration, waiting (with one line saying so)
    while another process holds it."""
    path = lock_path(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            print(f"run {record} is in progress in {other}; waiting for it to finish", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break  # still the file at `path`: its previous holder did not remove it meanwhile
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder().encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # before unlocking, so a waiter never holds a removed file
        os.close(fd)
