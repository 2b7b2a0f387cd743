"""Sweeps: every method x seeds under one suite's budget, with the same learning-rate search for all.

Phase 1 runs each method at every rate of the suite's `lr_grid` with the first seed; the rate whose run
has the best mIoU on `lr_search_split` is that method's rate (recomputed from the records, so reports stay
a pure function of results/). Phase 2 runs the remaining seeds at that rate. Finished runs are skipped
(resumable); `--shard i/n` gives shard i every n-th job of a phase so processes or a Slurm array can split
a sweep without ever writing the same record. A method whose phase 1 is not complete yet (another shard
still running it) is left for the next invocation, which picks up where things stand. `jobs` > 1 runs that
many jobs of a phase at once in worker processes (benchmarks/workers.py); phase 2 starts when phase 1 ends.
A sweep's entries may differ in suite and options as well as method (`sweep --table`: one entry per row); each
phase runs every entry's jobs together, so no worker waits for another entry's search to end.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks import cpu
from benchmarks.checkpoint import Checkpointer
from benchmarks.lock import run_lock
from benchmarks.saved_model import folder_for
from benchmarks.store import ResultStore, RunSpec
from benchmarks.suites import Suite
from benchmarks.workers import Pool, WorkerDied
from methods import get_method, list_methods
from riscore.errors import UserError


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(v) for v in text.split("/"))
        except ValueError:
            raise UserError(f"--shard expects i/n (e.g. 0/4), got '{text}'") from None
        if not 0 <= index < count:
            raise UserError(f"--shard {text}: need 0 <= i < n")
        return cls(index, count)

    def take(self, jobs: Sequence[RunSpec]) -> list[RunSpec]:
        return [job for k, job in enumerate(jobs) if k % self.count == self.index]


def search_score(record: dict[str, Any] | None, split: str) -> float | None:
    """The learning-rate search's score of one run: its mIoU on the search split (None if not usable)."""
    if not record or record["run_info"]["status"] != "ok":
        return None
    value = record["results"].get(split, {}).get("mIoU")
    return None if value is None or math.isnan(value) else value


def search_jobs(suite: Suite, method: str, config: Any) -> list[RunSpec]:
    return [RunSpec(suite, method, config, lr=lr, seed=suite.seeds[0]) for lr in suite.lr_grid]


def chosen_lr(store: ResultStore, suite: Suite, method: str, config: Any) -> float | None:
    """The search's winner once every search run has a record; ties go to the smaller rate."""
    records = [store.load(job) for job in search_jobs(suite, method, config)]
    if any(r is None or r["run_info"]["status"] == "interrupted" for r in records):
        return None
    scores = {lr: search_score(r, suite.lr_search_split) for lr, r in zip(suite.lr_grid, records, strict=True)}
    return pick_lr(scores, default=suite.lr)


def pick_lr(scores: dict[float, float | None], default: float) -> float:
    """The rate with the best search score, ties to the smaller rate; `default` when no run is usable.

    Shared by the sweep (what to run next) and the report (which runs a leaderboard row averages)."""
    scored = [(score, lr) for lr, score in scores.items() if score is not None]
    return max(scored, key=lambda s: (s[0], -s[1]))[1] if scored else default


@dataclass(frozen=True)
class Entry:
    """What a sweep searches a learning rate for, then runs on every seed: a method with its options under a
    suite (one method of `sweep`, one row of `sweep --table`); `label` names it in progress lines."""

    suite: Suite
    method: str
    config: Any
    label: str

    def runs(self) -> str:
        """What its runs' config hashes cover, less the learning rate and seed: equal entries run the same runs."""
        return what_runs(self.suite, self.method, self.config)


def what_runs(suite: Suite, method: str, config: Any) -> str:
    """The part of a run's identity (store.RunSpec.config) that its entry fixes: all but the learning rate."""
    identity = RunSpec(suite, method, config, lr=0.0, seed=0).config()
    del identity["lr"]
    return json.dumps(identity, sort_keys=True)


def method_entries(suite: Suite, methods: Sequence[str], options: dict[str, str] | None = None) -> list[Entry]:
    """One entry per method, each with `options` (an ablation point: one method only)."""
    if options and len(methods) != 1:
        raise UserError("sweep --set changes one method's options: give exactly one --method")
    return [Entry(suite, m, get_method(m).make_config(options or {}), m) for m in methods]


def plan(store: ResultStore, entries: Sequence[Entry],
         seeds: Sequence[int] | None = None) -> tuple[list[RunSpec], list[RunSpec], list[str]]:
    """(phase-1 jobs, phase-2 jobs that can run now, labels of the entries still waiting for their search).

    Phase 2 lists the seeds (`seeds`, else each entry's suite's) at the chosen rate that the search has not
    already run (the first seed's run at the chosen rate is a search run), so every run is listed once.
    """
    phase1, phase2, waiting = [], [], []
    for entry in entries:
        searched = search_jobs(entry.suite, entry.method, entry.config)
        phase1 += searched
        lr = chosen_lr(store, entry.suite, entry.method, entry.config)
        if lr is None:
            waiting.append(entry.label)
            continue
        done = {(job.lr, job.seed) for job in searched}
        phase2 += [RunSpec(entry.suite, entry.method, entry.config, lr=lr, seed=seed)
                   for seed in seeds or entry.suite.seeds if (lr, seed) not in done]
    return phase1, phase2, waiting


@dataclass(frozen=True)
class RunSetup:
    """What every run of a sweep shares; picklable, so that worker processes receive it with each job."""

    store: ResultStore
    device: torch.device
    checkpoint_root: Path
    checkpoint_every: int
    models_root: Path | None
    progress: bool
    off_budget: bool
    shard: Shard


@dataclass(frozen=True)
class Outcome:
    """How one job of the sweep ended, as its progress line and the sweep's counts tell it."""

    kind: str  # skipped (another process ran it meanwhile), ok or not ok
    status: str | None = None
    error: str | None = None
    score: float | None = None  # mIoU on the search split
    seconds: float | None = None

    def describe(self, split: str) -> str:
        if self.kind == "skipped":
            return "finished meanwhile by another process"
        if self.status != "ok":
            return f"{self.status}: {self.error}"
        score = "no score" if self.score is None else f"{split} mIoU {self.score:.2f}"
        return f"ok, {score}, {self.seconds:.0f} s training"


def run_job(job: RunSpec, setup: RunSetup) -> Outcome:
    """Run one job of the sweep under its run lock (unless another process finished it meanwhile)."""
    from benchmarks.train import run

    path = setup.store.path_for(job)
    print(f"[shard {setup.shard.index}/{setup.shard.count}] {job.method} lr={job.lr:g} seed={job.seed} -> {path}",
          file=sys.stderr)
    checkpoints = Checkpointer.for_run(setup.checkpoint_root, setup.store, job)
    model_dir = folder_for(setup.models_root, setup.store, job) if setup.models_root is not None else None
    with run_lock(path):
        if setup.store.is_finished(job):  # another process ran it while this one waited for the lock
            return Outcome("skipped")
        record = run(dataclasses.replace(job, off_budget=setup.off_budget), setup.store, device=setup.device,
                     progress=setup.progress, checkpoints=checkpoints, checkpoint_every=setup.checkpoint_every,
                     model_dir=model_dir)
    info = record["run_info"]
    return Outcome("ok" if info["status"] == "ok" else "not ok", info["status"], info["error"],
                   search_score(record, job.suite.lr_search_split), record["train_info"]["train_seconds"])


def run_sweep(suite: Suite, *, methods: Sequence[str] | None = None, options: dict[str, str] | None = None,
              **sweep_args: Any) -> dict[str, int]:
    """`run_entries` over `methods` (default: all) under `suite`; `options` sets method options (an ablation
    point) and needs exactly one method."""
    return run_entries(method_entries(suite, list(methods or list_methods()), options), **sweep_args)


def run_entries(entries: Sequence[Entry], *, seeds: Sequence[int] | None = None, shard: Shard = Shard(0, 1),
                store: ResultStore, device: torch.device, checkpoint_root: Path, checkpoint_every: int = 100,
                models_root: Path | None = None, progress: bool = False, dry_run: bool = False,
                off_budget: bool = False, jobs: int = 1, threads: int | None = None) -> dict[str, int]:
    """Run what is left of the sweep over `entries` for this shard; returns counts of runs by outcome.

    With `models_root`, every run that ends ok keeps its trained weights there. `jobs` runs go at once, each in
    a worker process with `threads` torch threads (benchmarks/workers.py); the records are those of the same
    runs made one after another with as many threads. `threads` None: this process's. A line per finished run
    gives its score.
    """
    unique: dict[str, Entry] = {}
    for entry in entries:  # entries that run the same runs (a row two tables share) run once, under both names
        key = entry.runs()
        same = unique.get(key)
        unique[key] = entry if same is None else dataclasses.replace(same, label=f"{same.label} = {entry.label}")
    entries = list(unique.values())

    def label(job: RunSpec) -> str:
        name = unique[what_runs(job.suite, job.method, job.method_config)].label
        return job.method if name == job.method else f"{job.method} ({name})"

    counts = {"skipped": 0, "to run": 0} if dry_run else {"skipped": 0, "ok": 0, "not ok": 0}
    if threads:
        torch.set_num_threads(threads)  # for the runs made in this process
    loaded = cpu.busy_warning(cpu.cores(), cpu.load_average())  # said once, when the first run starts
    setup = RunSetup(store, device, checkpoint_root, checkpoint_every, models_root, progress and jobs == 1,
                     off_budget, shard)

    def execute(jobs_of_phase: list[RunSpec], phase: str, pool: Pool) -> None:
        todo = []
        for job in shard.take(jobs_of_phase):
            path = store.path_for(job)
            finished = store.is_finished(job)
            if finished or dry_run:
                counts["skipped" if finished else "to run"] += 1
            if dry_run:  # the whole plan, finished runs included, so the counts can be checked line by line
                status = "finished" if finished else "to run"
                print(f"{status:>8}: {job.method} lr={job.lr:g} seed={job.seed} -> {path}", file=sys.stderr)
            elif not finished:
                todo.append(job)
        nonlocal loaded
        if todo and loaded:
            print(loaded, file=sys.stderr)
            loaded = None
        for k, (job, outcome) in enumerate(pool.run(functools.partial(run_job, setup=setup), todo), 1):
            if isinstance(outcome, WorkerDied):
                outcome = Outcome("not ok", "no record", f"its worker process ended with exit code "
                                  f"{outcome.exitcode}; the next sweep runs it again")
            counts[outcome.kind] += 1
            print(f"[{phase} {k}/{len(todo)}] {label(job)} lr={job.lr:g} seed={job.seed}: "
                  f"{outcome.describe(job.suite.lr_search_split)}", file=sys.stderr)

    with Pool(jobs, threads or torch.get_num_threads()) as pool:
        phase1, _, _ = plan(store, entries, seeds)
        execute(phase1, "search", pool)
        _, phase2, waiting = plan(store, entries, seeds)
        execute(phase2, "seeds", pool)
    if waiting and dry_run:
        print(f"then the seeds of {', '.join(waiting)} at the rate their learning-rate search chooses",
              file=sys.stderr)
    elif waiting:
        print(f"waiting for the learning-rate search of {', '.join(waiting)} (other shards); "
              "run the sweep again once they finish", file=sys.stderr)
    counts["waiting"] = len(waiting)
    return counts
