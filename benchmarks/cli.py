"""`python -m benchmarks <command>`: the one entry point that nox sessions, tests and scripts call."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks import interrupts, validate
from benchmarks.errors import UserError

REPO = Path(__file__).resolve().parent.parent


class Parser(argparse.ArgumentParser):
    """argparse whose errors are UserErrors, so that they print as every other bad input does: one line
    `error: ...` (without argparse's usage block and program prefix), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")


def _key_values(pairs: Sequence[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} expects KEY=VALUE, got '{pair}'")
        out[key.strip()] = value.strip()
    return out


def resolve_suite(args: argparse.Namespace):
    """The suite with any --budget changes, and whether it is off-budget."""
    from benchmarks.suites import load_suite

    suite = load_suite(args.suite)
    budget = _key_values(args.budget, "--budget")
    if budget:
        if not args.allow_budget_override:
            raise UserError(f"--budget changes suite '{suite.name}' ({', '.join(budget)}); "
                            "add --allow-budget-override to run off-budget (recorded as such)")
    changed = suite.replace(budget) if budget else suite
    changed.check()
    return changed, changed != suite  # restating a suite's own value is not off-budget


def resolve_spec(args: argparse.Namespace):
    """The run's identity from the command line, refusing silent budget changes."""
    from benchmarks.store import RunSpec
    from methods import get_method

    suite, off_budget = resolve_suite(args)
    method = get_method(args.method)
    lr = suite.lr if args.lr is None else args.lr
    if lr not in suite.lr_grid and lr != suite.lr:
        if not args.allow_budget_override:
            raise UserError(f"--lr {lr} is outside suite '{suite.name}' lr_grid {list(suite.lr_grid)}; "
                            "add --allow-budget-override to run off-budget")
        off_budget = True
    seed = suite.seeds[0] if args.seed is None else args.seed
    config = method.make_config(_key_values(args.set, "--set"))
    return RunSpec(suite=suite, method=method.name, method_config=config, lr=lr, seed=seed,
                   off_budget=off_budget)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.list_methods:
        from benchmarks.listing import print_methods

        print_methods()
        return 0
    if not args.method:
        raise UserError("bench needs --method NAME (see --list-methods)")
    import torch

    from benchmarks import distributed
    from benchmarks.checkpoint import Checkpointer
    from benchmarks.environment import resolve_device
    from benchmarks.lock import run_lock
    from benchmarks.store import ResultStore
    from benchmarks.summary import print_summary
    from benchmarks.train import run

    check_run_paths(args)
    spec = resolve_spec(args)
    device = resolve_device(args.device)
    store = ResultStore(args.out)
    path = store.path_for(spec)
    speaks = distributed.is_main()  # under torchrun only rank 0 prints
    checkpoints = Checkpointer.for_run(Path(args.checkpoint_dir), store, spec)
    # rank 0 alone locks: the other processes of its own job must not wait for it
    with run_lock(path) if speaks else contextlib.nullcontext():
        if store.is_finished(spec) and not args.force:
            if speaks:
                print(f"already finished: {path} (use --force to run again)")
                print_summary(store.load(spec))
            return 0
        if args.threads:
            torch.set_num_threads(args.threads)
        try:
            record = run(spec, store, device=device, progress=not args.no_progress, checkpoints=checkpoints,
                         checkpoint_every=args.checkpoint_every, workers=args.workers)
        except KeyboardInterrupt:
            if speaks:
                where = f"recorded in {path}" if path.exists() else "nothing recorded"
                print(f"interrupted: {where}; run the same command again to resume from {checkpoints.folder}",
                      file=sys.stderr)
            return 130
    if speaks:
        print_summary(record)
        print(f"record: {path}")
    return 0 if record["run_info"]["status"] == "ok" else 1


def check_run_paths(args: argparse.Namespace) -> None:
    """bench and sweep write records and checkpoints: both folders must be writable before any work."""
    validate.writable_dir(args.out, "--out")
    validate.writable_dir(args.checkpoint_dir, "--checkpoint-dir")


def cmd_sweep(args: argparse.Namespace) -> int:
    import torch

    from benchmarks.coerce import coerce
    from benchmarks.environment import resolve_device
    from benchmarks.store import ResultStore
    from benchmarks.sweep import Shard, run_sweep
    from methods import get_method

    check_run_paths(args)
    suite, off_budget = resolve_suite(args)
    methods = [get_method(m).name for m in args.method] or None
    seeds = coerce(args.seeds, tuple[int, ...], "--seeds") if args.seeds is not None else None
    if seeds is not None and not seeds:
        raise UserError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    for seed in seeds or ():
        validate.seed(seed, "--seeds: each seed")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        counts = run_sweep(suite, methods=methods, seeds=seeds, shard=Shard.parse(args.shard),
                           store=ResultStore(args.out), device=resolve_device(args.device),
                           checkpoint_root=Path(args.checkpoint_dir), checkpoint_every=args.checkpoint_every,
                           progress=not args.no_progress, dry_run=args.dry_run, off_budget=off_budget,
                           options=_key_values(args.set, "--set"))
    except KeyboardInterrupt:
        print("sweep interrupted: run the same command again to continue", file=sys.stderr)
        return 130
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.report import write_report

    validate.writable_dir(args.out, "--out")
    written = write_report(Path(args.results), Path(args.out))
    print(f"wrote {len(written)} files under {args.out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from benchmarks.data import build_dataset

    if args.action == "preview":
        out = Path(args.out)
        if out.suffix.lower() != ".png":
            raise UserError(f"--out {out}: the preview is a PNG; give a path ending in .png")
        validate.writable_file(out, "--out")
    dataset = build_dataset(args.dataset, args.split, args.image_size)
    if args.action == "preview":
        from benchmarks.data.preview import save_preview

        save_preview(dataset, args.n, out)
        print(f"wrote {out}")
    else:
        from benchmarks.data.preview import dataset_stats

        print(f"{args.dataset} {args.split}: {len(dataset)} expressions")
        print(dataset_stats(dataset).to_string(index=False))
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from benchmarks.pretrain import PretrainConfig, pretrain

    validate.writable_dir(args.out, "--out")
    pretrain(PretrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed),
             out=Path(args.out), progress=not args.no_progress)
    return 0


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every command that trains shares (bench, sweep)."""
    parser.add_argument("--budget", action="append", default=[], metavar="KEY=VALUE",
                        help="change a suite budget key (needs --allow-budget-override)")
    parser.add_argument("--allow-budget-override", action="store_true",
                        help="accept budget changes; records are marked off_budget")
    parser.add_argument("--out", default=str(REPO / "results"), help="results folder (default: results/)")
    parser.add_argument("--device", type=validate.DEVICE, default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=validate.NON_NEGATIVE_INT, default=0,
                        help="torch CPU threads (default: torch's)")
    parser.add_argument("--checkpoint-every", type=validate.NON_NEGATIVE_INT, default=100, metavar="STEPS",
                        help="save a resumable checkpoint every STEPS steps (0: only when interrupted)")
    parser.add_argument("--checkpoint-dir", default=str(REPO / "runs" / "checkpoints"),
                        help="where checkpoints live until their run is recorded (default: runs/checkpoints)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="train and evaluate one method under a suite's budget")
    bench.add_argument("--method", help="registered method name (see --list-methods)")
    bench.add_argument("--suite", default="shapes", help="suite name or path to a suite TOML (default: shapes)")
    bench.add_argument("--seed", type=validate.SEED, help="default: the suite's first seed")
    bench.add_argument("--lr", type=validate.POSITIVE_FLOAT, help="learning rate (default: the suite's lr)")
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method option")
    _add_run_arguments(bench)
    bench.add_argument("--force", action="store_true", help="re-run even if this run already finished")
    bench.add_argument("--workers", type=validate.NON_NEGATIVE_INT, default=0,
                       help="data-loading worker processes (default: 0)")
    bench.add_argument("--list-methods", action="store_true", help="list methods with parameter counts")
    bench.set_defaults(handler=cmd_bench)

    data = sub.add_parser("data", help="look at a dataset: preview grid or statistics")
    data.add_argument("action", choices=("preview", "stats"))
    data.add_argument("--dataset", default="shapes")
    data.add_argument("--split", default="val")
    data.add_argument("--image-size", type=validate.POSITIVE_INT, default=64)
    data.add_argument("-n", type=validate.POSITIVE_INT, default=16, help="images in the preview")
    data.add_argument("--out", default="preview.png", help="preview PNG path")
    data.set_defaults(handler=cmd_data)

    pretrain = sub.add_parser("pretrain", help="rebuild the offline default backbone (contrastive, shapes captions)")
    pretrain.add_argument("--steps", type=validate.POSITIVE_INT, default=1500)
    pretrain.add_argument("--batch-size", type=validate.POSITIVE_INT, default=128)
    pretrain.add_argument("--seed", type=validate.SEED, default=0)
    pretrain.add_argument("--out", default=str(REPO / "methods" / "assets"))
    pretrain.add_argument("--no-progress", action="store_true")
    pretrain.set_defaults(handler=cmd_pretrain)

    from benchmarks.profile import add_profile_arguments, cmd_profile

    profile = sub.add_parser("profile", help="FLOPs, parameters, peak memory and throughput per method")
    add_profile_arguments(profile)
    profile.set_defaults(handler=cmd_profile)

    sweep = sub.add_parser("sweep", help="every method x seeds under a suite, with the equal lr search")
    sweep.add_argument("--suite", default="shapes", help="suite name or TOML path (default: shapes)")
    sweep.add_argument("--method", action="append", default=[], help="only these methods (repeatable)")
    sweep.add_argument("--seeds", help="comma-separated seeds (default: the suite's)")
    sweep.add_argument("--shard", default="0/1", help="i/n: run every n-th job starting at i (default 0/1)")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs left to do, run nothing")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="method option for an ablation point (needs exactly one --method)")
    _add_run_arguments(sweep)
    sweep.set_defaults(handler=cmd_sweep)

    report = sub.add_parser("report", help="leaderboards, plots, paper and ablation pages from results/")
    report.add_argument("--results", default=str(REPO / "results"), help="run records to read (default: results/)")
    report.add_argument("--out", default=str(REPO / "reports"), help="folder to write (default: reports/)")
    report.set_defaults(handler=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    with interrupts.handled():  # first: a SIGTERM during start-up ends in exit 130 like a later one
        try:
            args = build_parser().parse_args(argv)
            return args.handler(args)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # the commands that record something say what; here nothing was
            print("interrupted before any work was recorded", file=sys.stderr)
            return 130
