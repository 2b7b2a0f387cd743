"""Property: a `--set` or `--budget` key given twice with different values is refused in one line before any
work (before, the last value won silently, so `--set rank=4 ... --set rank=8` trained rank 8); the same value
twice is harmless and accepted."""

from __future__ import annotations

import dataclasses
import random

import pytest

from benchmarks import validate
from benchmarks.cli import main
from benchmarks.suites import Suite
from methods import get_method, list_methods
from riscore.errors import UserError

SEED = 11


def repeated_cases(rng: random.Random, tmp: str) -> list[tuple[str, list[str]]]:
    cases = []
    out = ["--out", f"{tmp}/results", "--checkpoint-dir", f"{tmp}/ckpt", "--models-dir", f"{tmp}/models"]
    for method in list_methods():
        config = get_method(method).make_config()
        fields = dataclasses.fields(config) if dataclasses.is_dataclass(config) else ()
        for field in rng.sample(fields, min(2, len(fields))):  # every method, not every option: seconds
            key, command = field.name, rng.choice(["bench", "sweep", "profile"])
            argv = [command, "--method", method, "--suite", "smoke", "--set", f"{key}=1", "--set", f" {key} = 2"]
            argv += ["--flops-only", "--out", f"{tmp}/p.json"] if command == "profile" else out
            cases.append((key, argv))
    for field in rng.sample(dataclasses.fields(Suite), 20):
        command = rng.choice(["bench", "sweep"])
        argv = [command, "--method", "frozen", "--suite", "smoke", "--allow-budget-override",
                "--budget", f"{field.name}=a", "--budget", f"{field.name}=b", *out]
        cases.append((field.name, argv))
    return cases


def test_a_key_given_twice_with_different_values_is_refused_before_any_work(tmp_path, capsys, no_model_built):
    cases = repeated_cases(random.Random(SEED), str(tmp_path))
    assert len(cases) >= 40
    for key, argv in cases:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, f"{argv}: exit {code}\n{err}"
        assert err.startswith("error: ") and err.count("\n") == 1 and f"sets {key} twice" in err, f"{argv}: {err}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pairs,expected", [
    (["rank=4", "rank=4"], {"rank": "4"}),
    (["rank=4", " rank = 4 "], {"rank": "4"}),
    (["rank=4", "alpha=8"], {"rank": "4", "alpha": "8"}),
])
def test_the_same_value_twice_is_accepted(pairs, expected):
    assert validate.key_values(pairs, "--set") == expected


def test_differing_values_name_both():
    with pytest.raises(UserError, match=r"--set sets rank twice \(rank=4, then rank=8\)"):
        validate.key_values(["rank=4", "alpha=1", "rank=8"], "--set")
