"""Bad input: one clear line on stderr, exit code 2, nothing written."""

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


def test_list_methods_prints_every_method_with_counts_on_both_backbones(capsys, monkeypatch):
    import benchmarks.listing as listing
    from methods import list_methods

    monkeypatch.setattr(listing, "LISTED_BACKBONES", (("risbench-tiny-vit", 64, 16, "tiny"),))
    assert main(["bench", "--list-methods"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:]]
    assert sorted(r[0] for r in rows) == list_methods()
    frozen = next(r for r in rows if r[0] == "frozen")
    from model_helpers import build

    assert int(frozen[2]) == build().parameter_counts().decoder  # frozen trains the decoder only
