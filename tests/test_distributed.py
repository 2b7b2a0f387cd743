"""Data-parallel runs (torchrun): two CPU processes on gloo train, evaluate and record as one process does.

Two processes are started once for the module (torch.multiprocessing, env:// rendezvous on a free port, the
way torchrun sets it up); each does the work below and reports in JSON, and the tests compare that with the
same work done here in one process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import benchmarks.step as step
import benchmarks.train as train
from benchmarks import distributed
from benchmarks.checkpoint import Checkpointer
from benchmarks.data import build_dataset
from benchmarks.evaluate import eval_subset, evaluate
from benchmarks.sampling import ExpressionOrder, StepBatches
from benchmarks.store import ResultStore, RunSpec, read_record
from benchmarks.suites import load_suite
from methods import decoder, get_method
from riscore.errors import UserError

CPU = torch.device("cpu")
WORLD = 2
EVAL_ITEMS = 7  # odd: the two shards differ in size, and neither matches a single-process batch
TIMING = ("eval_seconds", "images_per_second")
# Two processes compute the same sums in another order (DDP averages two half-batch gradients, convolutions
# run on half batches), so the numbers agree up to float rounding. Measured over the three smoke steps: losses
# within 6e-7 relative, metrics identical. Real faults measured the same way move the losses by 2e-2 to 4e-1
# relative and mIoU / oIoU by 0.7 / 4.1 points: BatchNorm on each process's half batch, both processes on the
# same half, gradients not averaged. The bounds sit far from both: 1e-4 on losses (float rounding on other
# CPUs), 0.05 points on metrics (a thresholded pixel may flip where a probability sits on the threshold).
LOSS_RTOL = 1e-4
METRIC_ATOL = 0.05


@pytest.fixture(autouse=True)
def no_dropout(monkeypatch):
    """The decoder's dropout draws masks per process, so two processes cannot reproduce one process's masks;
    without it the two runs compute the same function and can be compared closely."""
    monkeypatch.setitem(decoder._SIZES["tiny"], "dropout", 0.0)


def lora_spec(**budget) -> RunSpec:
    suite = load_suite("smoke").replace({"pretrained": None, **budget})
    return RunSpec(suite, "lora", get_method("lora").make_config(), lr=suite.lr, seed=0)


def untrained_evaluation() -> dict:
    spec = lora_spec()
    train.seed_everything(1)
    model = train.build_model(spec.suite, spec.method, spec.method_config)
    dataset = eval_subset(build_dataset("shapes", "val", spec.suite.image_size), EVAL_ITEMS)
    result = evaluate(model, dataset, batch_size=spec.suite.batch_size, threshold=spec.suite.threshold, device=CPU)
    return {k: v for k, v in result.items() if k not in TIMING}


def as_torchrun_process(rank: int, port: int) -> None:
    """The environment torchrun gives process `rank` of WORLD (env:// rendezvous on `port`), one thread each."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def worker(rank: int, port: int, out: Path) -> None:
    """One of the two processes: a full run, a run that diverges on rank 1 only, a run stopped after two steps
    and resumed, an evaluation of fixed weights."""
    as_torchrun_process(rank, port)
    decoder._SIZES["tiny"]["dropout"] = 0.0  # as the no_dropout fixture does in the test process
    dist.init_process_group("gloo")  # one group for every run: train.run joins it rather than making its own
    try:
        report = {"run": train.run(lora_spec(), ResultStore(out / "run"), device=CPU, progress=False)}
        real_loss, calls = step.segmentation_loss, itertools.count(1)

        def poisoned(logits, mask):  # rank 1 alone sees a NaN loss, from the second step on
            loss = real_loss(logits, mask)
            return loss * math.nan if rank == 1 and next(calls) >= 2 else loss

        step.segmentation_loss = poisoned
        report["diverged"] = train.run(lora_spec(), ResultStore(out / "diverged"), device=CPU, progress=False)
        step.segmentation_loss = real_loss

        checkpoints = Checkpointer(out / "checkpoints", lora_spec().config_hash, code_version="test")
        real_step, steps = train.training_step, itertools.count(1)

        def stopped(*args):  # both processes are interrupted before their third step, as torchrun signals them
            if next(steps) == 3:
                raise KeyboardInterrupt
            return real_step(*args)

        train.training_step = stopped
        with contextlib.suppress(KeyboardInterrupt):
            train.run(lora_spec(), ResultStore(out / "resumed"), device=CPU, progress=False, checkpoints=checkpoints)
        train.training_step = real_step
        dist.barrier()  # rank 0's checkpoint is on disk before either process starts again
        report["resumed"] = train.run(lora_spec(), ResultStore(out / "resumed"), device=CPU, progress=False,
                                      checkpoints=checkpoints)
        report["evaluation"] = untrained_evaluation()
    finally:
        dist.destroy_process_group()
    (out / f"rank{rank}.json").write_text(json.dumps(report))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Generous: start-up alone (two imports of torch) takes minutes on a busy machine. A bound against hanging, not
# a speed check.
SAFETY_SECONDS = 240


@contextlib.contextmanager
def started(target: Callable[[int, int, Path], None], out: Path) -> Iterator[mp.ProcessContext]:
    """WORLD spawned processes running `target(rank, port, out)`. However the block ends (an assertion, a
    timeout, an interrupt), those still running are killed and every one is reaped: none is left behind."""
    context = mp.start_processes(target, args=(free_port(), out), nprocs=WORLD, join=False, start_method="spawn")
    try:
        yield context
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
        for process in context.processes:
            process.join()


def join_all(context: mp.ProcessContext) -> None:
    """Until every process has ended (torch raises if one failed, having ended the others), SAFETY_SECONDS at most."""
    deadline = time.monotonic() + SAFETY_SECONDS
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            pytest.fail(f"the {WORLD} processes did not finish within {SAFETY_SECONDS} s")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("ddp")
    with started(worker, out) as context:
        join_all(context)
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return out, reports


def failing_worker(rank: int, port: int, out: Path) -> None:
    """A run in which process 1 alone raises at its second step (a bug or a bad device, not a NaN)."""
    as_torchrun_process(rank, port)
    real_step, steps = train.training_step, itertools.count(1)

    def broken(*args):
        if rank == 1 and next(steps) == 2:
            (out / "faulted").touch()
            raise RuntimeError("a fault on process 1 only")
        return real_step(*args)

    train.training_step = broken
    train.run(lora_spec(), ResultStore(out), device=CPU, progress=False)  # joins the group itself, as under torchrun


def test_a_fault_on_one_process_ends_that_process_at_once_without_a_record(tmp_path, capfd):
    """The failing process must exit (so torchrun tears the job down) instead of waiting in a collective for
    the others, which wait for it: before, the job hung until the backend timeout (30 minutes)."""
    with started(failing_worker, tmp_path) as context:  # on leaving, kills the others as torchrun does
        faulty, other = context.processes[1], context.processes[0]
        deadline = time.monotonic() + SAFETY_SECONDS
        while not (tmp_path / "faulted").exists() and faulty.is_alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        faulty.join(timeout=60)
        ended = not faulty.is_alive()
    assert (tmp_path / "faulted").exists(), "process 1 never reached its fault"
    assert ended, "process 1 was still running 60 s after its fault"
    assert faulty.exitcode != 0 and other.exitcode != 0
    assert "RuntimeError: a fault on process 1 only" in capfd.readouterr().err
    assert not list(tmp_path.rglob("*.json"))  # no record: the sweep runs it again


def losses(record: dict) -> list[tuple[int, float]]:
    return [(c["step"], c["loss"]) for c in record["train_info"]["curve"]]


def metrics(record: dict) -> dict:
    """Per-split metrics without the wall-clock fields."""
    return {split: {k: v for k, v in m.items() if k not in TIMING} for split, m in record["results"].items()}


def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path, two_processes):
    _, reports = two_processes
    reference = train.run(lora_spec(), ResultStore(tmp_path), device=CPU, progress=False)
    assert reference["meta_info"]["world_size"] == 1 and not dist.is_initialized()
    ranks = [r["run"] for r in reports]
    assert ranks[0]["run_info"]["status"] == ranks[1]["run_info"]["status"] == "ok"
    assert losses(ranks[0]) == losses(ranks[1])  # the logged loss is the mean over processes, the same on each
    assert [s for s, _ in losses(ranks[0])] == [s for s, _ in losses(reference)] == [1, 2, 3]
    for (_, two), (_, one) in zip(losses(ranks[0]), losses(reference), strict=True):
        assert two == pytest.approx(one, rel=LOSS_RTOL)
    two, one = ranks[0]["results"]["val"], reference["results"]["val"]
    assert two["n"] == one["n"] == lora_spec().suite.eval_limit
    for key in ("mIoU", "oIoU", "prec@0.5", "prec@0.9"):
        assert two[key] == pytest.approx(one[key], abs=METRIC_ATOL)
    assert ranks[0]["baselines"] == reference["baselines"]
    assert ranks[0]["train_info"]["images_seen"] == reference["train_info"]["images_seen"] == 3 * 4


def test_only_rank_zero_writes_the_record(two_processes):
    out, reports = two_processes
    files = list((out / "run").rglob("*.json"))
    assert len(files) == 1
    record = read_record(files[0])
    assert record == reports[0]["run"]
    assert record["meta_info"]["world_size"] == WORLD


def test_a_nan_on_one_process_stops_every_process_as_diverged(two_processes):
    out, reports = two_processes
    for report in reports:
        info = report["diverged"]["run_info"]
        assert info["status"] == "diverged" and "nan" in info["error"]
        assert report["diverged"]["train_info"]["steps_done"] == 1  # the first step went through on both
    assert len(list((out / "diverged").rglob("*.json"))) == 1


def test_an_interrupted_run_resumes_on_every_process_to_the_same_result(two_processes):
    out, reports = two_processes
    for report in reports:
        resumed, uninterrupted = report["resumed"], report["run"]
        assert resumed["run_info"]["status"] == "ok"
        assert losses(resumed) == losses(uninterrupted)
        assert metrics(resumed) == metrics(uninterrupted)
    assert not list((out / "checkpoints").rglob("*.safetensors"))  # cleared once the record was written


def test_sharded_evaluation_equals_one_process_on_the_same_weights(two_processes):
    _, reports = two_processes
    single = untrained_evaluation()
    assert single["n"] == EVAL_ITEMS
    for report in reports:
        assert report["evaluation"] == single


def test_a_global_batch_that_does_not_split_is_refused(tmp_path, monkeypatch):
    assert distributed.local_batch_size(8, 2) == 4
    with pytest.raises(UserError, match="batch_size 5 .* 2 processes"):
        distributed.local_batch_size(5, 2)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    store = ResultStore(tmp_path)
    with pytest.raises(UserError, match="global batch"):
        train.run(lora_spec(batch_size=5), store, device=CPU, progress=False)
    assert not list(tmp_path.rglob("*.json"))  # no record: the sweep runs it again


def test_the_parts_of_each_batch_are_the_single_process_batch():
    size, batch, seed = 10, 4, 3  # two batches per epoch: steps 0..5 cross two epoch boundaries
    for start in (0, 3):  # a resumed sampler starts mid-epoch
        whole = list(StepBatches(ExpressionOrder(size), batch, seed, start, 6))
        parts = [list(StepBatches(ExpressionOrder(size), batch, seed, start, 6, rank, 2)) for rank in range(2)]
        assert [a + b for a, b in zip(*parts, strict=True)] == whole
        assert all(len(p) == 2 for rank in parts for p in rank)


def test_outside_a_process_group_the_main_process_is_torchruns_rank_zero(monkeypatch):
    """What the CLI asks after the run, when the group is gone: only rank 0 prints the summary."""
    assert not dist.is_initialized() and distributed.world_size() == 1 and distributed.shard(5) == range(5)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.is_main()
    monkeypatch.setenv("RANK", "1")
    assert distributed.is_main()  # a lone RANK from some scheduler: not torchrun, still the only process
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not distributed.is_main()
    monkeypatch.setenv("RANK", "0")
    assert distributed.is_main()


def stalled_worker(rank: int, port: int, out: Path) -> None:
    """A run checkpointed every step in which process 1 stops at its second step (killed there by the test)."""
    as_torchrun_process(rank, port)
    decoder._SIZES["tiny"]["dropout"] = 0.0
    real_step, steps = train.training_step, itertools.count(1)

    def stalled(*args):
        if rank == 1 and next(steps) == 2:
            (out / "stalled").touch()
            time.sleep(600)
        return real_step(*args)

    train.training_step = stalled
    checkpoints = Checkpointer(out / "checkpoints", lora_spec().config_hash, code_version="test")
    train.run(lora_spec(), ResultStore(out / "results"), device=CPU, progress=False, checkpoints=checkpoints,
              checkpoint_every=1)


def resuming_worker(rank: int, port: int, out: Path) -> None:
    as_torchrun_process(rank, port)
    decoder._SIZES["tiny"]["dropout"] = 0.0
    checkpoints = Checkpointer(out / "checkpoints", lora_spec().config_hash, code_version="test")
    train.run(lora_spec(), ResultStore(out / "results"), device=CPU, progress=False, checkpoints=checkpoints,
              checkpoint_every=1)


def test_a_killed_process_ends_the_other_in_bounded_time_and_a_rerun_resumes_exactly(tmp_path, two_processes):
    """kill -9 of one of two gloo processes mid-training: the other ends within 60 s (it does not wait in a
    collective for the backend's 30-minute timeout), no record or damaged checkpoint is left, and running the
    job again resumes to the record of an uninterrupted two-process run."""
    pointer = tmp_path / "checkpoints" / "latest.json"
    with started(stalled_worker, tmp_path) as context:
        other, stalled = context.processes
        deadline = time.monotonic() + SAFETY_SECONDS
        while not ((tmp_path / "stalled").exists() and pointer.exists()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (tmp_path / "stalled").exists() and pointer.exists(), "the run never reached its second step"
        stalled.kill()
        killed_at = time.monotonic()
        other.join(timeout=60)
        ended = not other.is_alive()
    assert ended, f"process 0 still ran {time.monotonic() - killed_at:.0f} s after process 1 was killed"
    assert other.exitcode != 0
    assert not list((tmp_path / "results").rglob("*.json"))  # no record: the job is run again
    assert Checkpointer(tmp_path / "checkpoints", lora_spec().config_hash, code_version="test").latest_step() == 1

    with started(resuming_worker, tmp_path) as context:
        join_all(context)
    [path] = list((tmp_path / "results").rglob("*.json"))
    resumed, uninterrupted = read_record(path), two_processes[1][0]["run"]
    assert resumed["run_info"]["status"] == "ok"
    assert losses(resumed) == losses(uninterrupted) and metrics(resumed) == metrics(uninterrupted)
