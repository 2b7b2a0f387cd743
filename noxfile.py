"""Nox sessions: thin wrappers over the `risbench` CLI (`python -m benchmarks`), sharing one virtual environment.

Every session but `tests_oldest` runs in `.nox/risbench` (override with RISBENCH_VENV). It is created on first
use and re-installed only when pyproject.toml changes, so a second session starts in seconds. `tests_oldest`
keeps its own environment with every direct dependency at the lowest version pyproject.toml allows.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
VENV = Path(os.environ.get("RISBENCH_VENV", ROOT / ".nox" / "risbench"))
OLDEST_VENV = ROOT / ".nox" / "risbench-oldest"
TEST_EXTRAS = ("dev", "tensorboard")  # tests read the event files `bench --log tensorboard` writes

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"


def lower_bounds() -> list[str]:
    """`name==low` for every dependency of the project (and the extras tests install) declared with a `>=` bound."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = []
    extras = [r for extra in TEST_EXTRAS for r in project["optional-dependencies"][extra]]
    for requirement in [*project["dependencies"], *extras]:
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*>=\s*([^,;\s]+)", requirement)
        if match:
            pins.append(f"{match[1]}=={match[2]}")
    return pins


def _python(venv: Path = VENV, constraints: list[str] | None = None) -> str:
    """Create or refresh an environment with the project installed editable; return its interpreter.

    `constraints` pins packages (the oldest-versions environment); the environment is rebuilt whenever
    pyproject.toml or the constraints change.
    """
    python = venv / "bin" / "python"
    stamp = venv / "risbench-install.sha256"
    pins = "\n".join(constraints or [])
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + pins.encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return str(python)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    extra: list[str] = []
    if constraints:
        pin_file = venv / "lower-bounds.txt"
        pin_file.write_text(pins + "\n")
        extra = ["-c", str(pin_file)]
    subprocess.run([*pip, "-e", f"{ROOT}[{','.join(TEST_EXTRAS)}]", *extra], check=True)
    stamp.write_text(digest + "\n")
    return str(python)


def _cli(session: nox.Session, command: str) -> None:
    session.run(_python(), "-m", "benchmarks", command, *session.posargs, external=True)


def _versions(python: str) -> str:
    """The installed versions of the packages whose range pyproject.toml declares."""
    names = [pin.split("==")[0] for pin in lower_bounds()]
    code = ("import importlib.metadata as m, sys\n"
            "print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))")
    return subprocess.run([python, "-c", code, *names], check=True, capture_output=True, text=True).stdout.strip()


def _pytest(session: nox.Session, python: str, default: list[str]) -> None:
    """Two workers, each taking whole modules (module fixtures built once; tests/conftest.py puts the longest
    modules first so the short ones even out the end)."""
    session.log(f"versions: {_versions(python)}")
    session.run(python, "-m", "pytest", *(session.posargs or ["-n", "2", "--dist", "loadscope",
                                                              "--benchmark-disable", *default]), external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (CPU, offline). Extra arguments go to pytest."""
    _pytest(session, _python(), [])


@nox.session
def tests_oldest(session: nox.Session) -> None:
    """The test suite with every direct dependency at the lowest version pyproject.toml allows, less the tests of
    process control (signals, kills, locks, worker pools: the project's own logic, run by `tests`)."""
    _pytest(session, _python(OLDEST_VENV, lower_bounds()), ["-m", "not processes"])


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
def data(session: nox.Session) -> None:
    """Look at a suite's dataset: `nox -s data -- preview --out runs/preview.png` or `nox -s data -- stats`."""
    _cli(session, "data")


@nox.session
def predict(session: nox.Session) -> None:
    """A saved model's mask for one expression: `nox -s predict -- --model DIR --index 12 --out runs/mask.png`."""
    _cli(session, "predict")


@nox.session
def evaluate(session: nox.Session) -> None:
    """Evaluate a saved model again: `nox -s evaluate -- --model DIR --split testB --limit 0`."""
    _cli(session, "evaluate")


@nox.session
def pretrain(session: nox.Session) -> None:
    """Rebuild the offline default backbone from shapes captions."""
    _cli(session, "pretrain")


@nox.session
def profile(session: nox.Session) -> None:
    """FLOPs, memory and throughput per method."""
    _cli(session, "profile")


@nox.session
def gpu_check(session: nox.Session) -> None:
    """Profile every method and bench bridger/full on the paper suite on a GPU (`-- --tiny`: toy sizes, CPU)."""
    session.run(_python(), "-m", "benchmarks.gpu_check", *session.posargs, external=True)


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
