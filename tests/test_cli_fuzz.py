"""Property: any malformed value of any command-line option or suite key is refused in one line, exit 2, before
any work (no model built, no file written, no traceback).

A seeded generator draws the bad values by what each option or key holds (a count, a seed, a rate, a path, a
name, a list, a table), so a new option or suite key without a generator fails the coverage test below.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import shutil
from pathlib import Path
from typing import Any

from benchmarks.cli import build_parser, main
from benchmarks.suites import Suite
from riscore.coerce import field_types

SEED = 18
CASES = 240  # at least 200 in CI; in-process calls take milliseconds each
SMOKE = (Path(__file__).resolve().parent.parent / "benchmarks/suites/smoke.toml").read_text()


def junk(rng: random.Random) -> str:
    """A random string that is never a number (it holds a letter)."""
    return "".join(rng.choice("abz_-./:,=0 9é\t") for _ in range(rng.randint(0, 7))) + rng.choice("azé")


def bad_ints(rng: random.Random, low: int, high: int | None = None) -> list[str]:
    values = [str(low - rng.randint(1, 10**6)), "1.5", "", "nan", "inf", "0x10", junk(rng), f"{rng.random():.3f}"]
    return values + ([str(high + rng.randint(1, 10**30))] if high is not None else [])


def bad_floats(rng: random.Random) -> list[str]:
    return ["0", f"-{rng.random():.4f}", "inf", "-inf", "nan", "", junk(rng), "1e999"]


FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def misspelt_list(rng: random.Random, items: list[str]) -> list[str]:
    """A list of valid items with an empty item put anywhere (`2,,4`, `,2`, `2,`), and the same list in
    full-width digits (Python's int() reads both; a config must not)."""
    picks = [rng.choice(items) for _ in range(rng.randint(1, 3))]
    at = rng.randint(0, len(picks))
    wide = ",".join(picks).translate(FULL_WIDTH)
    return [",".join(picks[:at] + [""] + picks[at:])] + ([wide] if wide != ",".join(picks) else [])


# What each option holds -> malformed values for it; `FILE` in a value is replaced by a path to a plain file.
INT0, INT1, SEEDS = (lambda r: bad_ints(r, 0)), (lambda r: bad_ints(r, 1)), (lambda r: bad_ints(r, 0, 2**32 - 1))
NAME = lambda r: [junk(r) + "x", "Lora ", "../x", ""]  # noqa: E731
OUT_DIR = lambda r: ["FILE", "FILE/sub", "FILE/a/b"]  # noqa: E731
OUT_FILE = lambda r: ["FILE/x.json", "DIR", "x.txt", "x", f"{junk(r)}.csv"]  # noqa: E731  # a file's format is its extension
OPTIONS: dict[str, Any] = {
    "--seed": SEEDS, "--lr": bad_floats, "--workers": INT0, "--threads": INT0, "--checkpoint-every": INT0,
    "--device": lambda r: ["meta", "gpu", "cuda:x", "", junk(r), "cpu:0"],
    "--method": NAME, "--suite": lambda r: [junk(r) + "q", "missing.toml", "nope/smoke"],
    "--set": lambda r: ["rank", "=4", f"{junk(r)}q=1", "rank=four", "rank=0", "dropout=1.5", "alpha=nan"],
    "--budget": lambda r: ["steps", f"{junk(r)}q=1", "steps=0", "lr=abc", "seeds=a", "batch_size=99999999",
                           "eval_splits=vall", "name=x", "lr_grid=", "threshold=1", "lr=true",
                           *("lr_grid=" + v for v in misspelt_list(r, ["1e-3", "3e-3"])),
                           *("seeds=" + v for v in misspelt_list(r, ["0", "1"]))],
    "--out": OUT_DIR, "--checkpoint-dir": OUT_DIR, "--results": lambda r: ["FILE", "missing-folder"],
    "--seeds": lambda r: ["-1", "a", ",", "1,,x", str(2**32), "1.5", *misspelt_list(r, ["0", "1", "2"])],
    "--shard": lambda r: ["1/1", "x", "-1/2", "2", "0/0", "3/2", junk(r)],
    "--jobs": lambda r: ["0", "-2", "1.5", "", "Auto", "nan", junk(r)],

    "--table": lambda r: ["0", "9", "-1", "x", junk(r), *misspelt_list(r, ["4", "5", "7"])],
    "--image-size": INT1, "--text-len": INT1, "--batch-size": INT1, "--steps": INT1, "-n": INT1,
    "--warmup": INT1, "--repeats": INT1, "--backbone": lambda r: [junk(r) + "q", "RN5O"],
    "--sweep-image-size": lambda r: ["0", "a", "-3", "1,x", ",", *misspelt_list(r, ["64", "96"])],
    "--sweep-batch-size": lambda r: ["0", "-1,2", *misspelt_list(r, ["2", "4"])],
    "--dataset": lambda r: [junk(r) + "q", "coco"],
    "--split": lambda r: ["vall", junk(r) + "q", *misspelt_list(r, ["val", "test"])],
    "action": lambda r: ["show", junk(r)],
    "--reference": lambda r: ["FILE", "missing-folder"], "--models-dir": OUT_DIR,
    "--model": lambda r: ["FILE", "missing-folder", ""], "--image": lambda r: ["FILE", "missing.png"],
    "--text": lambda r: ["", " "], "--index": INT0, "--limit": INT0,
    "--weights": lambda r: ["best", "Selected", "", junk(r)],
    "--log": lambda r: ["tensorbord", "wandb", "", junk(r)], "--log-dir": OUT_DIR,
    "--sweep-precision": lambda r: ["fp8", "bf16,half", junk(r) + "q", *misspelt_list(r, ["fp32", "bf16"])],
    "--memory-jobs": INT1,
    "--probabilities": lambda r: ["FILE/p.png", "p.txt", "DIR"], "--record": lambda r: ["FILE/r.json", "r.txt", "DIR"],
}
PROFILE_OUT = {"--out": OUT_FILE}  # profile, counts, data preview and predict write one file, the others folders
# What makes each command valid, apart from the one bad value; writing commands write under the case folder.
BASE = {
    "bench": ["bench", "--method", "lora", "--suite", "smoke", "--out", "{tmp}/results",
              "--checkpoint-dir", "{tmp}/ckpt"],
    "sweep": ["sweep", "--suite", "smoke", "--method", "lora", "--out", "{tmp}/results",
              "--checkpoint-dir", "{tmp}/ckpt"],
    "report": ["report", "--results", "{tmp}/results", "--out", "{tmp}/reports"],
    "data": ["data", "preview", "--out", "{tmp}/preview.png"],
    "pretrain": ["pretrain", "--out", "{tmp}/assets"],
    "profile": ["profile", "--method", "lora", "--suite", "smoke", "--flops-only", "--out", "{tmp}/p.json"],
    "counts": ["counts", "--out", "{tmp}/counts.json"],
    # no saved model exists here, so a value checked only after the model is opened fails on the model instead
    "predict": ["predict", "--model", "{tmp}/model", "--index", "0", "--out", "{tmp}/mask.png"],
    "evaluate": ["evaluate", "--model", "{tmp}/model"],
}


def bad_suite_values(rng: random.Random, key: str, annotation: Any) -> list[Any]:
    """Malformed TOML values for a suite key, by its annotated type (and range)."""
    text = str(annotation)
    if key == "name":
        return ["", "../../escaped", "a/b", ".hidden", 3]
    if text.startswith("tuple"):
        inner = {"int": [-1, "a", 1.5, 2**40], "float": ["a", -1.0, 0, True], "str": [1, True, "vall"]}
        element = next(v for k, v in inner.items() if k in text)
        return [junk(rng), 3, [], [rng.choice(element)]]
    if text.startswith("dict"):
        return [3, "x", [1], {"colour": 1}]
    if "bool" in text:
        return [1, "true", [True], 0.5]
    if "int" in text:
        return [True, 1.5, "3", [1], -rng.randint(1, 100)]
    if "float" in text:
        return [True, "x", -rng.random(), float("inf"), float("nan"), [0.1]]
    return [1, True, [junk(rng)], junk(rng) + "q"]  # a str: wrong type or not a known value


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), -float("inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def option_cases(rng: random.Random) -> list[tuple[str, list[str]]]:
    cases = []
    for command, options in command_options().items():
        for option in options:
            one_file = command in ("profile", "counts", "data", "predict")
            generate = (PROFILE_OUT if one_file else {}).get(option) or OPTIONS[option]
            for value in generate(rng):
                argv = [a for a in BASE[command]]
                if option == "action":
                    argv[1] = value
                elif option in argv:  # replace the base's value
                    argv[argv.index(option) + 1] = value
                else:
                    argv += [option, value]
                if option == "--budget":
                    argv.append("--allow-budget-override")
                cases.append((f"{command} {option}={value!r}", argv))
    return cases


def suite_cases(rng: random.Random) -> list[tuple[str, list[str]]]:
    """Each suite key set to a malformed value in a suite file run by bench (and sometimes sweep)."""
    cases = []
    for key, annotation in field_types(Suite).items():
        if key == "description":  # free text: any string is fine
            continue
        for value in bad_suite_values(rng, key, annotation):
            lines = [line for line in SMOKE.splitlines() if line.split(" = ")[0] != key]
            suite = "\n".join([*lines, f"{key} = {toml_value(value)}"]) + "\n"
            command = rng.choice(["bench", "sweep"])
            argv = [a for a in BASE[command]]
            argv[argv.index("--suite") + 1] = "{tmp}/s.toml"
            cases.append((f"suite {key}={value!r}", argv, suite))
    return cases


def command_options() -> dict[str, list[str]]:
    """Every option that takes a value, per command (flags and --help take none)."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {name: [(a.option_strings[-1] if a.option_strings else a.dest) for a in sub._actions
                   if a.nargs != 0 and not isinstance(a, argparse._HelpAction)]
            for name, sub in commands.items()}


def test_every_option_and_suite_key_has_a_generator():
    missing = {o for options in command_options().values() for o in options if o not in OPTIONS}
    assert not missing, f"no malformed-value generator for {missing}"
    assert {f.name for f in dataclasses.fields(Suite)} - {"description"} <= set(field_types(Suite))


def test_malformed_options_and_suite_keys_are_refused_in_one_line_before_any_work(tmp_path, monkeypatch, capsys,
                                                                                   no_model_built):
    monkeypatch.delenv("RISBENCH_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # relative defaults (preview.png) land here and are seen
    rng = random.Random(SEED)
    cases = [(*c, None) for c in option_cases(rng)] + suite_cases(rng)
    rng.shuffle(cases)
    assert len(cases) >= CASES, len(cases)
    (tmp_path / "FILE").write_text("a plain file")
    (tmp_path / "DIR").mkdir()
    for k, (name, argv, suite) in enumerate(cases):
        case = tmp_path / f"case{k}"
        case.mkdir()
        if suite is not None:
            (case / "s.toml").write_text(suite)
        argv = [a.replace("{tmp}", str(case)).replace("FILE", str(tmp_path / "FILE"))
                .replace("DIR", str(tmp_path / "DIR")) for a in argv]
        before = sorted(tmp_path.rglob("*"))
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, f"{name}: exit {code}\n{err}"
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, f"{name}: {err}"
        assert sorted(tmp_path.rglob("*")) == before, f"{name}: wrote files"
        shutil.rmtree(case)  # the next case's listing stays short (all case folders: minutes under load)
