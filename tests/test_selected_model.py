"""A run that selects its checkpoint keeps the selected weights beside the last step's: `evaluate --weights
selected` reproduces the record's `selection`, the default (last) its `results`; `bench` prints both."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import benchmarks.train as train
from benchmarks.cli import main
from benchmarks.saved_model import PEFT_DIR, SELECTED_DIR, WEIGHTS_FILE, SavedModel
from benchmarks.store import read_record

COMPARED = ("mIoU", "oIoU", "prec@0.5", "prec@0.9", "n", "per_kind", "per_expression", "showcase")


@pytest.fixture(scope="module")
def selecting(tmp_path_factory):
    """A smoke lora run that selects every step (its step 1 scores best, not its last, step 3), through the CLI:
    (its record, its saved model folder, what bench printed)."""
    root = tmp_path_factory.mktemp("selecting")
    argv = ["bench", "--method", "lora", "--suite", "smoke", "--budget", "select_every=1", "--allow-budget-override",
            "--out", str(root / "results"), "--checkpoint-dir", str(root / "ckpt"), "--models-dir",
            str(root / "models"), "--threads", "1", "--no-progress"]
    with pytest.MonkeyPatch.context() as patch, _Capture() as out:
        patch.setattr(train, "profile_run", lambda *args: {})  # FLOPs change no metric: not what is tested here
        assert main(argv) == 0
    record_path, = (root / "results").rglob("*.json")
    record = read_record(record_path)
    assert record["selection"]["step"] != record["train_info"]["steps_done"]  # else nothing here is tested
    return record, root / "models" / record_path.relative_to(root / "results").with_suffix(""), out.text


class _Capture:
    """stdout of a module-scoped fixture (capsys is function-scoped)."""

    def __enter__(self):
        self._buffer = io.StringIO()
        self._redirect = contextlib.redirect_stdout(self._buffer)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc):
        self._redirect.__exit__(*exc)
        self.text = self._buffer.getvalue()


@pytest.mark.parametrize("weights,section", [("selected", "selection"), ("last", "results")])
def test_evaluate_reproduces_the_metrics_the_record_reports_for_those_weights(selecting, tmp_path, capsys, weights,
                                                                                section):
    record, folder, _ = selecting
    out = tmp_path / "re.json"
    argv = ["evaluate", "--model", str(folder), "--threads", "1", "--record", str(out)]
    assert main(argv + (["--weights", weights] if weights != "last" else [])) == 0
    printed = capsys.readouterr().out
    expected = record["selection"]["results"] if section == "selection" else record["results"]
    source = "the record's selection" if section == "selection" else "the record"
    assert f"val: reproduces {source} exactly" in printed
    again = json.loads(out.read_text())
    assert again["run_info"]["weights"] == weights
    for split, metrics in expected.items():
        for key in COMPARED:
            assert again["results"][split][key] == metrics[key], (split, key)


def test_the_selected_weights_are_another_steps_in_both_formats(selecting):
    record, folder, _ = selecting
    saved = SavedModel.open(folder)
    assert saved.config["selection"]["step"] == record["selection"]["step"]
    assert saved.weights_folder("selected") == folder / SELECTED_DIR
    last, chosen = (load_file(str(f / WEIGHTS_FILE)) for f in (folder, folder / SELECTED_DIR))
    assert last.keys() == chosen.keys() and any(not torch.equal(last[k], chosen[k]) for k in last)
    peft_last, peft_chosen = (load_file(str(f / PEFT_DIR / "adapter_model.safetensors"))
                              for f in (folder, folder / SELECTED_DIR))
    assert peft_last.keys() == peft_chosen.keys()
    # peft's copy holds what model.safetensors holds for the same weights
    for name, tensor in peft_chosen.items():
        ours = "backbone.clip." + name.removeprefix("base_model.model.").replace(".weight", ".risbench.weight")
        assert torch.equal(chosen[ours], tensor), name


def test_predict_uses_the_weights_asked_for(selecting, tmp_path):
    _, folder, _ = selecting
    maps = {}
    for weights in ("last", "selected"):
        probs = tmp_path / f"{weights}.npy"
        assert main(["predict", "--model", str(folder), "--index", "3", "--weights", weights, "--out",
                     str(tmp_path / f"{weights}.png"), "--probabilities", str(probs), "--threads", "1"]) == 0
        maps[weights] = torch.from_numpy(np.load(probs))
    assert not torch.equal(maps["last"], maps["selected"])


def test_bench_prints_the_selected_step_score_and_metrics(selecting):
    record, _, printed = selecting
    chosen = record["selection"]
    assert (f"selected checkpoint: step {chosen['step']} of {record['train_info']['steps_done']}, val mIoU "
            f"{chosen['score']:.2f}") in printed
    table = printed.split("selected checkpoint:")[1].splitlines()[2]  # line 1: its header
    assert table.split()[:3] == ["val", "lora", f"{chosen['results']['val']['mIoU']:.2f}"]


def test_selected_weights_of_a_run_that_did_not_select_are_refused(tmp_path, capsys):
    argv = ["bench", "--method", "frozen", "--suite", "smoke", "--out", str(tmp_path / "results"), "--checkpoint-dir",
            str(tmp_path / "ckpt"), "--models-dir", str(tmp_path / "models"), "--threads", "1", "--no-progress"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "profile_run", lambda *args: {})
        assert main(argv) == 0
    folder = next((tmp_path / "models").rglob(WEIGHTS_FILE)).parent
    capsys.readouterr()
    assert main(["evaluate", "--model", str(folder), "--weights", "selected"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "did not select a checkpoint" in err and "\n" not in err
