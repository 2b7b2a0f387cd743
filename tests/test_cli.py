"""Bad input: one clear line on stderr, exit code 2, nothing written."""

from pathlib import Path

import pytest

from benchmarks.cli import main


@pytest.mark.parametrize("argv,message", [
    (["bench", "--method", "lorra"], "unknown method 'lorra'"),
    (["bench", "--method", "full", "--suite", "nope"], "unknown suite 'nope'"),
    (["bench", "--method", "full", "--set", "rank=4"], "has no option 'rank'"),
    (["bench", "--method", "full", "--set", "rank"], "--set expects KEY=VALUE"),
    (["bench", "--method", "full", "--budget", "steps=5"], "--allow-budget-override"),
    (["bench", "--method", "full", "--budget", "steps=-5", "--allow-budget-override"], "steps must be an integer >= 1"),
    (["bench", "--method", "full", "--budget", "batch_size=0", "--allow-budget-override"], "batch_size"),
    (["bench", "--method", "full", "--budget", "lr=nan", "--allow-budget-override"], "lr"),
    (["bench", "--method", "full", "--budget", "stepz=1", "--allow-budget-override"], "unknown suite key 'stepz'"),
    (["bench", "--method", "full", "--lr", "0.5"], "outside suite 'shapes' lr_grid"),
    (["bench"], "needs --method"),
    (["data", "stats", "--dataset", "coco"], "unknown dataset 'coco'"),
    (["data", "stats", "--suite", "smok"], "unknown suite 'smok'"),
    (["report", "--results", "{tmp}/no-such-results"], "does not exist"),
    (["sweep", "--shard", "2/2"], "--shard 2/2"),
    (["sweep", "--method", "lorra"], "unknown method"),
    (["data", "stats", "--split", "vall"], "shapes has no split 'vall' (did you mean val?); valid splits: train, val,"),
    # Caught by Suite.__post_init__ / Suite.check before any model is built (--suite smoke: a regression trains fast).
    *[([command, *method, "--suite", "smoke", "--budget", budget, "--allow-budget-override"], message)
      for command, method in (("bench", ["--method", "frozen"]), ("sweep", []))
      for budget, message in (
          ("backbone=RN5O", "unknown backbone 'RN5O' (did you mean RN50 or RN50x4?); "),
          ("eval_splits=val,vall", "eval_splits: shapes has no split 'vall' (did you mean val?); valid splits: "
                                   "train, val, testA, testB"),
          ("train_split=trian", "train_split: shapes has no split 'trian' (did you mean train?)"),
          ("lr_search_split=testA", "lr_search_split 'testA' must be one of eval_splits (val)"),
          ("dataset=coco", "dataset: unknown dataset 'coco' (did you mean refcoco"),
          ("dataset=refcoco", "dataset 'refcoco' needs its data root: set RISBENCH_DATA"),
          ("dataset_options={colour = 1}", "unknown 'colour' (did you mean colours?)"),
          ("dataset_options={min_objects = 1}", "min_objects"),
          ("dataset_options=3", "expected a TOML inline table"),
          ("pretrained=methods/assets/nope.safetensors", "pretrained weights file not found: "),
          ("pretrained=openai", "nor an open_clip tag of risbench-tiny-vit; it has none"),
      )],
    (["bench", "--method", "lora", "--suite", "smoke", "--budget", "backbone=RN50", "--budget", "pretrained=opena",
      "--allow-budget-override"], "pretrained 'opena' is neither a weights file nor an open_clip tag of RN50 "
                                  "(did you mean openai?)"),
    (["bench", "--method", "frozen", "--suite", "smoke", "--budget", "pretrained={tmp}/corrupt.safetensors",
      "--allow-budget-override"], "cannot read pretrained weights file"),  # found only when the run loads it
    (["bench", "--method", "lora", "--suite", "smoke", "--set", "rank=0"], "rank must be >= 1, got 0"),
    (["bench", "--method", "lora", "--suite", "smoke", "--set", "rank=four"], "expected an int"),
    (["bench", "--method", "lora", "--suite", "smoke", "--set", "dropout=nan"],
     "lora.dropout='nan': expected a finite float"),
    (["bench", "--method", "lora", "--suite", "smoke", "--set", "alpha=1e9999"], "expected a finite float"),
    (["bench", "--method", "lora", "--suite", "smoke", "--set", "dropout=1.5"], "dropout must be in [0, 1), got 1.5"),
    (["sweep", "--suite", "smoke", "--seeds", "0,one"], "--seeds='0,one': expected comma-separated ints"),
    (["sweep", "--suite", "smoke", "--seeds", ","], "--seeds needs at least one seed"),
    (["sweep", "--method", "bridger", "--suite", "smoke", "--set", "image_stages=1,x"],
     "bridger.image_stages='1,x': expected comma-separated ints"),
    # issue 18: values that trained and wrote a `failed` (or final `diverged`) record, or were accepted
    *[(["bench", "--method", "frozen", "--suite", "smoke", *extra], message) for extra, message in (
        (["--seed", "-1"], "argument --seed: must be an integer in [0, 4294967295], got -1"),
        (["--seed", "99999999999999999999"], "argument --seed: must be an integer in [0, 4294967295]"),
        (["--workers", "-1"], "argument --workers: must be an integer >= 0, got -1"),
        (["--device", "meta"], "argument --device: must be auto, cpu or cuda[:N], got 'meta'"),
        (["--budget", "batch_size=100000", "--allow-budget-override"],
         "batch_size 100000 is larger than the train split (20000 items)"),
        (["--lr", "-1", "--allow-budget-override"], "argument --lr: must be a finite number in (0, inf)"),
        (["--lr", "inf", "--allow-budget-override"], "argument --lr: must be a finite number in (0, inf), got inf"),
        (["--threads", "-1"], "argument --threads: must be an integer >= 0, got -1"),
        (["--checkpoint-every", "-1"], "argument --checkpoint-every: must be an integer >= 0, got -1"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    )],
    (["sweep", "--suite", "smoke", "--seeds", "-1"], "--seeds: each seed must be an integer in [0, 4294967295]"),
    (["sweep", "--suite", "smoke", "--jobs", "0"], "argument --jobs: must be an integer >= 1, got 0"),
    (["sweep", "--suite", "smoke", "--jobs", "two"], "argument --jobs: must be auto or an integer >= 1, got 'two'"),
    (["profile", "--threads", "-1"], "argument --threads: must be an integer >= 0, got -1"),
    (["data", "stats", "--image-size", "0"], "argument --image-size: must be an integer >= 1, got 0"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.delenv("RISBENCH_DATA", raising=False)
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = tmp_path / ("reports" if argv[0] == "report" else "results")
    if argv[0] in ("bench", "sweep"):
        argv += ["--checkpoint-dir", str(tmp_path / "checkpoints")]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists() and not (tmp_path / "checkpoints").exists()


def test_list_methods_shows_every_option_with_its_default_without_building_a_model(capsys, monkeypatch):
    import dataclasses

    from methods import get_method, list_methods
    from methods.model import RISModel

    def no_model(*args, **kwargs):
        raise AssertionError("the plain listing must not build models (it has to answer in seconds)")

    monkeypatch.setattr(RISModel, "build", no_model)
    assert main(["bench", "--list-methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in list_methods():
        (row,) = [k for k, line in enumerate(lines) if line.split()[:1] == [name]]
        options = lines[row + 1].split("options: ")[1]
        parts = name.split("+")  # a combination lists its parts' options as part.option
        expected = [f"{part + '.' if len(parts) > 1 else ''}{f.name}={_typed(f.default)}"
                    for part in parts for f in dataclasses.fields(get_method(part).config_cls)]
        assert options.split() == (expected or ["none"])


def bench_option_values() -> list[tuple[str, list[str]]]:
    """Every bench option with a valid value other than its default, found from the parser: a new option is
    tried without editing this test."""
    import argparse

    from benchmarks.cli import build_parser

    parser = build_parser()
    bench = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["bench"]
    cases = []
    for action in bench._actions:
        flag = action.option_strings[0] if action.option_strings else None
        listing = flag in ("--list-methods", "--counts", "--threads")  # what the listing reads
        if flag is None or isinstance(action, argparse._HelpAction) or listing:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            argv = [f"--no-{flag[2:]}" if action.default else flag]
        elif action.nargs == 0:
            argv = [flag]
        elif action.choices:
            argv = [flag, next(c for c in action.choices if c != action.default)]
        else:
            def parses(text, kind=action.type):
                try:
                    return kind is None or kind(text) is not None
                except argparse.ArgumentTypeError:
                    return False
            argv = [flag, next(v for v in ("lorax", "x=1", "1", "2", "cpu") if parses(v) and v != action.default)]
        cases.append((flag, argv))
    return cases


@pytest.mark.parametrize("flag,argv", bench_option_values())
def test_list_methods_refuses_every_run_option_it_would_ignore(flag, argv, capsys, no_model_built):
    assert main(["bench", "--list-methods", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert flag in captured.err and "--list-methods" in captured.err


def test_counts_without_list_methods_is_refused(capsys, no_model_built):
    assert main(["bench", "--method", "lora", "--suite", "smoke", "--counts"]) == 2
    assert "--counts goes with --list-methods" in capsys.readouterr().err


def _typed(default) -> str:
    """A default as the user types it back after --set (and as the listing must print it)."""
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return "none" if default is None else str(default)


def test_list_methods_counts_every_method_on_both_backbones(capsys, monkeypatch):
    import benchmarks.listing as listing
    from methods import list_methods

    monkeypatch.setattr(listing, "LISTED_BACKBONES", (("risbench-tiny-vit", 64, 16, "tiny"),))
    assert main(["bench", "--list-methods", "--counts"]) == 0
    out = capsys.readouterr().out
    assert "added % of image tower at 224 px (paper)" in out.splitlines()[0]
    rows = [line.split() for line in out.splitlines()[1:]]
    assert sorted(r[0] for r in rows) == list_methods()
    frozen = next(r for r in rows if r[0] == "frozen")
    from model_helpers import build

    assert int(frozen[2]) == build().parameter_counts().decoder  # frozen trains the decoder only


def test_listed_defaults_are_accepted_back_by_set():
    """Every `key=value` the listing prints is valid input to `--set` and gives the default config."""
    from benchmarks.listing import method_options
    from methods import get_method, list_methods

    for name in list_methods():
        spec = get_method(name)
        assert spec.make_config(method_options(name)) == spec.make_config()


SMOKE = (Path(__file__).resolve().parent.parent / "benchmarks/suites/smoke.toml").read_text()


@pytest.mark.parametrize("line,message", [
    ('name = "../../escaped"', "suite name '../../escaped' must be a plain name"),
    ('name = ""', "suite name '' must be a plain name"),
    ('lr_grid = ["a"]', "lr_grid[0]='a': expected a finite float"),
    ("eval_splits = [1]", "eval_splits[0]=1: expected a str"),
    ("lr = true", "lr=True: expected a finite float"),
    ("eval_limit = true", "eval_limit=True: expected an int"),
    ('eval_splits = "val"', "eval_splits='val': expected a list of str values"),
    ('seeds = ["a"]', "seeds[0]='a': expected an int"),
    ("seeds = [-1]", "seeds[0] must be an integer in [0, 4294967295], got -1"),
    ("batch_size = 30000", "batch_size 30000 is larger than the train split (20000 items)"),
])
@pytest.mark.parametrize("command", ["bench", "sweep"])
def test_a_malformed_suite_file_is_refused_before_any_work(tmp_path, capsys, line, message, command):
    """issue 18: these escaped --out, were tracebacks, trained at lr 1.0 or failed only after training."""
    key = line.split(" = ")[0]
    suite = tmp_path / "s.toml"
    suite.write_text("\n".join([*(x for x in SMOKE.splitlines() if x.split(" = ")[0] != key), line]) + "\n")
    argv = [command, "--suite", str(suite), "--out", str(tmp_path / "out" / "results"),
            "--checkpoint-dir", str(tmp_path / "ckpt"), *(["--method", "frozen"] if command == "bench" else [])]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["s.toml"]  # nothing written, not even above --out


@pytest.mark.parametrize("argv", [
    ["bench", "--method", "frozen", "--suite", "smoke", "--out", "FILE"],
    ["bench", "--method", "frozen", "--suite", "smoke", "--out", "FILE/r"],
    ["bench", "--method", "frozen", "--suite", "smoke", "--checkpoint-dir", "FILE/c"],
    ["sweep", "--suite", "smoke", "--out", "FILE/r"],
    ["report", "--out", "FILE/x"],
    ["profile", "--flops-only", "--method", "frozen", "--suite", "smoke", "--out", "FILE/p.json"],
    ["data", "preview", "--out", "DIR.png"],
    ["pretrain", "--out", "FILE/assets"],
])
def test_an_unwritable_output_path_is_refused_before_any_work(tmp_path, capsys, monkeypatch, argv):
    """issue 18: these trained or profiled fully, then failed with a traceback (and no record)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FILE").write_text("a file")
    (tmp_path / "DIR.png").mkdir()
    own = {"bench": ("--out", "--checkpoint-dir"), "sweep": ("--out", "--checkpoint-dir"), "report": ("--results",)}
    places = {"--out": "results", "--checkpoint-dir": "ckpt", "--results": "results"}
    extra = [a for option in own.get(argv[0], ()) if option not in argv for a in (option, places[option])]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --") and ("is a file, not a folder" in err or "not a folder" in err
                                            or "is a folder" in err) and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["DIR.png", "FILE"]
