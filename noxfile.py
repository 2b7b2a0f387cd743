"""Nox sessions: thin wrappers over `python -m benchmarks`, all sharing one virtual environment.

Every session runs in `.nox/risbench` (override with RISBENCH_VENV). It is created on first use and
re-installed only when pyproject.toml changes, so a second session starts in seconds.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
VENV = Path(os.environ.get("RISBENCH_VENV", ROOT / ".nox" / "risbench"))
STAMP = VENV / "risbench-install.sha256"

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"


def _python() -> str:
    """Create or refresh the shared environment and return its interpreter."""
    python = VENV / "bin" / "python"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == digest:
        return str(python)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(digest + "\n")
    return str(python)


def _cli(session: nox.Session, command: str) -> None:
    session.run(_python(), "-m", "benchmarks", command, *session.posargs, external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (CPU, offline). Extra arguments go to pytest."""
    args = session.posargs or ["-n", "2", "--benchmark-disable"]
    session.run(_python(), "-m", "pytest", *args, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Train and evaluate one method on one suite: `nox -s bench -- --method bridger`."""
    _cli(session, "bench")


@nox.session
def sweep(session: nox.Session) -> None:
    """Every method x seeds under one suite's budget: `nox -s sweep -- --suite shapes`."""
    _cli(session, "sweep")


@nox.session
def report(session: nox.Session) -> None:
    """Leaderboards and plots from results/ into reports/."""
    _cli(session, "report")


@nox.session
def pretrain(session: nox.Session) -> None:
    """Rebuild the offline default backbone from shapes captions."""
    _cli(session, "pretrain")


@nox.session
def profile(session: nox.Session) -> None:
    """FLOPs, memory and throughput per method."""
    _cli(session, "profile")


@nox.session
def speed(session: nox.Session) -> None:
    """pytest-benchmark step-time suite; results saved for --benchmark-compare."""
    args = session.posargs or ["--benchmark-autosave"]
    session.run(_python(), "-m", "pytest", "benchmarks/speed", "-p", "no:xdist", "--benchmark-only",
                *args, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the project."""
    session.run(_python(), "-m", "ruff", "check", ".", *session.posargs, external=True)
