"""What a method costs: FLOPs, parameters, peak memory and throughput, per method, side by side.

The profiler builds its own models with random weights (cost does not depend on weight values) and
never sees a training run's model. It touches no global RNG: inputs come from its own generator and
`profile_run`, which the training harness calls, restores every RNG state it could have moved.
Memory is measured in a fresh subprocess per measurement, so the peak is that of one model doing
one thing; throughput is timed in this process with the methods interleaved round by round, so a
load change on the machine hits every method alike and the ratios between methods stay meaningful.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import pickle
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import validate
from benchmarks.build import build_base_model, build_model
from benchmarks.environment import cuda_index
from benchmarks.flops import (
    CONVENTION,
    OPEN_CLIP_PROFILE,
    FlopReport,
    PartModules,
    clip_tower_flops,
    count_flops,
    split_parts,
    torch_flops,
)
from benchmarks.step import Precision, autocast_dtype, make_optimizer, training_step
from benchmarks.suites import Suite, load_suite
from methods.backbone import Backbone, BackboneConfig
from methods.decoder import segmentation_loss
from methods.model import RISModel
from riscore.coerce import coerce, comma_items
from riscore.errors import UserError

PROBE_TEXT = "the small red circle to the left of the blue square"
GIGA = 1e9
MIB = 2**20


@dataclass(frozen=True)
class ProfileOptions:
    """How long to measure. Timings are medians over `repeats` rounds after `warmup` untimed calls."""

    device: str = "cpu"
    warmup: int = 2
    repeats: int = 5
    memory: bool = True
    throughput: bool = True
    threads: int = 0  # torch CPU threads in each memory subprocess; 0 = this process's, shared among memory_jobs
    memory_jobs: int = 1  # memory subprocesses at a time: each measures its own process, so they may overlap

    def __post_init__(self) -> None:
        if self.memory_jobs < 1:
            raise UserError(f"memory_jobs must be >= 1, got {self.memory_jobs}")
        if self.warmup < 1:
            raise UserError(f"warmup must be >= 1 (the first call allocates), got {self.warmup}")
        if self.repeats < 1:
            raise UserError(f"repeats must be >= 1, got {self.repeats}")
        if self.threads < 0:
            raise UserError(f"threads must be >= 0, got {self.threads}")


def profile_suite(suite: Suite, **overrides: Any) -> Suite:
    """The suite with random weights and the given fields (backbone, image_size, ...) replaced."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(suite.replace(changes), pretrained=None)


@dataclass
class Profiled:
    """A model built for profiling, with the method and config that adapted it."""

    method: str
    config: Any
    model: RISModel


def build_profiled(suite: Suite, method: str, config: Any) -> Profiled:
    return Profiled(method, config, build_model(suite, method, config))


def part_modules(model: RISModel) -> PartModules:
    """Module names of each part, found by identity rather than by assuming a layout."""
    names = {id(m): n for n, m in model.named_modules()}
    clip = model.backbone.clip
    text = [clip.transformer, clip.token_embedding, clip.ln_final, clip.text_projection]
    return PartModules(
        image_tower=[names[id(clip.visual)]],
        text_tower=[names[id(m)] for m in text if id(m) in names],
        decoder=[names[id(model.decoder)]],
    )


@dataclass
class Batch:
    images: torch.Tensor
    tokens: torch.Tensor
    masks: torch.Tensor

    @property
    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images, self.tokens

    def to(self, device: torch.device) -> Batch:
        return Batch(self.images.to(device), self.tokens.to(device), self.masks.to(device))


def example_batch(model: RISModel, batch_size: int) -> Batch:
    """Random images and masks from the profiler's own generator, and a real tokenised expression."""
    gen = torch.Generator().manual_seed(0)
    size = model.backbone.config.image_size
    return Batch(
        images=torch.rand(batch_size, 3, size, size, generator=gen),
        tokens=model.backbone.tokenize([PROBE_TEXT] * batch_size),
        masks=(torch.rand(batch_size, size, size, generator=gen) > 0.5).float(),
    )


def make_train_step(model: RISModel, suite: Suite, batch: Batch, device: torch.device) -> Callable[[], float]:
    """One optimisation step as the harness takes it (optimizer, autocast, clipping); returns the loss."""
    optimizer = make_optimizer(suite, model.trainable_parameters(), suite.lr)
    precision = Precision.of(suite, device)
    scaler = precision.scaler(device)

    def step() -> float:
        model.train()
        return training_step(model, suite, optimizer, batch.images, batch.tokens, batch.masks, precision.train,
                             scaler)

    return step


def make_infer_step(model: RISModel, suite: Suite, batch: Batch, device: torch.device) -> Callable[[], float]:
    """One inference batch as evaluation runs it; returns the mean logit so the work cannot be skipped."""
    amp = autocast_dtype(suite, device)

    def step() -> float:
        model.eval()
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            return model(batch.images, batch.tokens).float().mean().item()

    return step


STEPS = {"train": make_train_step, "infer": make_infer_step}


def _slope_and_intercept(counts: Sequence[int]) -> tuple[float, float]:
    """GFLOPs per image and per batch of an affine count taken at batch 1 and 2.

    The intercept is work a forward does once whatever the batch (a LoHa, DoRA or OFT weight built from
    its factors); keeping it apart keeps per-image figures and per-step totals right at every batch size.
    """
    one, two = counts
    return (two - one) / GIGA, (2 * one - two) / GIGA


def _inference_reports(model: RISModel, device: torch.device) -> list[FlopReport]:
    model.eval()
    return [count_flops(model, example_batch(model, n).to(device).inputs) for n in (1, 2)]


def _train_counts(model: RISModel, device: torch.device) -> list[int]:
    """torch's counter over forward, loss and backward in train mode (the optimizer update is elementwise)."""
    counts = []
    for n in (1, 2):
        batch = example_batch(model, n).to(device)
        model.train()
        counts.append(torch_flops(lambda b=batch: segmentation_loss(model(*b.inputs), b.masks).backward()))
        model.zero_grad(set_to_none=True)
    return counts


def base_parts(suite: Suite, device: torch.device) -> dict[str, float]:
    """GFLOPs per image of the unadapted model, by part (fvcore, eval mode)."""
    model = build_base_model(suite).to(device)
    modules = part_modules(model)
    one, two = (split_parts(r, modules) for r in _inference_reports(model, device))
    return {k: (two[k] - one[k]) / GIGA for k in one}


def flop_profile(profiled: Profiled, base: dict[str, float], device: torch.device) -> dict[str, Any]:
    """Inference GFLOPs per image by part and training GFLOPs, counted at batch 1 and 2 on `device`, where
    the model is. A count depends on shapes alone, not on the device; counting where the model runs takes
    seconds at paper scale on a GPU instead of minutes per method on CPU.

    `method` is what the adapted model computes beyond the unadapted one (`base`, from base_parts):
    new modules, wrapped layers and longer token sequences alike, wherever in the towers they run.
    """
    reports = _inference_reports(profiled.model, device)
    per_image, fixed = _slope_and_intercept([r.total for r in reports])
    train_per_image, train_fixed = _slope_and_intercept(_train_counts(profiled.model, device))
    parts = {k: base[k] for k in ("image_tower", "text_tower", "decoder", "other")}
    return {
        "gflops_per_image": per_image,
        "gflops_per_image_parts": {**parts, "method": per_image - base["total"], "total": per_image},
        "gflops_per_forward_fixed": fixed,
        "train_gflops_per_image": train_per_image,
        "train_gflops_per_step_fixed": train_fixed,
        "uncounted_ops": reports[0].uncounted_ops,
        "flop_convention": CONVENTION,
    }


@contextmanager
def own_rng(device: torch.device) -> Iterator[None]:
    """Whatever runs inside leaves torch's CPU (and `device`'s), numpy's and Python's global RNG states as
    they were."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[cuda_index(device)] if device.type == "cuda" else []):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


CPU = torch.device("cpu")
_RUN_FLOPS: dict[str, dict[str, Any]] = {}  # profile_run's figures by repr((suite, method, config))


def profile_run(suite: Suite, method: str, config: Any, device: torch.device = CPU) -> dict[str, Any]:
    """FLOP figures for a run record (cost.gflops_per_image etc.): a few seconds on the tiny backbone.

    Builds its own random-weight model (counted on the run's `device`) and restores every RNG, so the run it
    describes computes exactly what it would have computed without it. The figures depend on the model's
    structure alone, so they are counted once per process for each suite, method and config (a sweep's seeds and
    rates, a resumed run) and each caller gets its own copy.
    """
    suite = profile_suite(suite)
    key = repr((suite, method, config))
    if key not in _RUN_FLOPS:
        with own_rng(device):
            profiled = build_profiled(suite, method, config)
            profiled.model.to(device)
            _RUN_FLOPS[key] = flop_profile(profiled, base_parts(suite, device), device)
    return copy.deepcopy(_RUN_FLOPS[key])


# ---- memory: one fresh process per measurement ----

def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc, in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> bool:
    """Start the peak RSS from the current size (Linux clear_refs 5); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class MemoryJob:
    suite: Suite
    method: str
    config: Any
    kind: str  # "train" or "infer"
    device: str
    warmup: int
    threads: int


def measure_memory(job: MemoryJob) -> dict[str, Any]:
    """Run in a fresh process: build, settle, then peak memory over warm-up calls and one more.

    CPU: peak resident set of the whole process (baseline = resident size after the build, so the
    reader can subtract it); CUDA: torch.cuda.max_memory_allocated (baseline = allocated after build).
    """
    torch.set_num_threads(job.threads)
    device = torch.device(job.device)
    profiled = build_profiled(job.suite, job.method, job.config)
    model = profiled.model.to(device)
    step = STEPS[job.kind](model, job.suite, example_batch(model, job.suite.batch_size).to(device), device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline, reset = torch.cuda.memory_allocated(device) / MIB, True
    else:
        baseline, reset = _rss_mb("VmRSS"), _reset_peak_rss()
    for _ in range(job.warmup + 1):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak, kind = torch.cuda.max_memory_allocated(device) / MIB, "cuda_max_allocated"
    else:
        peak, kind = _rss_mb("VmHWM"), "cpu_subprocess_peak_rss"
    return {"peak_mb": peak, "baseline_mb": baseline, "kind": kind, "peak_since_build": reset}


def measure_memory_in_subprocess(job: MemoryJob) -> dict[str, Any]:
    """`measure_memory` in a fresh interpreter (not multiprocessing: no re-import of the caller's script)."""
    with tempfile.TemporaryDirectory(prefix="risbench-memory-") as tmp:
        job_path, result_path = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job_path.write_bytes(pickle.dumps(job))
        code = "import sys; from benchmarks.profile import memory_worker; memory_worker(*sys.argv[1:])"
        done = subprocess.run([sys.executable, "-c", code, str(job_path), str(result_path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"memory measurement of {job.method} ({job.kind}) failed:\n{tail}")
        return pickle.loads(result_path.read_bytes())


def memory_worker(job_path: str, result_path: str) -> None:
    """Entry point of the measuring subprocess."""
    job = pickle.loads(Path(job_path).read_bytes())
    Path(result_path).write_bytes(pickle.dumps(measure_memory(job)))


# ---- throughput: interleaved in this process ----

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(steps: dict[Any, Callable[[], float]], options: ProfileOptions,
                   device: torch.device) -> dict[Any, float]:
    """Median seconds per call of each step; every round times each step once, in turn."""
    for step in steps.values():
        for _ in range(options.warmup):
            step()
    times: dict[Any, list[float]] = {key: [] for key in steps}
    for _ in range(options.repeats):
        for key, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


# ---- one grid point and the sweep ----

def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def profile_point(suite: Suite, models: list[Profiled], flops: dict[str, dict],
                  options: ProfileOptions) -> list[dict[str, Any]]:
    """Rows for every method at the suite's image size and batch size."""
    device = torch.device(options.device)
    rows = []
    for profiled in models:
        counts = profiled.model.parameter_counts().to_dict()
        f = flops[profiled.method]
        rows.append({
            "method": profiled.method, "backbone": suite.backbone, "image_size": suite.image_size,
            "text_len": suite.text_len, "batch_size": suite.batch_size, "device": device.type,
            **Precision.of(suite, device).describe(), "weights": "random",
            **f, "params": counts, "train_gflops_per_step":
                f["train_gflops_per_step_fixed"] + f["train_gflops_per_image"] * suite.batch_size,
        })
    if options.memory:
        threads = options.threads or max(1, torch.get_num_threads() // options.memory_jobs)
        jobs = [MemoryJob(suite, p.method, p.config, kind, options.device, options.warmup, threads)
                for p in models for kind in STEPS]
        _log(f"memory: {len(jobs)} measurements at {suite.image_size}px batch {suite.batch_size} "
             f"{suite.precision}, {options.memory_jobs} at a time")
        with ThreadPoolExecutor(options.memory_jobs) as pool:
            measured = dict(zip(((j.method, j.kind) for j in jobs), pool.map(measure_memory_in_subprocess, jobs),
                                strict=True))
        for row in rows:
            memory: dict[str, Any] = {}
            for kind in STEPS:
                got = measured[row["method"], kind]
                memory.update({"kind": got["kind"], "peak_since_build": got["peak_since_build"],
                               f"{kind}_peak_mb": got["peak_mb"], f"{kind}_baseline_mb": got["baseline_mb"]})
            row["memory"] = memory
    if options.throughput:
        _log(f"timing {len(models)} methods at {suite.image_size}px batch {suite.batch_size}")
        steps = {}
        for profiled in models:
            model = profiled.model.to(device)
            batch = example_batch(model, suite.batch_size).to(device)
            for kind, make in STEPS.items():
                steps[profiled.method, kind] = make(model, suite, batch, device)
        seconds = median_seconds(steps, options, device)
        for row in rows:
            train, infer = seconds[row["method"], "train"], seconds[row["method"], "infer"]
            row["throughput"] = {
                "train_step_s": train, "train_images_per_s": suite.batch_size / train,
                "infer_batch_s": infer, "infer_images_per_s": suite.batch_size / infer,
                "warmup": options.warmup, "repeats": options.repeats,
            }
    return rows


def method_configs(methods: Sequence[str], settings: dict[str, str] | None = None) -> dict[str, Any]:
    """Each method's config with the `settings` (`--set`) it has; a setting none of them has is refused."""
    from methods import get_method

    settings = settings or {}
    fields = {m: {f.name for f in dataclasses.fields(get_method(m).config_cls)} for m in methods}
    unused = [k for k in settings if not any(k in names for names in fields.values())]
    if unused:
        raise UserError(f"--set {', '.join(unused)}: no profiled method ({', '.join(methods)}) has this option; "
                        "see bench --list-methods")
    return {m: get_method(m).make_config({k: v for k, v in settings.items() if k in fields[m]}) for m in methods}


def profile(suite: Suite, methods: Sequence[str], options: ProfileOptions, *,
            image_sizes: Sequence[int] = (), batch_sizes: Sequence[int] = (), precisions: Sequence[str] = (),
            settings: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per (image size, batch size, precision, method); the suite's own when none are given. Models
    and FLOPs are made once per image size: they do not depend on batch size or precision. `settings` are
    method options, each given to every method that has it."""
    configs = method_configs(methods, settings)
    device = torch.device(options.device)
    rows: list[dict[str, Any]] = []
    for size in image_sizes or [suite.image_size]:
        sized = suite.replace({"image_size": size})
        _log(f"building {len(methods)} models at {size}px and counting FLOPs")
        models = [build_profiled(sized, m, configs[m]) for m in methods]
        for profiled in models:
            profiled.model.to(device)
        base = base_parts(sized, device)
        flops = {p.method: flop_profile(p, base, device) for p in models}
        if device.type == "cuda":
            torch.cuda.empty_cache()  # counting's cached blocks would crowd the memory subprocesses' GPU
        for batch in batch_sizes or [suite.batch_size]:
            for precision in precisions or [suite.precision]:
                point = sized.replace({"batch_size": batch, "precision": precision})
                rows += profile_point(point, models, flops, options)
    return rows


def tower_profile(arch: str, image_size: int, text_len: int) -> dict[str, Any]:
    """Image and text GFLOPs of the bare CLIP encoders, comparable with open_clip's profile table."""
    clip = Backbone(BackboneConfig(arch=arch, image_size=image_size, text_len=text_len)).clip
    image, text = clip_tower_flops(clip, image_size, text_len)
    published = OPEN_CLIP_PROFILE.get(arch) if (image_size, text_len) == (224, 77) else None
    return {
        "backbone": arch, "image_size": image_size, "text_len": text_len,
        "image_gflops": image.total / GIGA, "text_gflops": text.total / GIGA,
        "published_image_gflops": published[0] if published else None,
        "published_text_gflops": published[1] if published else None,
        "uncounted_ops": {"image": image.uncounted_ops, "text": text.uncounted_ops},
        "flop_convention": CONVENTION,
    }


# ---- output ----

def rows_table(rows: list[dict[str, Any]]):
    """The figures a reader compares, one line per row (memory and timing columns when measured)."""
    import pandas as pd

    table = []
    for r in rows:
        p, g = r["params"], r["gflops_per_image_parts"]
        line = {
            "method": r["method"], "px": r["image_size"], "batch": r["batch_size"],
            "GFLOPs/img": r["gflops_per_image"], "image": g["image_tower"], "text": g["text_tower"],
            "added": g["method"], "decoder": g["decoder"], "fixed/fwd": r["gflops_per_forward_fixed"],
            "train GFLOPs/step": r["train_gflops_per_step"],
            "params M": p["total"] / 1e6, "trainable M": p["trainable"] / 1e6,
            "trainable %": 100 * p["ratio_trainable"], "added %": 100 * p["ratio_added"],
            "paper ratio": f"{100 * p['ratio_paper']:.2f}%",  # added / image tower at 224 px, as the paper prints it
        }
        if "memory" in r:
            m = r["memory"]
            line |= {"train MiB": m["train_peak_mb"], "infer MiB": m["infer_peak_mb"],
                     "base MiB": m["train_baseline_mb"]}
        if "throughput" in r:
            t = r["throughput"]
            line |= {"train step s": t["train_step_s"], "train img/s": t["train_images_per_s"],
                     "infer img/s": t["infer_images_per_s"]}
        table.append(line)
    return pd.DataFrame(table)


def ratio_table(rows: list[dict[str, Any]], reference: str = "full"):
    """Each method's cost as a multiple of `reference` at the same image and batch size."""
    import pandas as pd

    ref = {(r["image_size"], r["batch_size"]): r for r in rows if r["method"] == reference}
    figures = {
        "GFLOPs/img": lambda r: r["gflops_per_image"],
        "train GFLOPs": lambda r: r["train_gflops_per_step"],
        "train MiB": lambda r: r.get("memory", {}).get("train_peak_mb"),
        "infer MiB": lambda r: r.get("memory", {}).get("infer_peak_mb"),
        "train step s": lambda r: r.get("throughput", {}).get("train_step_s"),
        "infer img/s": lambda r: r.get("throughput", {}).get("infer_images_per_s"),
    }
    table = []
    for r in rows:
        base = ref.get((r["image_size"], r["batch_size"]))
        if base is None:
            continue
        line = {"method": r["method"], "px": r["image_size"], "batch": r["batch_size"]}
        for name, get in figures.items():
            mine, theirs = get(r), get(base)
            if mine is not None and theirs:
                line[f"{name} x{reference}"] = mine / theirs
        table.append(line)
    return pd.DataFrame(table)


def _towers_table(rows: list[dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame([{k: v for k, v in r.items() if k not in ("uncounted_ops", "flop_convention")}
                         for r in rows])


def _int_list(text: str | None, flag: str) -> list[int]:
    if not text:
        return []
    values = coerce(text, tuple[int, ...], flag)
    if not values or any(v <= 0 for v in values):
        raise UserError(f"{flag} expects positive integers, got {text!r}")
    return validate.unique(values, flag)


def cmd_profile(args: argparse.Namespace) -> int:
    from benchmarks.environment import describe, resolve_device
    from benchmarks.store import atomic_write_text
    from methods import get_method, list_methods
    from methods.backbone import check_arch, check_input_size

    if args.out:
        validate.writable_file(args.out, "--out", (".json",))
    if args.threads:
        torch.set_num_threads(args.threads)
    suite = profile_suite(load_suite(args.suite), backbone=args.backbone, image_size=args.image_size,
                          text_len=args.text_len, batch_size=args.batch_size)
    check_arch(suite.backbone)  # before the first progress line
    image_sizes = _int_list(args.sweep_image_size, "--sweep-image-size")
    for size in image_sizes or [suite.image_size]:  # every size a model will be built at, before any is
        check_input_size(suite.backbone, size, suite.text_len)
    device = resolve_device(args.device)
    if args.clip_towers:
        rows = [tower_profile(suite.backbone, suite.image_size, suite.text_len)]
        table = _towers_table(rows)
    else:
        methods = validate.unique([get_method(name).name for name in args.method], "--method") or list_methods()
        settings = validate.key_values(args.set, "--set", lambda key, text: method_configs(methods, {key: text}))
        method_configs(methods, settings)  # so do options no profiled method has
        options = ProfileOptions(device=str(device), warmup=args.warmup, repeats=args.repeats,
                                 memory=not args.flops_only, throughput=not args.flops_only,
                                 threads=args.threads, memory_jobs=args.memory_jobs)
        precisions = validate.unique(comma_items(args.sweep_precision or "", "--sweep-precision"),
                                     "--sweep-precision")
        for precision in precisions:  # an unknown precision fails here, before minutes of work
            suite.replace({"precision": precision})
        rows = profile(suite, methods, options,
                       image_sizes=image_sizes,
                       batch_sizes=_int_list(args.sweep_batch_size, "--sweep-batch-size"), precisions=precisions,
                       settings=settings)
        table = rows_table(rows)
    document = {"flop_convention": CONVENTION, "weights": "random", "suite": suite.name,
                "environment": describe(device), "rows": rows}
    text = json.dumps(document, indent=2) + "\n"
    if args.out:
        atomic_write_text(Path(args.out), text)
    if args.json:
        sys.stdout.write(text)
        return 0
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 40, "display.precision", 3):
        print(f"{suite.name} suite, {suite.backbone}, random weights; {CONVENTION}")
        print(table.to_string(index=False))
        if not args.clip_towers and any(r["method"] == "full" for r in rows) and len(rows) > 1:
            print("\nrelative to full:")
            print(ratio_table(rows).to_string(index=False))
    if args.out:
        print(f"wrote {args.out}")
    return 0

