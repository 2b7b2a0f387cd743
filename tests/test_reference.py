"""A run beside the committed reference: exact match for the same seed and environment, named differences."""

import copy
import json
import math
import subprocess
from pathlib import Path

import pytest

from benchmarks.cli import build_parser, main
from benchmarks.reference import (
    EXACT,
    Environment,
    Spread,
    compare,
    environment_differences,
    reference_records,
    seeds_by_rate,
)
from benchmarks.store import SCHEMA_VERSION, atomic_write_text, read_record

REPO = Path(__file__).resolve().parent.parent
META = {"git_sha": "0123456789abcdef", "git_dirty": False, "python": "3.11.7", "device": "cpu (x86_64, 2 threads)",
        "device_type": "cpu", "world_size": 1,
        "packages": {"torch": "2.5.1", "open_clip_torch": "2.29.0", "peft": "0.13.2", "numpy": "2.1.0"}}


def record(seed: int = 0, miou: float = 40.0, *, lr: float = 1e-3, config_hash: str = "a" * 64,
           status: str = "ok", **meta) -> dict:
    results = {split: {"mIoU": miou + k, "oIoU": miou + k - 1, "prec@0.5": miou / 2, "n": 8,
                       "per_kind": {"attribute": miou}, "eval_seconds": 1.0 + seed, "images_per_second": 9.0}
               for k, split in enumerate(("val", "testA"))}
    return {"schema_version": SCHEMA_VERSION,
            "run_info": {"suite": "shapes", "method": "lora", "method_config": {"rank": 8}, "lr": lr, "seed": seed,
                         "config_hash": config_hash, "status": status,
                         "config": {"suite": {"name": "shapes", "steps": 10}, "method_config": {"rank": 8}, "lr": lr}},
            "train_info": {}, "results": results, "cost": {}, "meta_info": {**copy.deepcopy(META), **meta}}


def write(root: Path, rec: dict) -> Path:
    info = rec["run_info"]
    path = root / info["suite"] / info["method"] / f"{info['config_hash'][:12]}-seed{info['seed']}.json"
    atomic_write_text(path, json.dumps(rec))
    return path


def test_same_seed_and_environment_with_equal_metrics_matches_exactly_even_if_timings_differ():
    mine, reference = record(0), record(0)
    mine["results"]["val"]["eval_seconds"] = 123.0
    lines = compare(mine, [reference, record(1, 42.0), record(2, 44.0)])
    assert f"seed 0: {EXACT}" in "\n".join(lines)
    assert lines[-1] == "  environment: the reference's code, packages, thread count and device"


def test_nan_metrics_in_both_records_still_match_and_a_none_version_is_not_installed():
    mine, reference = record(0, packages={**META["packages"], "peft": None}), record(0)
    del reference["meta_info"]["packages"]["peft"]
    for rec in (mine, reference):
        rec["results"]["val"]["per_kind"]["attribute"] = math.nan
    lines = compare(mine, [reference])
    assert f"seed 0: {EXACT}" in "\n".join(lines) and lines[-1].endswith("thread count and device")


def test_same_environment_different_metrics_is_reported_as_not_reproducible():
    mine = record(0)
    mine["results"]["testA"]["oIoU"] += 0.25
    text = "\n".join(compare(mine, [record(0)]))
    assert EXACT not in text
    assert "differs from the reference record (testA oIoU 40.25 vs 40.00)" in text and "not reproducible" in text


@pytest.mark.parametrize("change,named", [
    ({"packages": {**META["packages"], "torch": "2.6.0"}}, "torch 2.6.0 (reference: 2.5.1)"),
    ({"packages": {**META["packages"], "peft": "0.14.0"}}, "peft 0.14.0 (reference: 0.13.2)"),
    ({"packages": {k: v for k, v in META["packages"].items() if k != "numpy"}},
     "numpy not installed (reference: 2.1.0)"),
    ({"threads": 8}, "threads 8 (reference: 2)"),  # the field wins over the legacy device name
    ({"device": "cpu (x86_64, 4 threads)"}, "threads 4 (reference: 2)"),
    ({"device": "cpu (arm64, 2 threads)"}, "device cpu (arm64) (reference: cpu (x86_64))"),
    ({"device": "cpu (AMD EPYC, AVX2, 2 threads)"}, "device cpu (AMD EPYC, AVX2) (reference: cpu (x86_64))"),
    ({"device": "NVIDIA H100", "device_type": "cuda", "threads": 2}, "device NVIDIA H100 (reference: cpu (x86_64))"),
    ({"git_sha": "fedcba9876543210"}, "code fedcba98 (reference: 01234567)"),
    ({"git_dirty": True}, "code 01234567 with local changes (reference: 01234567)"),
    ({"python": "3.12.1"}, "python 3.12.1 (reference: 3.11.7)"),
    ({"world_size": 4}, "processes 4 (reference: 1)"),
])
def test_every_change_of_environment_is_named_and_nothing_else(change, named):
    mine = record(0, **change)
    mine["results"]["val"]["mIoU"] += 0.5
    differences = environment_differences(Environment.of(mine), [Environment.of(record(0))])
    assert differences == [named]
    text = "\n".join(compare(mine, [record(0)]))
    assert f"environment differs from the reference: {named}" in text and "not reproducible" not in text


def test_other_seed_is_placed_in_the_reference_spread():
    references = [record(0, 40.0), record(1, 42.0), record(2, 44.0)]  # val mIoU mean 42, std 2: inside 38..46
    inside = "\n".join(compare(record(3, 45.9), references))
    assert "seed 3 is not among the reference seeds" in inside and EXACT not in inside
    assert "val mIoU    45.90     42.00 ± 2.00  inside" in inside
    outside = "\n".join(compare(record(3, 46.1), references))
    assert "val mIoU    46.10     42.00 ± 2.00  OUTSIDE" in outside
    several = [record(0), record(1, threads=1, packages={**META["packages"], "torch": "2.4.0"})]
    assert environment_differences(Environment.of(record(5, threads=1)), map(Environment.of, several)) == []


def test_spread_contains_exactly_two_sample_stds_and_has_none_for_one_seed():
    spread = Spread.of([1.0, 3.0])  # mean 2, sample std sqrt(2)
    assert spread.contains(2 + 2 * 2 ** 0.5) and not spread.contains(2 + 2 * 2 ** 0.5 + 1e-9)
    assert Spread.of([5.0]).contains(5.0) is None


def test_reference_records_are_this_config_ok_and_not_the_run_itself(tmp_path):
    mine = record(0)
    own = write(tmp_path, mine)
    write(tmp_path, record(1))
    write(tmp_path, record(2, status="diverged"))
    write(tmp_path, record(1, config_hash="b" * 64))
    write(tmp_path, record(3, config_hash="a" * 12 + "c" * 52))  # same file prefix, other configuration
    (tmp_path / "shapes" / "lora" / f"{'a' * 12}-seed9.json").write_text("{broken")
    assert [r["run_info"]["seed"] for r in reference_records(tmp_path, mine, own)] == [1]
    assert [r["run_info"]["seed"] for r in reference_records(tmp_path, mine)] == [0, 1]


def test_a_rate_with_more_reference_seeds_is_pointed_to(tmp_path):
    write(tmp_path, record(0, lr=1e-3))
    for seed in (0, 1, 2):
        write(tmp_path, record(seed, lr=3e-4, config_hash="d" * 64))
    mine = record(0, lr=1e-3)
    assert seeds_by_rate(tmp_path, mine) == {1e-3: [0], 3e-4: [0, 1, 2]}
    text = "\n".join(compare(mine, reference_records(tmp_path, mine), rates=seeds_by_rate(tmp_path, mine)))
    assert "the reference ran seeds 0, 1, 2 at lr 0.0003 (this run: lr 0.001); add --lr 0.0003" in text
    assert "no ok record of this configuration" in compare(record(0, config_hash="e" * 64), [])[0]


def test_bench_same_seed_code_and_threads_matches_the_reference_exactly_and_names_a_changed_package(
        tmp_path, capsys):
    """Two smoke runs (seed 0, one thread): the second, compared with the first as reference, matches it
    exactly; a reference made with another torch is named."""
    reference, mine = tmp_path / "reference", tmp_path / "mine"
    common = ["bench", "--method", "frozen", "--suite", "smoke", "--threads", "1", "--no-progress",
              "--checkpoint-dir", str(tmp_path / "checkpoints")]
    (tmp_path / "empty").mkdir()
    assert main([*common, "--out", str(reference), "--reference", str(tmp_path / "empty")]) == 0
    assert "no ok record of this configuration" in capsys.readouterr().out
    assert main([*common, "--out", str(mine), "--reference", str(reference)]) == 0
    out = capsys.readouterr().out
    assert f"seed 0: {EXACT}" in out and "environment: the reference's code, packages" in out

    (path,) = reference.rglob("*.json")
    changed = read_record(path)
    changed["meta_info"]["packages"]["torch"] = "1.0.0"
    atomic_write_text(path, json.dumps(changed))
    assert main([*common, "--out", str(mine), "--reference", str(reference)]) == 0  # already finished: no training
    out = capsys.readouterr().out
    assert out.startswith("already finished") and f"seed 0: {EXACT}" in out
    assert "environment differs from the reference: torch " in out and "(reference: 1.0.0)" in out


def _ignored(path: Path) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO).returncode == 0


@pytest.mark.parametrize("argv,option", [
    (["bench", "--method", "frozen"], "out"), (["sweep"], "out"),
    (["bench", "--method", "frozen"], "checkpoint_dir"), (["sweep"], "checkpoint_dir"),
])
def test_runs_write_only_git_ignored_paths_by_default(argv, option):
    """A clone stays clean after the README's commands: one's own runs never land in the committed results/."""
    if subprocess.run(["git", "rev-parse"], cwd=REPO, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    folder = Path(getattr(build_parser().parse_args(argv), option))
    assert _ignored(folder / "shapes" / "frozen" / "x-seed0.json")
    assert not _ignored(REPO / "results" / "shapes" / "frozen" / "x-seed0.json")  # the reference is committed


def test_preview_default_is_git_ignored(tmp_path, monkeypatch):
    if subprocess.run(["git", "rev-parse"], cwd=REPO, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    import benchmarks.cli as cli

    written = []
    monkeypatch.setattr("benchmarks.data.preview.save_preview", lambda dataset, n, out: written.append(out))
    assert cli.main(["data", "preview", "-n", "1"]) == 0
    assert written == [REPO / "runs" / "preview.png"] and _ignored(written[0])


@pytest.mark.parametrize("threads", [1, 2])
def test_a_cpu_run_records_the_cpu_and_the_vector_instructions_torch_uses(threads):
    """Two CPUs differ 3x in speed (AVX2 against AVX512) and may differ in float results: records say which."""
    import torch

    from benchmarks.environment import cpu_model, device_name

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        name = device_name(torch.device("cpu"))
    finally:
        torch.set_num_threads(before)
    unit = "thread" if threads == 1 else "threads"
    assert name == f"cpu ({cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, {threads} {unit})"
    assert Environment.of({"meta_info": {"device": name}}).threads == str(threads)
