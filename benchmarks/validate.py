"""The one place that says which values are valid: ranges of numbers, seeds, names and output paths.

Suites (at construction), sweeps (`--seeds`) and every command-line option (as an argparse `type`) use the
same checks, so a bad value is refused in one line before any model is built, whichever way it came in.
Light at import: only the standard library.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from riscore.errors import UserError

SEED_MAX = 2**32 - 1  # numpy's seeding (and so seed_everything) takes 0 <= seed < 2**32
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # a suite name is one folder under results/


def integer(value: Any, key: str, low: int = 0, high: int | None = None) -> int:
    """`value` if it is an int (not a bool) in [low, high]; else a UserError naming `key` and the range."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise UserError(f"{_subject(key)}must be an integer {span}, got {value!r}")
    return value


def number(value: Any, key: str, low: float = 0.0, high: float = math.inf, *, open_low: bool = False,
           open_high: bool = False) -> float:
    """`value` if it is a finite int or float (not a bool) in the interval; else a UserError naming `key`."""
    fine = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if fine:
        fine = (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not fine:
        left, right = "(" if open_low else "[", ")" if open_high or high == math.inf else "]"
        raise UserError(f"{_subject(key)}must be a finite number in {left}{low:g}, {high:g}{right}, got {value!r}")
    return value


def _subject(key: str) -> str:
    return f"{key} " if key else ""  # argparse names the option itself


def seed(value: Any, key: str = "seed") -> int:
    return integer(value, key, 0, SEED_MAX)


def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{key}={value!r}: expected true or false")
    return value


def name(value: Any, key: str) -> str:
    """A name that becomes one path component: no separators, no '..', not empty, not hidden."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or value.strip(".") == "":
        raise UserError(f"{key} {value!r} must be a plain name (letters, digits, '.', '_', '+', '-'; "
                        "no path separators, not empty, not starting with '.')")
    return value


def writable_dir(path: Path | str, flag: str) -> Path:
    """`path` if it is, or can be created as, a folder this process may write in; checked before any work
    and without creating anything, so a bad path costs one line rather than a finished run."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path}: exists and is not a folder; give a folder path")
    _creatable(path, flag)
    return path


def writable_file(path: Path | str, flag: str, suffixes: tuple[str, ...]) -> Path:
    """`path` if a file can be written there (its folder exists or can be created, and it is not a folder),
    ending in one of `suffixes`: every file a command writes has a fixed format, which readers (reports, other
    commands, image viewers) tell by its extension."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{flag} {path}: give a path ending in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path}: not writable; check its permissions or choose another path")
    _creatable(path.parent, flag, of=path)
    return path


def _creatable(folder: Path, flag: str, of: Path | None = None) -> None:
    """The nearest existing ancestor of `folder` is a writable folder (so mkdir -p and writes will work)."""
    shown = of or folder
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {shown}: {existing} is a file, not a folder; give a path under a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {shown}: {existing} is not writable; choose a path you can write to")


def outside(path: Path | str, flag: str, folder: Path | str, folder_name: str, why: str) -> None:
    """Refuse an output `path` that is `folder` or lies inside it: two outputs of one command must not mix
    (event files or saved models among run records, reports among the records they read)."""
    if Path(path).resolve().is_relative_to(Path(folder).resolve()):
        raise UserError(f"{flag} {path} is inside {folder_name} {folder}: {why}; give {flag} a path "
                        f"outside {folder}")


def distinct_files(files: Sequence[tuple[str, Path | str | None]]) -> None:
    """Refuse two file options naming the same file (the later write would replace the earlier, or an
    output would overwrite an input); options not given (None) are skipped."""
    seen: dict[Path, str] = {}
    for flag, path in files:
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in seen:
            raise UserError(f"{seen[resolved]} and {flag} both name {path}; give each its own file")
        seen[resolved] = flag


def unique(values: Sequence[Any], key: str) -> list[Any]:
    """`values` as a list if none repeats: a repeated method, seed, rate or size would run or count the same
    thing twice."""
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise UserError(f"{key} lists {value!r} twice; give each once")
        seen.add(value)
    return list(values)


def key_values(pairs: Sequence[str], flag: str,
               meaning: Callable[[str, str], Any] | None = None) -> dict[str, str]:
    """`--set`/`--budget` arguments as a dict; a pair without `=` or a key is refused, and so is a key given
    twice with different values (which one was meant cannot be told; the last would win silently).

    Values are compared by `meaning(key, text)`, the value the consumer makes of the text (1e-3 and 0.001 are one
    rate), or as text without it."""
    def same(key: str, first: str, second: str) -> bool:
        if first == second or meaning is None:
            return first == second
        try:
            return meaning(key, first) == meaning(key, second)
        except UserError:  # a value without a meaning (a bad value, an unknown key): the texts differ, refuse
            return False

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise UserError(f"{flag} expects KEY=VALUE, got '{pair}'")
        if key in out and not same(key, out[key], value):
            raise UserError(f"{flag} sets {key} twice ({key}={out[key]}, then {key}={value}); give it once")
        out[key] = value
    return out


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def device(value: Any, key: str) -> str:
    """A device a run can use: auto, cpu or cuda[:N] (not meta, which holds no data, nor a typo)."""
    if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
        raise UserError(f"{_subject(key)}must be auto, cpu or cuda[:N], got {value!r}")
    return value


def jobs(value: Any, key: str) -> int | str:
    """A number of worker processes: auto or an integer >= 1 (given as text)."""
    if value == "auto":
        return value
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{_subject(key)}must be auto or an integer >= 1, got {value!r}") from None
    return integer(count, key, low=1)


# ---- argparse types: the same checks, for command-line options ----

def option(check: Callable[..., Any], convert: Callable[[str], Any] = int, **bounds: Any) -> Callable[[str], Any]:
    """An argparse `type` that parses the text with `convert` and applies `check`; argparse turns the
    ArgumentTypeError into `error: argument --x: <message>`."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            kind = "an integer" if convert is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        try:
            return check(value, "", **bounds)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = check.__name__
    return parse


NON_NEGATIVE_INT = option(integer, low=0)
POSITIVE_INT = option(integer, low=1)
SEED = option(seed)
POSITIVE_FLOAT = option(number, float, low=0.0, open_low=True)
DEVICE = option(device, str)
JOBS = option(jobs, str)
