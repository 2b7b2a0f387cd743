"""Property: two outputs of one command never mix. A folder option inside a results folder (checkpoints, saved
models or event files among run records; a report among the records it reads) and two file options naming one
file (the probability map over the overlay, an overlay over its input image) are refused in one line, exit 2,
before any model is built or anything is written, however the path is spelled."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from benchmarks.cli import REPO, main

SEED = 5


def spellings(rng: random.Random, folder: str) -> list[str]:
    """The folder itself, and paths inside it, spelled several ways (trailing slash, '..', './')."""
    name = "".join(rng.choice("abcxyz") for _ in range(4))
    return [folder, folder + "/", f"{folder}/{name}", f"{folder}/{name}/deeper",
            f"{folder}/../{Path(folder).name}/{name}", f"{folder}/./{name}"]


def overlap_cases(rng: random.Random) -> list[list[str]]:
    cases = []
    run = ["--suite", "smoke", "--threads", "1", "--no-progress"]
    for command in ("bench", "sweep"):
        head = [command, *(["--method", "frozen"] if command == "bench" else []), *run]
        folders = ["--checkpoint-dir", "--models-dir"] + (["--log-dir"] if command == "bench" else [])
        for flag in folders:
            for inside in spellings(rng, "{tmp}/results"):
                cases.append([*head, "--out", "{tmp}/results", flag, inside])
            cases.append([*head, "--out", "{tmp}/results", flag, str(REPO / "results" / "x")])
    for inside in spellings(rng, "{tmp}/results"):
        cases.append(["report", "--results", "{tmp}/results", "--out", inside])
    for first, second in (("--out", "--probabilities"), ("--image", "--out"), ("--image", "--probabilities")):
        for spelled in ("{tmp}/a.png", "{tmp}/./a.png", "{tmp}/x/../a.png"):
            argv = ["predict", "--model", "{tmp}/model", "--text", "the red circle", "--out", "{tmp}/o.png"]
            argv += ["--image", "{tmp}/i.png"] if "--image" not in (first, second) else []
            for flag, path in ((first, "{tmp}/a.png"), (second, spelled)):
                if flag in argv:
                    argv[argv.index(flag) + 1] = path
                else:
                    argv += [flag, path]
            cases.append(argv)
    return cases


def test_overlapping_outputs_are_refused_before_any_work(tmp_path, capsys, no_model_built):
    cases = overlap_cases(random.Random(SEED))
    assert len(cases) >= 40
    for k, argv in enumerate(cases):
        case = tmp_path / f"case{k}"
        (case / "results").mkdir(parents=True)
        (case / "a.png").write_bytes(b"png")
        (case / "i.png").write_bytes(b"png")
        before = sorted(case.rglob("*"))
        argv = [a.replace("{tmp}", str(case)) for a in argv]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, f"{argv}: exit {code}\n{err}"
        assert err.startswith("error: ") and err.count("\n") == 1, f"{argv}: {err}"
        assert ("is inside" in err or "both name" in err) and "Traceback" not in err, f"{argv}: {err}"
        assert sorted(case.rglob("*")) == before and (case / "a.png").read_bytes() == b"png", argv


@pytest.mark.parametrize("argv", [
    ["report", "--results", "{tmp}/results", "--out", "{tmp}/reports"],
    ["report", "--results", "{tmp}/results/smoke", "--out", "{tmp}/results-reports"],
])
def test_a_report_beside_its_records_is_still_written(tmp_path, capsys, argv):
    (tmp_path / "results" / "smoke").mkdir(parents=True)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 0
