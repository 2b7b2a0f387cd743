"""Checkpoint selection as ETRIS does it: the record keeps the last step's metrics and adds the selected weights',
which split selected them and at which step; a suite never selects on a test split; a killed and resumed run
(ETRIS protocol: referent sampling, fp16 with its CPU fallback, soft targets) writes the same record."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from child_processes import running

import benchmarks.train as train
from benchmarks.cli import main
from benchmarks.selection import Selection, selection_set
from benchmarks.store import ResultStore, RunSpec, read_record
from benchmarks.suites import load_suite
from methods import get_method
from riscore.errors import UserError

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


@pytest.mark.parametrize("split,why", [("testA", "is a test split"), ("testB", "is a test split"),
                                       ("test", "is a test split"), ("train", "is a training split")])
def test_a_suite_refuses_to_select_on_a_test_or_training_split(split, why):
    with pytest.raises(UserError, match=f"suite 'smoke': select_split '{split}' {why}"):
        load_suite("smoke").replace({"select_every": 5, "select_split": split})
    with pytest.raises(UserError, match=why):  # even while selection is off: the pair would be a trap
        load_suite("smoke").replace({"select_split": split})


@pytest.mark.parametrize("select_every", [0, 1])
def test_an_unknown_selection_split_is_refused(select_every):
    with pytest.raises(UserError, match="select_split: shapes has no split 'vall' .did you mean val"):
        load_suite("smoke").replace({"select_every": select_every, "select_split": "vall"})


def test_the_selection_set_is_the_first_sentence_of_each_referent(tmp_path, monkeypatch):
    from refer_fixture import build_refer

    build_refer(tmp_path, splits=("train", "val"))  # val: refs 2 (one sentence) and 4 (two sentences)
    monkeypatch.setenv("RISBENCH_DATA", str(tmp_path))
    suite = load_suite("paper-vitb16")
    chosen = selection_set(suite)
    assert [chosen[i]["text"] for i in range(len(chosen))] == ["object 2 phrase 0 of ref 2",
                                                               "object 1 phrase 0 of ref 4"]
    assert len(selection_set(suite.replace({"eval_limit": 1}))) == 1


def test_the_best_weights_are_scored_and_the_model_keeps_its_last_ones():
    model = torch.nn.Linear(2, 1)
    suite = load_suite("smoke").replace({"steps": 4, "select_every": 1})
    selection = Selection()
    for step, score in enumerate([0.2, 0.5, 0.5, 0.1], start=1):  # a tie: the later weights win (ETRIS's >=)
        with torch.no_grad():
            model.bias.fill_(step)
        selection.consider(step, score, model, seconds=0.0, expressions=8)
    assert selection.best_step == 3 and selection.best_score == 0.5
    seen = []
    record = selection.record(suite, model, 4, {"val": {"mIoU": 0.1}}, lambda: seen.append(model.bias.item()) or
                              {"val": {"mIoU": 0.5}})
    assert seen == [3.0] and model.bias.item() == 4.0
    assert record["step"] == 3 and record["split"] == "val" and record["results"] == {"val": {"mIoU": 0.5}}
    assert [p["step"] for p in record["history"]] == [1, 2, 3, 4] and record["expressions"] == 8
    restored = Selection.from_state(selection.state())  # what a checkpoint keeps
    assert restored.best_step == 3 and torch.equal(restored.best_weights["bias"], torch.tensor([3.0]))
    assert selection.record(load_suite("smoke"), model, 4, {}, lambda: {}) is None  # off


def spec(**budget) -> RunSpec:
    suite = load_suite("smoke").replace({"pretrained": None, "steps": 4, **budget})
    return RunSpec(suite, "lora", get_method("lora").make_config({"dropout": 0.5}), lr=3e-3, seed=0)


def without_timings(metrics: dict) -> dict:
    return {s: {k: v for k, v in m.items() if k not in ("eval_seconds", "images_per_second")}
            for s, m in metrics.items()}


@pytest.fixture
def no_flops(monkeypatch):
    """FLOP counting builds its own models (seconds each) and changes no metric: not what these tests check."""
    monkeypatch.setattr(train, "profile_run", lambda *args: {})


def test_selection_adds_the_selected_metrics_and_leaves_training_alone(tmp_path, no_flops):
    plain = train.run(spec(), ResultStore(tmp_path / "plain"), device=CPU, progress=False)
    selecting = train.run(spec(select_every=1), ResultStore(tmp_path / "select"), device=CPU, progress=False)
    assert plain["selection"] is None
    assert without_timings(selecting["results"]) == without_timings(plain["results"])  # the last step's, unchanged
    assert selecting["train_info"]["curve"] == plain["train_info"]["curve"]
    chosen = selecting["selection"]
    assert chosen["split"] == "val" and chosen["every"] == 1 and [p["step"] for p in chosen["history"]] == [1, 2, 3, 4]
    best = max(chosen["history"], key=lambda p: (p["mIoU"], p["step"]))
    assert chosen["step"] == best["step"] and chosen["score"] == best["mIoU"]
    # shapes: one sentence per referent, so the selection set is the val subset the record scores: the selected
    # weights, reloaded at the end, score exactly what selected them
    assert chosen["results"]["val"]["mIoU"] == chosen["score"]
    assert chosen["history"][-1]["mIoU"] == selecting["results"]["val"]["mIoU"]
    assert read_record(ResultStore(tmp_path / "select").path_for(spec(select_every=1)))["selection"]["step"] == \
        chosen["step"]


ETRIS_PROTOCOL = ["--budget", "sampling=referent", "--budget", "precision=fp16", "--budget", "target=soft",
                  "--budget", "select_every=3"]


def bench_args(root: Path) -> list[str]:
    return ["bench", "--method", "lora", "--suite", "smoke", "--budget", "pretrained=none", "--budget", "steps=10",
            "--budget", "log_every=2", *ETRIS_PROTOCOL, "--allow-budget-override", "--set", "dropout=0.5",
            "--checkpoint-every", "2", "--threads", "1", "--no-progress", "--no-save-model",
            "--out", str(root / "results"), "--checkpoint-dir", str(root / "ckpt")]


def comparable(record: dict) -> tuple:
    selection = {k: v for k, v in record["selection"].items() if k not in ("selection_seconds", "results")}
    return (without_timings(record["results"]), [(c["step"], c["loss"]) for c in record["train_info"]["curve"]],
            selection, without_timings(record["selection"]["results"]))


@pytest.mark.processes
def test_a_killed_etris_protocol_run_resumes_to_the_same_record(tmp_path, no_flops, capsys):
    from test_resume import checkpoint_step

    assert main(bench_args(tmp_path / "reference")) == 0
    [path] = (tmp_path / "reference" / "results").rglob("*.json")
    reference = read_record(path)
    info = reference["train_info"]
    assert (info["precision"], info["eval_precision"]) == ("fp32", "fp32")  # the CPU fallback, stated
    assert reference["run_info"]["config"]["suite"]["precision"] == "fp16"  # what the suite asked for
    assert [p["step"] for p in reference["selection"]["history"]] == [3, 6, 9, 10]

    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "benchmarks", *bench_args(killed)]
    with running(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as [proc]:
        deadline = time.monotonic() + 300
        while checkpoint_step(killed) < 4:  # past a selection
            assert proc.poll() is None, proc.stderr.read().decode()[-500:]
            assert time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert not list((killed / "results").rglob("*.json"))
    capsys.readouterr()
    assert main(bench_args(killed)) == 0
    assert "resuming lora seed 0 from step " in capsys.readouterr().err
    [path] = (killed / "results").rglob("*.json")
    assert comparable(read_record(path)) == comparable(reference)


@pytest.mark.processes
def test_an_interrupt_in_a_selection_step_resumes_with_that_steps_evaluation(tmp_path, monkeypatch, no_flops):
    """The interrupt waits for the step's end, then skips its evaluations: the resumed run must make them up."""
    from test_reliability import interrupt_at_step

    def args(root: Path) -> list[str]:
        return ["bench", "--method", "lora", "--suite", "smoke", "--budget", "pretrained=none", "--budget", "steps=6",
                "--budget", "select_every=2", "--budget", "eval_every=2", "--allow-budget-override", "--set",
                "dropout=0.5", "--checkpoint-every", "5", "--threads", "1", "--no-progress", "--no-save-model",
                "--out", str(root / "results"), "--checkpoint-dir", str(root / "ckpt")]

    assert main(args(tmp_path / "reference")) == 0
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 4, mid_step=True)
        assert main(args(tmp_path / "cut")) == 130
    assert main(args(tmp_path / "cut")) == 0
    records = [read_record(next((tmp_path / name / "results").rglob("*.json"))) for name in ("reference", "cut")]
    assert [p["step"] for p in records[1]["selection"]["history"]] == [2, 4, 6]
    assert [p["step"] for p in records[1]["train_info"]["anytime"]] == [2, 4, 6]
    assert comparable(records[1]) == comparable(records[0])
    assert [p["mIoU"] for p in records[1]["train_info"]["anytime"]] == \
        [p["mIoU"] for p in records[0]["train_info"]["anytime"]]
