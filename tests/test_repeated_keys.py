"""Property: a `--set` or `--budget` key given twice with different values is refused in one line before any
work (before, the last value won silently, so `--set rank=4 ... --set rank=8` trained rank 8); the same value
twice is harmless and accepted, however it is spelled: values are compared as the suite or the method reads them
(1e-3 and 0.001, 16 and 16.0 for a float, true and True). Spellings come from the suite's and every method's own
fields and defaults, so a new key or option is tried without editing this test."""

from __future__ import annotations

import dataclasses
import random
import typing

import pytest

from benchmarks import cli, validate
from benchmarks.cli import main
from benchmarks.suites import Suite, load_suite
from methods import get_method, list_methods
from riscore.coerce import field_types
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


def spellings(value: typing.Any, rng: random.Random) -> list[str]:
    """Texts that all coerce to `value` (a bool, int, float or a tuple of them)."""
    if isinstance(value, tuple):
        if not value or not all(isinstance(v, (int, float)) for v in value):
            return []
        choices = [spellings(v, rng) for v in value]
        return [",".join(rng.choice(c) for c in choices) for _ in range(3)]
    if isinstance(value, bool):
        return ["true", "True", "TRUE", "1"] if value else ["false", "False", "0"]
    if isinstance(value, int):
        return [str(value), f"+{value}", f"0{value}"]
    if not isinstance(value, float):
        return []
    texts = [repr(value), f"{value:e}", f"{value:.12f}", f"{value:.3e}".replace("e", "E"), f"{value}0",
             *([str(int(value))] if value.is_integer() else [])]
    return [t for t in texts if float(t) == value]


def plain(annotation: typing.Any) -> bool:
    """bool, int, float or a tuple of them: the types whose values have several spellings."""
    args = typing.get_args(annotation)
    return annotation in (bool, int, float) or (typing.get_origin(annotation) is tuple and args[0] in (int, float))


def budget_cases(rng: random.Random) -> list[tuple[str, str, str]]:
    suite = load_suite("smoke")
    return [(key, a, b) for key, annotation in field_types(type(suite)).items() if plain(annotation)
            for a, b in [rng.sample(texts, 2) for texts in [spellings(getattr(suite, key), rng)] if len(texts) > 1]]


def set_cases(rng: random.Random) -> list[tuple[str, str, str, str]]:
    cases = []
    for name in list_methods():
        spec = get_method(name)
        for key, value in spec.option_defaults().items():
            texts = spellings(value, rng) if value is not None and not isinstance(value, str) else []
            if len(texts) > 1:
                cases.append((name, key, *rng.sample(texts, 2)))
    return cases


def spec_of(argv: list[str]):
    return cli.resolve_spec(cli.build_parser().parse_args(["bench", "--suite", "smoke", *argv]))


@pytest.mark.parametrize("key,first,second", budget_cases(random.Random(SEED)))
def test_a_budget_key_spelled_twice_alike_is_one_value(key, first, second):
    spec = spec_of(["--method", "frozen", "--budget", f"{key}={first}", "--budget", f"{key}={second}",
                    "--allow-budget-override"])
    assert getattr(spec.suite, key) == getattr(spec_of(["--method", "frozen"]).suite, key)


@pytest.mark.parametrize("method,key,first,second", set_cases(random.Random(SEED)))
def test_a_method_option_spelled_twice_alike_is_one_value(method, key, first, second):
    spec = spec_of(["--method", method, "--set", f"{key}={first}", "--set", f"{key}={second}"])
    assert spec.method_config == get_method(method).make_config()


@pytest.mark.parametrize("argv", [
    ["--method", "frozen", "--budget", "lr=1e-3", "--budget", "lr=0.0011", "--allow-budget-override"],
    ["--method", "frozen", "--budget", "quick_gelu=true", "--budget", "quick_gelu=0", "--allow-budget-override"],
    ["--method", "frozen", "--budget", "lr_grid=1e-3,1e-4", "--budget", "lr_grid=0.001", "--allow-budget-override"],
    ["--method", "lora", "--set", "alpha=16", "--set", "alpha=16.5"],
    ["--method", "lora", "--set", "rank=8", "--set", "rank=4"],
    ["--method", "lora+ia3", "--set", "lora.rank=8", "--set", "lora.rank=9"],
])
def test_truly_different_values_are_still_refused(argv):
    with pytest.raises(UserError, match="twice"):
        spec_of(argv)


def test_sweep_and_profile_compare_set_values_as_their_methods_read_them(tmp_path, capsys, monkeypatch):
    import benchmarks.profile as profile

    common = ["--suite", "smoke", "--method", "lora", "--set", "alpha=16", "--set", "alpha=16.0"]
    assert main(["sweep", *common, "--budget", "lr=1e-3", "--budget", "lr=0.001", "--allow-budget-override",
                     "--dry-run", "--out", str(tmp_path / "r"), "--checkpoint-dir", str(tmp_path / "c")]) == 0
    seen = {}
    monkeypatch.setattr(profile, "profile", lambda *args, settings, **kwargs: seen.update(settings) or [])
    assert main(["profile", *common, "--method", "dora", "--flops-only"]) == 0
    assert float(seen["alpha"]) == 16.0
    assert main(["profile", *common, "--set", "alpha=17", "--flops-only"]) == 2
    assert "sets alpha twice" in capsys.readouterr().err
