"""Run records: one JSON file per (suite, method config, seed), written atomically.

The layout follows peft's method_comparison (run_info / train_info / meta_info) with
lm-evaluation-harness style per-split results. Reports are a pure function of these files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import validate
from benchmarks.suites import Suite
from riscore.errors import UserError
from riscore.identity import config_identity

SCHEMA_VERSION = 1
STATUSES = ("ok", "diverged", "oom", "failed", "interrupted")
# Outcomes of the budget itself: re-running would only replace them by chance (a lucky retry on a GPU), so a
# sweep keeps them; a failed (exception) or interrupted run is retried.
FINAL_STATUSES = ("ok", "diverged", "oom")
DEFAULT_RESULTS = Path(__file__).resolve().parent.parent / "results"
PROFILE_DIR = "profile"  # results/profile/ holds `profile` documents, not run records
COUNTS_DIR = "counts"  # nor does results/counts/ (`counts` documents: benchmarks/paper_counts.py)
DOCUMENT_DIRS = (PROFILE_DIR, COUNTS_DIR)
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass(frozen=True)
class RunSpec:
    """What identifies a run: the suite's budget, the method and its config, the learning rate, the seed."""

    suite: Suite
    method: str
    method_config: Any
    lr: float
    seed: int
    off_budget: bool = False

    def config(self) -> dict[str, Any]:
        """The canonical resolved configuration (seed excluded) that the config hash covers."""
        return {
            "suite": self.suite.identity(),
            "method": self.method,
            "method_config": config_identity(self.method_config),
            "lr": self.lr,
        }

    @property
    def config_hash(self) -> str:
        canonical = json.dumps(self.config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def run_info(spec: RunSpec, suite_name: str, status: str, error: str | None, started_at: str,
             **extra: Any) -> dict[str, Any]:
    """A record's `run_info`: what identifies the run, how it ended, then `extra` (a re-evaluation says what it
    evaluated), then the full resolved config."""
    return {
        "suite": suite_name,
        "method": spec.method,
        "method_config": spec.config()["method_config"],
        "lr": spec.lr,
        "seed": spec.seed,
        "config_hash": spec.config_hash,
        "off_budget": spec.off_budget,
        "status": status,
        "error": error,
        "started_at": started_at,
        **extra,
        "config": spec.config(),
    }


class ResultStore:
    """results/<suite>/<method>/<hash12>-seed<k>.json; never holds a partial file."""

    def __init__(self, root: Path | str = DEFAULT_RESULTS):
        self.root = Path(root)
        remove_orphaned_temporaries(self.root)

    def path_for(self, spec: RunSpec) -> Path:
        return self.root / spec.suite.name / spec.method / f"{spec.config_hash[:12]}-seed{spec.seed}.json"

    def load(self, spec: RunSpec) -> dict[str, Any] | None:
        path = self.path_for(spec)
        if not path.exists():
            return None
        try:
            return read_record(path)
        except ValueError:
            return None

    def is_finished(self, spec: RunSpec) -> bool:
        """A final record (ok, diverged, oom) for this (config hash, seed) exists; re-running it is skipped."""
        record = self.load(spec)
        return bool(record and record["run_info"]["status"] in FINAL_STATUSES
                    and record["run_info"]["config_hash"] == spec.config_hash)

    def write(self, spec: RunSpec, record: dict[str, Any]) -> Path:
        path = self.path_for(spec)
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=False) + "\n")
        return path

    def records(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        """Every readable record; unreadable files are skipped with a warning naming them."""
        for path in sorted(self.root.rglob("*.json")):
            if path.relative_to(self.root).parts[0] in DOCUMENT_DIRS:
                continue
            try:
                yield path, read_record(path)
            except ValueError as exc:
                warnings.warn(f"skipping {path}: {exc}", stacklevel=2)


def read_json(path: Path, what: str) -> Any:
    """The content of a JSON file; ValueError 'not a readable JSON <what> (<why>)' for a missing, unreadable,
    non-UTF-8 or malformed one."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a readable JSON {what} ({exc.__class__.__name__})") from None


def read_record(path: Path) -> dict[str, Any]:
    record = read_json(path, "run record")
    if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"not a run record of schema version {SCHEMA_VERSION}")
    for section in ("run_info", "train_info", "results", "cost", "meta_info"):
        if not isinstance(record.get(section), dict):
            raise ValueError(f"run record lacks its '{section}' section")
    try:
        _check_identity(record["run_info"])
        _check_results(record["results"])
    except UserError as exc:
        raise ValueError(f"run record field {exc}") from None
    return record


SCORES = re.compile(r"mIoU|oIoU|prec@[0-9.]+")  # percentages every leaderboard ranks and averages


def _check_identity(info: dict[str, Any]) -> None:
    """The run_info fields that group, name and filter records: a garbled one would crash or mislead a report."""
    for key in ("suite", "method", "config_hash"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise UserError(f"run_info.{key}={info.get(key)!r}: expected a non-empty string")
    if info.get("status") not in STATUSES:
        raise UserError(f"run_info.status={info.get('status')!r}: expected one of {', '.join(STATUSES)}")
    validate.seed(info.get("seed"), "run_info.seed")
    validate.number(info.get("lr"), "run_info.lr", open_low=True)
    validate.boolean(info.get("off_budget", False), "run_info.off_budget")


def _check_results(results: dict[str, Any]) -> None:
    """Per split: mIoU, oIoU and n at least; the scores finite percentages and `n` a count."""
    for split, metrics in results.items():
        if not isinstance(metrics, dict) or not {"mIoU", "oIoU", "n"} <= set(metrics):
            raise UserError(f"results.{split}={metrics!r}: expected a table of metrics with mIoU, oIoU and n")
        for key, value in metrics.items():
            if SCORES.fullmatch(key):
                validate.number(value, f"results.{split}.{key}", 0.0, 100.0)
            elif key == "n":
                validate.integer(value, f"results.{split}.n")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and os.replace, so readers never see half a file."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """A write that fails (disk full, `ulimit -f`, permissions) is a UserError naming the file and the fix,
    and leaves neither the file half-written nor its temporary file behind."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_SEP}{_owner()}{TMP_SEP}",
                                   suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; published files get the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UserError(f"cannot write {path}: {exc.strerror or exc}; free disk space, raise the file-size "
                            "limit (ulimit -f) or write elsewhere") from None
        raise


TMP_SEP = "~"  # .<name>~<host>~<pid>~<random>.tmp: no host name holds '~'
ORPHAN_AGE_SECONDS = 3600  # a temporary file this old belongs to no write in progress, wherever it came from


def _owner() -> str:
    return f"{socket.gethostname()}{TMP_SEP}{os.getpid()}"


def remove_orphaned_temporaries(root: Path) -> None:
    """Delete the temporary files of writes that never finished (the writer was killed between writing and
    renaming): those of dead processes on this host at once, any other after an hour."""
    for tmp in root.rglob(".*.tmp") if root.is_dir() else ():
        parts = tmp.name[:-len(".tmp")].rsplit(TMP_SEP, 3)
        try:
            mine = len(parts) == 4 and parts[1] == socket.gethostname()
            dead = mine and not _alive(int(parts[2]))
            if dead or time.time() - tmp.stat().st_mtime > ORPHAN_AGE_SECONDS:
                tmp.unlink()
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to judge


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
