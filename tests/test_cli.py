"""Bad input: one clear line on stderr, exit code 2, nothing written."""

import pytest

from benchmarks.cli import main


@pytest.mark.parametrize("argv,message", [
    (["bench", "--method", "lorra"], "unknown method 'lorra'"),
    (["bench", "--method", "full", "--suite", "nope"], "unknown suite 'nope'"),
    (["bench", "--method", "full", "--set", "rank=4"], "has no option 'rank'"),
    (["bench", "--method", "full", "--set", "rank"], "--set expects KEY=VALUE"),
    (["bench", "--method", "full", "--budget", "steps=5"], "--allow-budget-override"),
    (["bench", "--method", "full", "--budget", "steps=-5", "--allow-budget-override"], "steps must be a positive"),
    (["bench", "--method", "full", "--budget", "batch_size=0", "--allow-budget-override"], "batch_size"),
    (["bench", "--method", "full", "--budget", "lr=nan", "--allow-budget-override"], "lr"),
    (["bench", "--method", "full", "--budget", "stepz=1", "--allow-budget-override"], "unknown suite key 'stepz'"),
    (["bench", "--method", "full", "--lr", "0.5"], "outside suite 'shapes' lr_grid"),
    (["bench"], "needs --method"),
    (["data", "stats", "--dataset", "coco"], "unknown dataset 'coco'"),
    (["report", "--results", "{tmp}/no-such-results"], "does not exist"),
    (["sweep", "--shard", "2/2"], "--shard 2/2"),
    (["sweep", "--method", "lorra"], "unknown method")
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = tmp_path / ("reports" if argv[0] == "report" else "results")
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists()


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
