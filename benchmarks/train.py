"""One run: build the model, adapt it with a method, train under the suite's budget, evaluate, record.

`run` reads top to bottom as what a run does (nanoGPT style); the loop, the evaluation and the record it
writes are one function each.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmarks import distributed, environment, interrupts, memory_cap
from benchmarks.build import build_model
from benchmarks.checkpoint import Checkpointer
from benchmarks.data import build_dataset
from benchmarks.data.targets import training_collate
from benchmarks.evaluate import eval_subset, evaluate, trivial_baselines
from benchmarks.live_log import LiveLog
from benchmarks.profile import profile_run
from benchmarks.sampling import StepBatches, epoch_order
from benchmarks.saved_model import save_model
from benchmarks.selection import Selection, selection_set
from benchmarks.step import Diverged, Precision, lr_factor, make_optimizer, training_step
from benchmarks.store import SCHEMA_VERSION, ResultStore, RunSpec, run_info
from benchmarks.suites import Suite
from methods.model import RISModel
from riscore.errors import UserError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """CUDA: peak allocated by tensors. CPU: the process's peak resident set size (ru_maxrss)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_process_peak_rss"


@dataclass
class Progress:
    """Where a run's training stands: what a checkpoint saves and what the record reports, also after a fault."""

    step: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)  # mean loss per `log_every` steps
    window: list[float] = field(default_factory=list)  # losses since the last curve point
    seconds_before: float = 0.0  # training time spent before a resume
    anytime: list[dict[str, float]] = field(default_factory=list)  # evaluations during training (anytime curve)
    started: float | None = None  # perf_counter() when this process started (or resumed) training
    stopped: float | None = None
    evaluating: float = 0.0  # seconds since `started` spent on evaluations (anytime, selection): not training time
    selection: Selection = field(default_factory=Selection)  # checkpoint selection (benchmarks/selection.py)

    @classmethod
    def resumed_from(cls, state: dict[str, Any]) -> Progress:
        return cls(state["step"], state["curve"], state["window"], state["train_seconds"], state["anytime"],
                   selection=Selection.from_state(state["selection"]))

    def seconds(self) -> float:
        if self.started is None:
            return self.seconds_before
        return self.seconds_before + (self.stopped or time.perf_counter()) - self.started - self.evaluating

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "curve": self.curve, "window": self.window, "train_seconds": self.seconds(),
                "anytime": self.anytime, "selection": self.selection.state()}

    def log(self, loss: float, suite: Suite, lr: float) -> bool:
        """Count one step; True when it closes a curve point."""
        self.step += 1
        self.window.append(loss)
        if self.step % suite.log_every and self.step != suite.steps:
            return False
        self.curve.append({"step": self.step, "loss": float(np.mean(self.window)), "lr": lr})
        self.window = []
        return True

    def anytime_due(self, suite: Suite) -> bool:
        return self.step % suite.anytime_every == 0 or self.step == suite.steps

    def add_anytime(self, miou: float, suite: Suite, evaluation_seconds: float) -> None:
        self.evaluating += evaluation_seconds
        self.anytime.append({"step": self.step, "images_seen": self.step * suite.batch_size,
                             "train_seconds": self.seconds(), "mIoU": miou})


def train(model: RISModel, net: torch.nn.Module, spec: RunSpec, optimizer: torch.optim.Optimizer,
          scheduler: torch.optim.lr_scheduler.LRScheduler, progress: Progress, *, device: torch.device,
          precision: Precision, scaler: torch.amp.GradScaler, show: bool, checkpoints: Checkpointer | None,
          checkpoint_every: int, workers: int, live_log: LiveLog) -> None:
    """The training loop from `progress.step` to the suite's last step (`net`: `model` or its DDP wrapper)."""
    suite = spec.suite
    train_set = build_dataset(suite.dataset, suite.train_split, suite.image_size, suite.dataset_options)
    sampler = StepBatches(epoch_order(suite.sampling, train_set), suite.batch_size, spec.seed, progress.step,
                          suite.steps, distributed.rank(), distributed.world_size())
    # Its own generator: a DataLoader otherwise draws its worker seed from the global RNG, which would
    # shift the dropout stream of a resumed run by one draw.
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=training_collate(suite.target),
                        num_workers=workers, generator=torch.Generator().manual_seed(spec.seed))
    evaluations = Evaluations(anytime_subset(suite), selection_set(suite) if suite.select_every else None, live_log)
    net.train()
    live_log.start(optimizer, progress.step)
    progress.started = time.perf_counter()
    # A run resumed from an interrupt at the end of a step whose evaluations were then skipped makes them up:
    # the weights are that step's, so the numbers are the uninterrupted run's.
    evaluations.run_due(model, progress, suite, device, precision)
    bar = tqdm(loader, desc=f"{spec.method} seed {spec.seed}", disable=not show, file=sys.stderr,
               dynamic_ncols=True, initial=progress.step, total=suite.steps)
    for batch in bar:
        with interrupts.deferred():  # an interrupt waits for the step's end: checkpoints hold whole steps
            images = batch["image"].to(device, non_blocking=True)
            masks = batch["mask"].to(device, non_blocking=True)
            tokens = model.backbone.tokenize(batch["text"]).to(device)
            loss = training_step(net, suite, optimizer, images, tokens, masks, precision.train, scaler)
            scheduler.step()
            closed_point = progress.log(loss, suite, optimizer.param_groups[0]["lr"])
        if closed_point:
            bar.set_postfix(loss=f"{progress.curve[-1]['loss']:.4f}")
            live_log.curve_point(progress.curve[-1])
        evaluations.run_due(model, progress, suite, device, precision)
        if checkpoints and checkpoint_every and progress.step % checkpoint_every == 0 and progress.step < suite.steps:
            checkpoints.save(progress.step, model, optimizer, scheduler, progress.state(), scaler)
    progress.stopped = time.perf_counter()
    bar.close()


@dataclass(frozen=True)
class Evaluations:
    """What training scores along the way: the anytime subset, and the selection set when the suite selects."""

    anytime: torch.utils.data.Dataset
    selection: torch.utils.data.Dataset | None
    live_log: LiveLog

    def run_due(self, model: RISModel, progress: Progress, suite: Suite, device: torch.device,
                precision: Precision) -> None:
        """The evaluations due at `progress.step` that it does not hold yet (none at step 0)."""
        def score(dataset: torch.utils.data.Dataset) -> tuple[dict[str, Any], float]:
            started = time.perf_counter()
            scored = evaluate(model, dataset, batch_size=suite.batch_size, threshold=suite.threshold, device=device,
                              autocast_dtype=precision.eval)
            return scored, time.perf_counter() - started

        step = progress.step
        if step and progress.anytime_due(suite) and not any(p["step"] == step for p in progress.anytime):
            scored, seconds = score(self.anytime)
            progress.add_anytime(scored["mIoU"], suite, seconds)
            self.live_log.evaluation(step, suite.lr_search_split, scored, model, self.anytime, device=device,
                                     amp=precision.eval, threshold=suite.threshold)
        selection = progress.selection
        if self.selection is not None and step and selection.due(step, suite) and not selection.holds(step):
            scored, seconds = score(self.selection)
            progress.evaluating += seconds
            selection.consider(step, scored["mIoU"], model, seconds, len(self.selection))


def anytime_subset(suite: Suite) -> torch.utils.data.Dataset:
    """The fixed expressions scored during training: the first `anytime_size` of the search split."""
    split = build_dataset(suite.dataset, suite.lr_search_split, suite.image_size, suite.dataset_options)
    return eval_subset(split, suite.anytime_size)


def anytime_record(suite: Suite, done: Progress, train_gflops_per_image: float | None) -> dict[str, Any]:
    """The anytime curve as the record keeps it, with cumulative training FLOPs, and its best point."""
    per_image = train_gflops_per_image
    points = [{**p, "train_gflops": None if per_image is None else p["images_seen"] * per_image} for p in done.anytime]
    best = max(points, key=lambda p: (p["mIoU"], -p["step"]), default=None)
    return {"anytime": points, "anytime_split": suite.lr_search_split, "anytime_expressions": suite.anytime_size,
            "best_anytime_step": best["step"] if best else None}


def evaluate_splits(model: RISModel, suite: Suite, device: torch.device,
                    amp: torch.dtype | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics with the showcase masks, trivial baselines) per evaluation split."""
    results, baselines = {}, {}
    for split in suite.eval_splits:
        dataset = eval_subset(build_dataset(suite.dataset, split, suite.image_size, suite.dataset_options),
                              suite.eval_limit)
        results[split] = evaluate(model, dataset, batch_size=suite.batch_size, threshold=suite.threshold,
                                  device=device, autocast_dtype=amp, showcase=True)
        baselines[split] = trivial_baselines(dataset)
    return results, baselines


def count_flops(spec: RunSpec, device: torch.device) -> dict[str, Any]:
    """The run's GFLOPs (its own models and RNG: it cannot change the run's numbers); a counting problem is
    noted in the record rather than losing a finished run."""
    try:
        return profile_run(spec.suite, spec.method, spec.method_config, device)
    except Exception as exc:
        return {"flops_error": f"{type(exc).__name__}: {exc}"}


def run(spec: RunSpec, store: ResultStore, *, device: torch.device, progress: bool = True,
        checkpoints: Checkpointer | None = None, checkpoint_every: int = 0, workers: int = 0,
        model_dir: Path | None = None, live_log: LiveLog | None = None) -> dict[str, Any]:
    """Train and evaluate one run and write its record; the record is returned whatever the outcome.

    With `checkpoints`, training resumes from the latest checkpoint of the same config and seed, saves one
    every `checkpoint_every` steps and on interruption, and deletes them once the record is written.

    Under torchrun the processes train data-parallel: the suite's batch_size stays the global batch, split
    evenly over them, and rank 0 alone writes checkpoints and the record while the others wait for it. An
    exception on any process (other than a divergence, which all processes see together) ends the job
    without a record: the others would otherwise wait in a collective until the backend's timeout.

    With `model_dir`, a run that ends ok saves its trained weights there (benchmarks/saved_model.py), the
    selected ones too when it selected, before its record is written and its checkpoints deleted, so a finished
    record always has its model.

    With `live_log` (benchmarks/live_log.py), training reports its curve and evaluations as they happen.
    """
    with distributed.process_group(device) as device:
        suite = spec.suite
        distributed.local_batch_size(suite.batch_size)  # refuse an uneven split before any work
        main = distributed.is_main()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        status, error = "ok", None
        results: dict[str, Any] = {}
        baselines: dict[str, Any] = {}
        counts, train_peak, eval_peak, flops = None, None, None, {}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        capped = memory_cap.apply(suite, device)
        precision = Precision.of(suite, device)
        scaler = precision.scaler(device)
        selected = None
        done = Progress()
        model = optimizer = scheduler = None
        try:
            # The same seed in every process: identical initial weights, and identical RNG streams, so rank 0's
            # checkpointed RNG state resumes every process exactly (dropout masks repeat across processes).
            seed_everything(spec.seed)
            model = build_model(suite, spec.method, spec.method_config).to(device)
            counts = model.parameter_counts()
            net = distributed.wrap(model, device)
            optimizer = make_optimizer(suite, model.trainable_parameters(), spec.lr)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(suite, s))
            resumed = checkpoints.load(model, optimizer, scheduler, device, scaler) if checkpoints else None
            if resumed:
                done = Progress.resumed_from(resumed)
                if main:
                    print(f"resuming {spec.method} seed {spec.seed} from step {done.step}", file=sys.stderr)
            train(model, net, spec, optimizer, scheduler, done, device=device, precision=precision, scaler=scaler,
                  show=progress and main, checkpoints=checkpoints if main else None,
                  checkpoint_every=checkpoint_every, workers=workers,
                  live_log=live_log if live_log and main else LiveLog())
            train_peak = peak_memory_mb(device)
            results, baselines = evaluate_splits(model, suite, device, precision.eval)
            selected = done.selection.record(suite, model, done.step, results,
                                             lambda: evaluate_splits(model, suite, device, precision.eval)[0])
            eval_peak = peak_memory_mb(device)  # before counting, which builds its own models on the device
            # In the try: an interrupt while counting is recorded (and checkpointed) like one during training
            flops = count_flops(spec, device) if main else {}
        except Diverged as exc:
            status, error = "diverged", f"{exc} at step {done.step}"
        except torch.cuda.OutOfMemoryError as exc:
            status, error = "oom", str(exc).splitlines()[0]
        except KeyboardInterrupt:
            status, error = "interrupted", f"interrupted at step {done.step}"
            if main and checkpoints and model is not None and optimizer is not None and done.step:
                checkpoints.save(done.step, model, optimizer, scheduler, done.state(), scaler)
        except UserError:  # bad input (a corrupt file, an unreadable image): not a result; the CLI says so, exit 2
            raise
        except Exception as exc:  # recorded, never lost: a sweep goes on past a failed run
            traceback.print_exc()
            if distributed.world_size() > 1:
                print(f"process {distributed.rank()} of {distributed.world_size()} failed; ending the job",
                      file=sys.stderr)
                raise
            status, error = "failed", f"{type(exc).__name__}: {exc}"
        train_peak = train_peak or peak_memory_mb(device)
        cost = {"params": counts.to_dict() if counts else None,
                "peak_memory_train_mb": train_peak[0],
                "peak_memory_eval_mb": (eval_peak or peak_memory_mb(device))[0],
                "memory_kind": train_peak[1],
                **memory_cap.report(suite, capped, train_peak[0]),
                **(flops if status == "ok" else {})}
        record = make_record(spec, status, error, started_at, done, results, baselines, cost, device, precision,
                             selected if status == "ok" else None)
        if main and model_dir is not None and status == "ok":
            save_model(model_dir, model, spec, record, done.selection.best_weights)
        if main:
            store.write(spec, record)
        if status == "interrupted":  # every process was signalled: no barrier, each saves what it must and stops
            raise KeyboardInterrupt
        distributed.barrier()  # the record exists before any process returns
        if main and checkpoints and status != "failed":  # a failed run keeps its checkpoint for a retry after the fix
            checkpoints.clear()
        return record


def make_record(spec: RunSpec, status: str, error: str | None, started_at: str, done: Progress,
                results: dict[str, Any], baselines: dict[str, Any], cost: dict[str, Any],
                device: torch.device, precision: Precision, selected: dict[str, Any] | None) -> dict[str, Any]:
    """The run record (schema: run_info / train_info / results / selection / baselines / cost / meta_info),
    exactly as the JSON file will hold it. `results` are the last step's; `selection` (None when the suite does
    not select) adds the selected weights' (benchmarks/selection.py)."""
    suite, seconds = spec.suite, done.seconds()
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_info": run_info(spec, suite.name, status, error, started_at),
        "train_info": {
            "steps_planned": suite.steps,
            "steps_done": done.step,
            "images_seen": done.step * suite.batch_size,
            "train_seconds": seconds,
            "images_per_second": done.step * suite.batch_size / seconds if seconds else None,
            "final_loss": done.curve[-1]["loss"] if done.curve else None,
            **precision.describe(),  # what ran, not what the suite asked for (CPU: fp32)
            "curve": done.curve,
            **anytime_record(suite, done, cost.get("train_gflops_per_image")),
        },
        "results": results,
        "selection": selected,
        "baselines": baselines,
        "cost": cost,
        "meta_info": environment.describe(device),
    }
    return json.loads(json.dumps(record))  # tuples become lists
