"""Property: a run record whose identity or scores are garbled (a hand edit, a merge gone wrong) is refused when
read, naming the field, so `report` and `bench`'s reference comparison skip it with a warning instead of
crashing on it or ranking nonsense."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.store import read_record

SEED = 7
COMMITTED = Path(__file__).resolve().parent.parent / "results" / "shapes"
# field -> malformed values; None means: the field is left out
BAD = {
    ("run_info", "suite"): [3, "", None, ["shapes"]],
    ("run_info", "method"): [3, "", None, {"name": "lora"}],
    ("run_info", "config_hash"): [3, "", None],
    ("run_info", "status"): ["weird", "OK", None, 1],
    ("run_info", "seed"): [-1, "0", 1.5, True, 2**40, None],
    ("run_info", "lr"): [0, -1e-3, "1e-3", float("nan"), float("inf"), True, None],
    ("run_info", "off_budget"): ["no", 1, "true"],  # an old record without it is on budget
}
SCORE_VALUES = ["x", None, float("nan"), float("inf"), -1.0, 100.5, True, [50.0]]


def a_committed_record() -> dict:
    return read_record(next(COMMITTED.glob("lora/*-seed0.json")))


def corruptions(rng: random.Random) -> list[tuple[str, dict]]:
    """(garbled field, record) for every checked field with each of its bad values."""
    good, cases = a_committed_record(), []
    fields = dict(BAD)
    split = next(iter(good["results"]))
    for key in [k for k in good["results"][split] if k in ("mIoU", "oIoU", "n") or k.startswith("prec@")]:
        fields[("results", split, key)] = SCORE_VALUES + (["3", 1.5, -2] if key == "n" else [])
    fields[("results", split)] = ["x", [1], 3, {"mIoU": 50.0}]
    for path, values in fields.items():
        for value in values:
            record = copy.deepcopy(good)
            holder = record
            for part in path[:-1]:
                holder = holder[part]
            if value is None and rng.random() < 0.5 and not path[-1].startswith("prec@"):  # prec@X are optional
                holder.pop(path[-1], None)
            else:
                holder[path[-1]] = value
            cases.append((".".join(path), record))
    return cases


def test_committed_records_pass_the_field_checks():
    paths = sorted(COMMITTED.glob("*/*.json"))
    assert len(paths) > 50
    for path in paths:
        assert read_record(path)["run_info"]["suite"] == "shapes", path


def test_every_garbled_identity_or_score_is_refused_naming_the_field(tmp_path):
    cases = corruptions(random.Random(SEED))
    assert len(cases) > 60
    for field, record in cases:
        path = tmp_path / "r.json"
        path.write_text(json.dumps(record))
        with pytest.raises(ValueError, match="run record field") as caught:
            read_record(path)
            pytest.fail(f"{field}: accepted")
        assert field.split(".")[-1] in str(caught.value) or "with mIoU" in str(caught.value), (field, caught.value)


def test_report_skips_garbled_records_with_one_warning_each_and_no_traceback(tmp_path, capsys):
    rng = random.Random(SEED)
    results, cases = tmp_path / "results", rng.sample(corruptions(rng), 12)
    good = a_committed_record()
    folder = results / good["run_info"]["suite"] / good["run_info"]["method"]
    folder.mkdir(parents=True)
    (folder / "good-seed0.json").write_text(json.dumps(good))
    for k, (_, record) in enumerate(cases):
        (folder / f"bad{k}-seed0.json").write_text(json.dumps(record))
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "reports")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    skipped = [line for line in err.splitlines() if "skipping" in line and "run record field" in line]
    assert len(skipped) == len(cases), err
