"""The GPU check: one script that, in about 9 minutes on one H200, measures what the paper suites cost there.

Stages, each a subprocess of the ordinary CLI with a share of one deadline, each written as soon as it ends:
1. `profile --suite paper-vitb16` for every method at batch 32 and 416 px, at bf16 and fp16 (train and inference
   step time, peak memory, images/s): one document, `<out>/paper-vitb16-<device>.json`, that `report` reads;
2. a generated RefCOCO-format dataset of COCO-sized images (benchmarks/data/synthetic_refer.py);
3. a 200-step paper-suite `bench` of bridger and full on it, random weights: their records under
   `<out>/gpu-check/`, with a summary of every stage (`summary.json`, the device named).
Nothing is downloaded (the device machine has no network). `--tiny` runs the same stages at toy sizes on CPU in
seconds: what the tests run.

On a lent device machine, whose python3 has torch but not open_clip, fvcore or pycocotools:
    here, once:  python -m benchmarks.gpu_check --wheels .whl         (and: echo /.whl/ >> .git/info/exclude)
    there:       python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
                 PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check --out $OUT
    then copy $OUT/*.json to results/profile/ and $OUT/gpu-check/ to results/profile/gpu-check/.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from riscore.coerce import comma_items
from riscore.errors import UserError

REPO = Path(__file__).resolve().parent.parent
SUITE = "paper-vitb16"
BENCH_METHODS = ("bridger", "full")
STAGES = ("profile", "bench")
BENCH_RESERVE_SECONDS = 150.0  # kept from the profile for the benches (67 s each on an H200, data 4 s: measured)
PRECISIONS = ("bf16", "fp16")
# packages the device machine's image lacks (KINDS.md lists what it has), and what they need beyond it
WHEELS = ("open_clip_torch", "ftfy", "wcwidth", "pycocotools", "yacs", "termcolor")
SOURCE_ONLY = ("fvcore", "iopath")  # published as source: built into (pure Python) wheels here
DEVICE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


@dataclass(frozen=True)
class Scale:
    """Sizes of one check: the real one (GPU) or the tiny one (CPU, tests)."""

    suite_changes: dict[str, str]  # suite keys (TOML values) changed in a copy of the suite file; {}: the suite
    profile_args: tuple[str, ...]  # beyond --suite/--device
    bench_budget: tuple[str, ...]  # KEY=VALUE changes of the suite for the short bench
    images: int  # of the generated dataset
    height: int
    width: int
    memory_jobs: int
    threads: int  # 0: torch's default
    workers: int  # data-loading processes of the bench


REAL = Scale(suite_changes={},
             profile_args=("--batch-size", "32", "--image-size", "416", "--warmup", "3", "--repeats", "10"),
             bench_budget=("steps=200", "eval_every=100", "log_every=10", "eval_limit=64", "pretrained=none"),
             images=160, height=480, width=640, memory_jobs=6, threads=0, workers=8)
TINY = Scale(suite_changes={"backbone": '"risbench-tiny-vit"', "image_size": "64", "text_len": "16",
                            "batch_size": "4", "decoder_scale": '"tiny"'},
             profile_args=("--method", "bridger", "--warmup", "1", "--repeats", "1"),
             bench_budget=("steps=3", "eval_every=2", "log_every=1", "eval_limit=4", "pretrained=none"),
             images=12, height=48, width=64, memory_jobs=2, threads=1, workers=0)


def suite_argument(scale: Scale, folder: Path) -> str:
    """The suite's name, or a copy of its file (same name) with the scale's changes."""
    if not scale.suite_changes:
        return SUITE
    lines = (REPO / "benchmarks" / "suites" / f"{SUITE}.toml").read_text().splitlines()
    kept = [line for line in lines if line.split("=")[0].strip() not in scale.suite_changes]
    path = folder / f"{SUITE}.toml"
    path.write_text("\n".join([*kept, *(f"{k} = {v}" for k, v in scale.suite_changes.items())]) + "\n")
    return str(path)


class Clock:
    """Seconds left of the whole check; every stage's subprocess gets what remains."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def device_slug(device: str) -> str:
    """'NVIDIA H200' -> 'h200': the profile document's name says where it was measured."""
    if device == "cpu":
        return "cpu"
    import torch

    name = torch.cuda.get_device_name(torch.device(device)).lower().replace("nvidia", "")
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "cuda"


def run_stage(name: str, argv: Sequence[str], clock: Clock, env: dict[str, str] | None = None,
              reserve: float = 0.0) -> dict[str, Any]:
    """One CLI subprocess within the time left (less `reserve`, kept for later stages). Its error stream is
    copied to ours as it comes, so a stage cut short still shows how far it got; its last line is kept."""
    started = time.monotonic()
    left = clock.left() - reserve
    if left <= 0:
        return {"stage": name, "status": "skipped", "error": "no time left", "seconds": 0.0}
    print(f"== {name}: {' '.join(argv)}", flush=True)
    lines: list[str] = []

    def copy(stream: Any) -> None:  # drains the pipe whatever happens to our own stderr
        for line in stream:
            if line.strip():
                lines[:] = [line.strip()]
            try:
                sys.stderr.write(line)
            except (OSError, ValueError):
                pass

    # its own session: a timeout or Ctrl-C ends the whole group (memory workers, data loaders), not just the CLI
    with subprocess.Popen([sys.executable, "-m", "benchmarks", *argv], env={**os.environ, **(env or {})},
                          stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True) as process:
        copier = threading.Thread(target=copy, args=(process.stderr,), daemon=True)
        copier.start()
        try:
            code = process.wait(timeout=left)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return {"stage": name, "status": "timeout", "error": f"still running after {left:.0f} s",
                    "seconds": time.monotonic() - started}
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        finally:
            copier.join(timeout=10)
    return {"stage": name, "status": "ok" if code == 0 else "failed", "exit_code": code,
            "error": None if code == 0 else (lines[-1] if lines else ""), "seconds": time.monotonic() - started}


def profile_stage(scale: Scale, suite: str, device: str, out: Path, clock: Clock, reserve: float) -> dict[str, Any]:
    """Every method at both precisions in one profile (models and FLOPs made once); a checkout whose suites do
    not know fp16 yet profiles bf16 alone and says why."""
    document = out / f"{SUITE}-{device_slug(device)}.json"
    base = ["profile", "--suite", suite, "--device", device, *scale.profile_args, "--memory-jobs",
            str(scale.memory_jobs), "--threads", str(scale.threads), "--out", str(document)]
    result = run_stage("profile", [*base, "--sweep-precision", ",".join(PRECISIONS)], clock, reserve=reserve)
    result["precisions"] = list(PRECISIONS)
    if result["status"] == "failed" and "precision must be one of" in (result["error"] or ""):
        print(f"fp16 is not a precision this checkout knows ({result['error']}); profiling bf16 alone", flush=True)
        result = {**run_stage("profile", [*base, "--sweep-precision", "bf16"], clock, reserve=reserve),
                  "precisions": ["bf16"], "fp16_skipped": result["error"]}
    if result["status"] == "ok":
        result["document"] = document.name
    return result


def bench_stage(method: str, scale: Scale, suite: str, device: str, data: Path, work: Path, out: Path,
                clock: Clock) -> dict[str, Any]:
    """A paper-suite bench of `method` on the generated data; its record is copied to `out`."""
    budget = [arg for change in scale.bench_budget for arg in ("--budget", change)]
    work.mkdir(parents=True, exist_ok=True)
    argv = ["bench", "--method", method, "--suite", suite, *budget, "--allow-budget-override", "--device", device,
            "--out", str(work / "results"), "--checkpoint-dir", str(work / "checkpoints"), "--checkpoint-every", "0",
            "--no-save-model", "--no-progress", "--workers", str(scale.workers), "--threads", str(scale.threads),
            "--reference", str(work), "--force"]
    result = run_stage(f"bench {method}", argv, clock, env={"RISBENCH_DATA": str(data)})
    records = sorted((work / "results" / SUITE / method).glob("*.json"))
    if records:
        from benchmarks.store import atomic_write_text

        record = json.loads(records[-1].read_text())
        atomic_write_text(out / f"bench-{method}.json", json.dumps(record, indent=2) + "\n")
        info, cost = record["train_info"], record["cost"]
        result.update({
            "record": f"bench-{method}.json", "run_status": record["run_info"]["status"],
            "steps_done": info["steps_done"], "precision": info["precision"], "train_seconds": info["train_seconds"],
            "images_per_second": info["images_per_second"], "final_loss": info["final_loss"],
            "peak_memory_train_mb": cost["peak_memory_train_mb"], "memory_kind": cost["memory_kind"],
            "val_mIoU": record["results"].get("val", {}).get("mIoU")})
    return result


def check(out: Path, tiny: bool, device: str, seconds: float, stages: Sequence[str] = STAGES) -> dict[str, Any]:
    """All stages; the summary is rewritten after each, so a check cut short still says how far it got."""
    from benchmarks.data.synthetic_refer import write_synthetic_refer
    from benchmarks.environment import describe, resolve_device
    from benchmarks.store import atomic_write_text

    scale = TINY if tiny else REAL
    clock = Clock(seconds)
    details = out / "gpu-check"
    details.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"suite": SUITE, "tiny": tiny, "deadline_seconds": seconds,
                               "environment": describe(resolve_device(device)), "stages": []}

    def record(result: dict[str, Any]) -> None:
        summary["stages"].append(result)
        atomic_write_text(details / "summary.json", json.dumps(summary, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="risbench-gpu-check-") as tmp:
        suite = suite_argument(scale, Path(tmp))
        if "profile" in stages:
            reserve = BENCH_RESERVE_SECONDS if "bench" in stages and not tiny else 0.0
            record(profile_stage(scale, suite, device, out, clock, reserve))
        if "bench" not in stages:
            return summary
        started = time.monotonic()
        counts = write_synthetic_refer(Path(tmp) / "data", scale.images, scale.height, scale.width)
        record({"stage": "data", "status": "ok", "seconds": time.monotonic() - started, "expressions": counts,
                "image_size": [scale.height, scale.width]})
        for method in BENCH_METHODS:
            record(bench_stage(method, scale, suite, device, Path(tmp) / "data", Path(tmp) / method, details,
                               clock))
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    print(f"\nGPU check on {summary['environment']['device']} ({'tiny' if summary['tiny'] else 'full size'}):")
    for stage in summary["stages"]:
        figures = ""
        if "images_per_second" in stage:
            figures = (f" {stage['steps_done']} steps {stage['precision']}, {stage['images_per_second']:.1f} img/s, "
                       f"peak {stage['peak_memory_train_mb']:.0f} MB, final loss {stage['final_loss']:.4f}")
        extra = f" ({stage['error']})" if stage.get("error") else ""
        print(f"  {stage['stage']:<14} {stage['status']:<8} {stage['seconds']:7.1f} s{figures}{extra}")


def download_wheels(folder: Path) -> None:
    """The packages the device machine lacks, as wheels for its Python, at the versions installed here."""
    def pinned(names: Sequence[str]) -> list[str]:
        try:
            return [f"{name}=={metadata.version(name)}" for name in names]
        except metadata.PackageNotFoundError as exc:
            raise UserError(f"--wheels pins the versions installed here, and {exc.name} is not installed") from None

    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", DEVICE_PYTHON,
                    "--implementation", "cp", *platforms, "-d", str(folder), *pinned(WHEELS)], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(folder), *pinned(SOURCE_ONLY)], check=True)
    print(f"wheels in {folder}: carry it to the device machine (see python -m benchmarks.gpu_check --help)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="where the JSON goes (default: results/profile; with --tiny: "
                                      "runs/gpu-check)")
    parser.add_argument("--tiny", action="store_true", help="the same stages at toy sizes, on CPU, in seconds")
    parser.add_argument("--device", help="default: cuda (cpu with --tiny)")
    parser.add_argument("--seconds", type=float, default=540.0, help="deadline of the whole check (default 540)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma-separated, of profile,bench (default both: to rerun one that was cut short)")
    parser.add_argument("--wheels", metavar="DIR", help="only download the device machine's missing wheels here")
    args = parser.parse_args(argv)
    try:
        if args.wheels:
            download_wheels(Path(args.wheels))
            return 0
        if not args.seconds > 0:
            raise UserError(f"--seconds must be a positive number of seconds, got {args.seconds}")
        stages = comma_items(args.stages, "--stages")
        if not stages or set(stages) - set(STAGES):
            raise UserError(f"--stages {args.stages!r}: give one or more of {', '.join(STAGES)}")
        out = Path(args.out or REPO / ("runs/gpu-check" if args.tiny else "results/profile"))
        summary = check(out, args.tiny, args.device or ("cpu" if args.tiny else "cuda"), args.seconds, stages)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0 if all(stage["status"] == "ok" for stage in summary["stages"]) else 1


if __name__ == "__main__":
    sys.exit(main())
