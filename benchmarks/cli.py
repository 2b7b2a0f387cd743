"""`risbench <command>` (also `python -m benchmarks <command>`): the one entry point that nox sessions, tests and
scripts call."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks import interrupts, validate
from riscore.coerce import coerce, comma_items
from riscore.errors import UserError

REPO = Path(__file__).resolve().parent.parent
RUNS_RESULTS = REPO / "runs" / "results"  # git-ignored: one's own runs; results/ is the committed reference


class Parser(argparse.ArgumentParser):
    """argparse whose errors are UserErrors, so that they print as every other bad input does: one line
    `error: ...` (without argparse's usage block and program prefix), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"{message} (see {self.prog} --help)")


def resolve_suite(args: argparse.Namespace):
    """The suite with any --budget changes, and whether it is off-budget."""
    from benchmarks.suites import load_suite

    suite = load_suite(args.suite)
    budget = validate.key_values(args.budget, "--budget", lambda key, text: getattr(suite.replace({key: text}), key))
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
    config = method.make_config(validate.key_values(args.set, "--set", option_meaning(method.name)))
    return RunSpec(suite=suite, method=method.name, method_config=config, lr=lr, seed=seed,
                   off_budget=off_budget)


def option_meaning(method: str):
    """What a `--set` value means to `method`: the config it makes (16 and 16.0 are one float option)."""
    from methods import get_method

    return lambda key, text: get_method(method).make_config({key: text})


def models_root(args: argparse.Namespace) -> Path:
    from benchmarks.saved_model import default_models_root

    return Path(args.models_dir) if args.models_dir else default_models_root()


LISTING_OPTIONS = {"list_methods", "counts", "threads"}  # what `bench --list-methods` reads; the rest runs a method


def cmd_bench(args: argparse.Namespace) -> int:
    if args.counts and not args.list_methods:
        raise UserError("--counts goes with --list-methods (it counts every method's parameters); leave it out "
                        "of a run or add --list-methods")
    if args.list_methods:
        unused = sorted(given_options(args, "bench") - LISTING_OPTIONS)  # silently ignored, they would mislead
        if unused:
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in unused)
            raise UserError(f"{flags}: not used with --list-methods, which lists every method and runs none; "
                            "leave it out, or run one method with bench --method NAME")
        from benchmarks.listing import print_methods

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print_methods(counts=args.counts)
        return 0
    if not args.method:
        raise UserError("bench needs --method NAME (see --list-methods)")
    import torch

    from benchmarks import cpu, distributed
    from benchmarks.checkpoint import Checkpointer
    from benchmarks.environment import resolve_device
    from benchmarks.live_log import LiveLog, open_live_log
    from benchmarks.lock import run_lock
    from benchmarks.saved_model import folder_for
    from benchmarks.store import ResultStore
    from benchmarks.summary import print_summary
    from benchmarks.train import run

    check_run_paths(args)
    check_log_dir(args)
    if not Path(args.reference).is_dir():
        raise UserError(f"--reference {args.reference}: no such folder; give a folder of run records "
                        "(default: results/, the committed reference)")
    spec = resolve_spec(args)
    device = resolve_device(args.device)
    store = ResultStore(args.out)
    path = store.path_for(spec)
    speaks = distributed.is_main()  # under torchrun only rank 0 prints
    checkpoints = Checkpointer.for_run(Path(args.checkpoint_dir), store, spec)
    model_dir = folder_for(models_root(args), store, spec) if args.save_model else None
    live_log = open_live_log(args.log, folder_for(Path(args.log_dir), store, spec)) if speaks else LiveLog()
    # rank 0 alone locks: the other processes of its own job must not wait for it
    with run_lock(path) if speaks else contextlib.nullcontext():
        if store.is_finished(spec) and not args.force:
            if speaks:
                finished = store.load(spec)
                print(f"already finished: {path} (use --force to run again)")
                print_summary(finished)
                print_reference(finished, Path(args.reference), path)
            return 0
        threads = args.threads or cpu.bench_threads(torch.get_num_threads())
        if threads:
            torch.set_num_threads(threads)
        # the load now, said after the run (before it, the line would precede any error the run finds)
        loaded = cpu.busy_warning(cpu.cores(), cpu.load_average())
        try:
            record = run(spec, store, device=device, progress=not args.no_progress, checkpoints=checkpoints,
                         checkpoint_every=args.checkpoint_every, workers=args.workers, model_dir=model_dir,
                         live_log=live_log)
        except KeyboardInterrupt:
            if speaks:
                where = f"recorded in {path}" if path.exists() else "nothing recorded"
                print(f"interrupted: {where}; run the same command again to resume from {checkpoints.folder}",
                      file=sys.stderr)
            return 130
        finally:
            live_log.close()
    if speaks:
        print_summary(record)
        print_reference(record, Path(args.reference), path)
        if loaded:
            print(loaded, file=sys.stderr)
        print(f"record: {path}")
        if model_dir is not None and record["run_info"]["status"] == "ok":
            print(f"model: {model_dir}")
    return 0 if record["run_info"]["status"] == "ok" else 1


def given_options(args: argparse.Namespace, command: str) -> set[str]:
    """The options of `command` set to other than their defaults (the destinations, as argparse names them)."""
    defaults = vars(build_parser().parse_args([command]))
    return {key for key, value in vars(args).items() if value != defaults.get(key)}


def print_reference(record: dict, reference: Path, own_path: Path) -> None:
    """The run beside the reference records of its configuration (benchmarks.reference)."""
    from benchmarks.reference import compare, reference_records, seeds_by_rate

    shown = reference.resolve()
    if shown.is_relative_to(Path.cwd()):
        shown = shown.relative_to(Path.cwd())
    print("\n".join(compare(record, reference_records(reference, record, own_path), where=f"{shown}/",
                             rates=seeds_by_rate(reference, record, own_path))))


def check_run_paths(args: argparse.Namespace) -> None:
    """bench and sweep write records, checkpoints and models: the folders must be writable before any work,
    and only records may live in a results folder (reports and sweeps read every JSON file there)."""
    validate.writable_dir(args.out, "--out")
    validate.writable_dir(args.checkpoint_dir, "--checkpoint-dir")
    outside_results(args.checkpoint_dir, "--checkpoint-dir", args, "checkpoints go beside run records")
    if args.save_model:
        validate.writable_dir(models_root(args), "--models-dir")
        outside_results(models_root(args), "--models-dir", args, "saved models go beside run records")


def outside_results(path: Path | str, flag: str, args: argparse.Namespace, why: str) -> None:
    """`path` lies outside the committed reference and the run's --out folder."""
    for results in (REPO / "results", Path(args.out)):
        validate.outside(path, flag, results, "the results folder", f"{why}, never among them")


def check_log_dir(args: argparse.Namespace) -> None:
    """--log writes event files: a writable folder outside every results folder (records only live there)."""
    validate.writable_dir(args.log_dir, "--log-dir")
    outside_results(args.log_dir, "--log-dir", args, "event files go beside run records")


def cmd_sweep(args: argparse.Namespace) -> int:
    from benchmarks import cpu
    from benchmarks.environment import resolve_device
    from benchmarks.paper_tables import get_table, run_tables, table_suite_name
    from benchmarks.store import ResultStore
    from benchmarks.sweep import Shard, run_sweep
    from methods import get_method

    check_run_paths(args)
    numbers = validate.unique([n for text in args.table for n in coerce(text, tuple[int, ...], "--table")],
                              "--table")
    if args.table and not numbers:
        raise UserError("--table needs a table number, e.g. --table 2 or --table 4,5,7")
    tables = [get_table(number) for number in numbers]
    named = f"--table {','.join(map(str, numbers))}"
    if tables and (args.method or args.set or args.budget):
        raise UserError(f"{named} sets each row's method, options and suite; leave out --method, --set and --budget")
    bases = [table_suite_name(table, args.suite) for table in tables]
    args.suite = next((name for name in bases if name), None) if tables else (args.suite or "shapes")
    suite, off_budget = resolve_suite(args) if args.suite else (None, False)
    methods = validate.unique([get_method(m).name for m in args.method], "--method") or None
    seeds = coerce(args.seeds, tuple[int, ...], "--seeds") if args.seeds is not None else None
    if seeds is not None and not seeds:
        raise UserError("--seeds needs at least one seed, e.g. --seeds 0,1,2")
    for seed in seeds or ():
        validate.seed(seed, "--seeds: each seed")
    validate.unique(seeds or (), "--seeds")
    single = methods[0] if methods and len(methods) == 1 else None  # sweep --set needs exactly one --method
    options = validate.key_values(args.set, "--set", single and option_meaning(single))
    device = resolve_device(args.device)
    jobs, threads = cpu.sweep_workers(args.jobs, args.threads, device.type == "cuda", cpu.cores())
    try:
        common = dict(seeds=seeds, shard=Shard.parse(args.shard), store=ResultStore(args.out), device=device,
                      checkpoint_root=Path(args.checkpoint_dir), checkpoint_every=args.checkpoint_every,
                      models_root=models_root(args) if args.save_model else None,
                      progress=not args.no_progress, dry_run=args.dry_run, off_budget=off_budget,
                      jobs=jobs, threads=threads)
        counts = (run_tables([(t, suite if base else None) for t, base in zip(tables, bases, strict=True)], **common)
                  if tables else run_sweep(suite, methods=methods, options=options, **common))
    except KeyboardInterrupt:
        print("sweep interrupted: run the same command again to continue", file=sys.stderr)
        return 130
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def cmd_counts(args: argparse.Namespace) -> int:
    """Parameter counts of ETRIS's parameter-table rows at paper scale, as one JSON document."""
    import json

    import torch

    from benchmarks.environment import describe
    from benchmarks.paper_counts import counts_document
    from benchmarks.store import atomic_write_text

    if args.out:
        validate.writable_file(args.out, "--out", (".json",))
    if args.threads:
        torch.set_num_threads(args.threads)
    document = counts_document(describe(torch.device("cpu")))
    text = json.dumps(document, indent=2) + "\n"
    if args.out:
        atomic_write_text(Path(args.out), text)
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.report import write_report

    validate.writable_dir(args.out, "--out")
    validate.outside(args.out, "--out", args.results, "the --results folder", "reports go beside the records they read")
    written = write_report(Path(args.results), Path(args.out))
    print(f"wrote {len(written)} files under {args.out}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    """The suite's own dataset, split and scene options: what its runs train and evaluate on."""
    from benchmarks.data import build_dataset
    from benchmarks.suites import load_suite

    if args.action == "preview":
        out = validate.writable_file(args.out, "--out", (".png",))  # default under runs/: git ignores it
    suite = load_suite(args.suite)
    name = args.dataset or suite.dataset
    options = suite.dataset_options if name == suite.dataset else {}
    split = args.split or (suite.eval_splits[0] if name == suite.dataset else "val")
    dataset = build_dataset(name, split, args.image_size or suite.image_size, options)
    if args.action == "preview":
        from benchmarks.data.preview import save_preview

        save_preview(dataset, args.n, out)
        print(f"wrote {out}")
    else:
        from benchmarks.data.preview import dataset_stats

        source = f"suite {suite.name}" if name == suite.dataset else "default options"
        print(f"{name} {split} ({source}): {len(dataset)} expressions")
        print(dataset_stats(dataset).to_string(index=False))
    return 0


def _open_model(args: argparse.Namespace):
    """(saved model, suite to use, device) for predict and evaluate; --suite must keep the model's backbone."""
    import torch

    from benchmarks.environment import resolve_device
    from benchmarks.saved_model import SavedModel
    from benchmarks.suites import load_suite

    saved = SavedModel.open(args.model)
    saved.weights_folder(args.weights)  # refuses --weights selected for a run that did not select
    suite = load_suite(args.suite) if args.suite else saved.spec.suite
    saved.check_suite(suite)
    if args.threads:
        torch.set_num_threads(args.threads)
    return saved, suite, resolve_device(args.device)


def cmd_predict(args: argparse.Namespace) -> int:
    from benchmarks.predict import (
        probabilities,
        query_from_dataset,
        query_from_file,
        truncation_note,
        write_prediction,
    )
    from benchmarks.step import autocast_dtype

    if (args.image is None) == (args.index is None):
        raise UserError("predict needs either --image FILE --text \"...\" or a dataset item: --index N "
                        "[--suite S] [--split SPLIT]")
    if args.image is not None and args.split is not None:
        raise UserError("--split picks a dataset item with --index; it does not apply to --image")
    out = validate.writable_file(args.out, "--out", (".png",))
    probs_out = args.probabilities and validate.writable_file(args.probabilities, "--probabilities", (".png", ".npy"))
    validate.distinct_files([("--image", args.image), ("--out", out), ("--probabilities", probs_out)])
    saved, suite, device = _open_model(args)
    if args.image is not None:
        query = query_from_file(Path(args.image), args.text, suite.image_size)
    else:
        query = query_from_dataset(suite, args.split or suite.eval_splits[0], args.index, args.text)
    note = truncation_note(query, suite)
    if note:
        print(note, file=sys.stderr)
    model = saved.build(device, suite, args.weights)
    probs = probabilities(model, query, device, autocast_dtype(suite, device))
    caption = write_prediction(query, probs, suite.threshold, out, probs_out)
    print(caption)
    print(f"wrote {out}" + (f" and {probs_out}" if probs_out else ""))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from benchmarks.reevaluate import check_record_path, compare_with_record, evaluation_suite, reevaluate, write_record
    from benchmarks.summary import table_text

    record_path = Path(args.record) if args.record else None
    if record_path is not None:
        check_record_path(record_path)
    saved, suite, device = _open_model(args)
    splits = [s for value in args.split for s in comma_items(value, "--split")]
    suite = evaluation_suite(suite, splits, args.limit)
    record = reevaluate(saved, suite, device, args.weights)
    info = record["run_info"]
    limit = f"first {suite.eval_limit} expressions" if suite.eval_limit else "whole splits"
    print(f"\n{info['method']} (seed {info['seed']}, trained on {info['trained_suite']}, "
          f"{saved.describe(args.weights)}) on {suite.name}, {limit}:")
    print(table_text(record))
    for line in compare_with_record(saved, suite, record["results"], args.weights):
        print(line)
    if record_path is not None:
        write_record(record, record_path)
        print(f"re-evaluation record: {record_path}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from benchmarks.pretrain import PretrainConfig, pretrain

    validate.writable_dir(args.out, "--out")
    pretrain(PretrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed),
             out=Path(args.out), progress=not args.no_progress)
    return 0


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a command computes: every command that runs a model takes these two."""
    parser.add_argument("--device", type=validate.DEVICE, default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--threads", type=validate.NON_NEGATIVE_INT, default=0,
                        help="torch CPU threads (default: torch's)")


def add_weights_argument(parser: argparse.ArgumentParser) -> None:
    """Which weights of a saved model (benchmarks.saved_model.WEIGHTS; not imported here: it needs torch)."""
    parser.add_argument("--weights", choices=("last", "selected"), default="last",
                        help="last: the last step's, which the record's results and leaderboards report (default); "
                             "selected: the checkpoint the run selected (suite key select_every), which its "
                             "selection reports")


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """Here, not in benchmarks/profile.py: building the parser must not import fvcore and the FLOP counters."""
    parser.add_argument("--method", action="append", default=[],
                        help="method to profile (repeatable; default: every registered method)")
    parser.add_argument("--suite", default="shapes", help="suite name or TOML path (default: shapes)")
    parser.add_argument("--backbone", help="open_clip architecture instead of the suite's (random weights)")
    parser.add_argument("--image-size", type=validate.POSITIVE_INT, help="input size instead of the suite's")
    parser.add_argument("--text-len", type=validate.POSITIVE_INT, help="token length instead of the suite's")
    parser.add_argument("--batch-size", type=validate.POSITIVE_INT, help="batch size for memory and timing")
    parser.add_argument("--sweep-image-size", metavar="N,N,...", help="profile at each of these image sizes")
    parser.add_argument("--sweep-batch-size", metavar="N,N,...", help="and at each of these batch sizes")
    parser.add_argument("--sweep-precision", metavar="P,P,...",
                        help="and at each of these precisions (e.g. bf16,fp16; CUDA only: CPU runs fp32)")
    parser.add_argument("--memory-jobs", type=validate.POSITIVE_INT, default=1,
                        help="memory measurements (one process each) run at a time (default 1)")
    parser.add_argument("--warmup", type=validate.POSITIVE_INT, default=2,
                        help="untimed calls before measuring (default 2)")
    parser.add_argument("--repeats", type=validate.POSITIVE_INT, default=5,
                        help="timed rounds; the median is kept (default 5)")
    add_device_arguments(parser)
    parser.add_argument("--flops-only", action="store_true", help="no memory or timing")
    parser.add_argument("--clip-towers", action="store_true",
                        help="bare CLIP image/text encoder GFLOPs, next to open_clip's table")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="method option, for every profiled method that has it (e.g. width=128)")
    parser.add_argument("--json", action="store_true", help="print JSON (and nothing else) to stdout")
    parser.add_argument("--out", help="also write the JSON to this file")


def run_profile(args: argparse.Namespace) -> int:
    from benchmarks.profile import cmd_profile

    return cmd_profile(args)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every command that trains shares (bench, sweep)."""
    parser.add_argument("--budget", action="append", default=[], metavar="KEY=VALUE",
                        help="change a suite budget key (needs --allow-budget-override)")
    parser.add_argument("--allow-budget-override", action="store_true",
                        help="accept budget changes; records are marked off_budget")
    parser.add_argument("--out", default=str(RUNS_RESULTS),
                        help="results folder (default: runs/results; `--out results` updates the committed reference)")
    add_device_arguments(parser)
    parser.add_argument("--checkpoint-every", type=validate.NON_NEGATIVE_INT, default=100, metavar="STEPS",
                        help="save a resumable checkpoint every STEPS steps (0: only when interrupted)")
    parser.add_argument("--checkpoint-dir", default=str(REPO / "runs" / "checkpoints"),
                        help="where checkpoints live until their run is recorded (default: runs/checkpoints)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--save-model", action=argparse.BooleanOptionalAction, default=True,
                        help="keep each finished run's trained weights (default: on)")
    parser.add_argument("--models-dir", help="where saved models go (default: $RISBENCH_MODELS or runs/models)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="risbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="train and evaluate one method under a suite's budget")
    bench.add_argument("--method", help="registered method name (see --list-methods)")
    bench.add_argument("--suite", default="shapes", help="suite name or path to a suite TOML (default: shapes)")
    bench.add_argument("--seed", type=validate.SEED, help="default: the suite's first seed")
    bench.add_argument("--lr", type=validate.POSITIVE_FLOAT, help="learning rate (default: the suite's lr)")
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method option")
    _add_run_arguments(bench)
    bench.add_argument("--force", action="store_true", help="re-run even if this run already finished")
    bench.add_argument("--reference", default=str(REPO / "results"),
                       help="records to compare the run with (default: results/, the committed reference)")
    bench.add_argument("--workers", type=validate.NON_NEGATIVE_INT, default=0,
                       help="data-loading worker processes (default: 0)")
    bench.add_argument("--log", choices=("none", "tensorboard"), default="none",
                       help="live training curves, metrics and predicted masks (tensorboard: needs "
                            "pip install 'risbench[tensorboard]'; default: none)")
    bench.add_argument("--log-dir", default=str(REPO / "runs" / "tensorboard"),
                       help="where --log writes, one folder per run (default: runs/tensorboard)")
    bench.add_argument("--list-methods", action="store_true", help="list methods with their options and defaults")
    bench.add_argument("--counts", action="store_true",
                       help="with --list-methods: trainable parameters on the default backbone and ViT-B/16 (slow)")
    bench.set_defaults(handler=cmd_bench)

    data = sub.add_parser("data", help="look at a dataset: preview grid or statistics")
    data.add_argument("action", choices=("preview", "stats"))
    data.add_argument("--suite", default="shapes", help="suite whose dataset and scene options to show")
    data.add_argument("--dataset", help="another dataset than the suite's, with its default options")
    data.add_argument("--split", help="default: the suite's first evaluation split")
    data.add_argument("--image-size", type=validate.POSITIVE_INT, help="default: the suite's image size")
    data.add_argument("-n", type=validate.POSITIVE_INT, default=16, help="images in the preview")
    data.add_argument("--out", default=str(REPO / "runs" / "preview.png"),
                      help="preview PNG path (default: runs/preview.png)")
    data.set_defaults(handler=cmd_data)

    pretrain = sub.add_parser("pretrain", help="rebuild the offline default backbone (contrastive, shapes captions)")
    pretrain.add_argument("--steps", type=validate.POSITIVE_INT, default=1500)
    pretrain.add_argument("--batch-size", type=validate.POSITIVE_INT, default=128)
    pretrain.add_argument("--seed", type=validate.SEED, default=0)
    pretrain.add_argument("--out", default=str(REPO / "methods" / "assets"))
    pretrain.add_argument("--no-progress", action="store_true")
    pretrain.set_defaults(handler=cmd_pretrain)

    profile = sub.add_parser("profile", help="FLOPs, parameters, peak memory and throughput per method")
    add_profile_arguments(profile)
    profile.set_defaults(handler=run_profile)

    sweep = sub.add_parser("sweep", help="every method x seeds under a suite, with the equal lr search")
    sweep.add_argument("--suite", help="suite name or TOML path (default: shapes)")
    sweep.add_argument("--table", action="append", default=[], metavar="N",
                       help="exactly the runs that fill ETRIS's table N (1-8; 2, 4-8 on --suite, default shapes); "
                            "repeatable or comma-separated: the tables run as one sweep, a row they share once")
    sweep.add_argument("--method", action="append", default=[], help="only these methods (repeatable)")
    sweep.add_argument("--seeds", help="comma-separated seeds (default: the suite's)")
    sweep.add_argument("--shard", default="0/1", help="i/n: run every n-th job starting at i (default 0/1)")
    sweep.add_argument("--dry-run", action="store_true", help="list the runs left to do, run nothing")
    sweep.add_argument("--jobs", type=validate.JOBS, default="auto",
                       help="runs at once, each in a worker process with --threads threads (default: cores // "
                            "jobs); auto: one per core on CPU, 1 on CUDA (default: auto)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="method option for an ablation point (needs exactly one --method)")
    _add_run_arguments(sweep)
    sweep.set_defaults(handler=cmd_sweep)

    predict = sub.add_parser("predict", help="a saved model's mask for one expression on an image or dataset item")
    predict.add_argument("--model", required=True, help="saved model folder (bench writes them under runs/models/)")
    add_weights_argument(predict)
    predict.add_argument("--image", help="image file to segment (with --text)")
    predict.add_argument("--text", help="the referring expression (with --index: replaces the item's own)")
    predict.add_argument("--index", type=validate.NON_NEGATIVE_INT,
                         help="take item N of a dataset split instead of --image")
    predict.add_argument("--suite", help="suite whose dataset --index reads (default: the model's suite)")
    predict.add_argument("--split", help="split --index reads (default: the suite's first evaluation split)")
    predict.add_argument("--out", required=True, help="PNG: the image with the predicted mask overlaid")
    predict.add_argument("--probabilities", help="also write the probability map: grey PNG, or float32 .npy")
    add_device_arguments(predict)
    predict.set_defaults(handler=cmd_predict)

    evaluate = sub.add_parser("evaluate", help="evaluate a saved model on any split of its suite (or another)")
    evaluate.add_argument("--model", required=True, help="saved model folder (bench writes them under runs/models/)")
    add_weights_argument(evaluate)
    evaluate.add_argument("--suite", help="suite on the same backbone to evaluate on (default: the model's suite)")
    evaluate.add_argument("--split", action="append", default=[],
                          help="split(s), repeatable or comma-separated (default: the suite's evaluation splits)")
    evaluate.add_argument("--limit", type=validate.NON_NEGATIVE_INT,
                          help="expressions per split (default: the suite's; 0: whole split)")
    evaluate.add_argument("--record", help="also write a re-evaluation record (JSON; never under results/)")
    add_device_arguments(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    counts = sub.add_parser("counts", help="parameter counts of ETRIS's table rows at paper scale (random weights)")
    counts.add_argument("--out", help="write the JSON here (the paper page reads results/counts/paper-tables.json)")
    counts.add_argument("--threads", type=validate.NON_NEGATIVE_INT, default=0, help="torch CPU threads (0: torch's)")
    counts.set_defaults(handler=cmd_counts)

    report = sub.add_parser("report", help="leaderboards, plots, paper and ablation pages from results/")
    report.add_argument("--results", default=str(REPO / "results"), help="run records to read (default: results/)")
    report.add_argument("--out", default=str(REPO / "reports"), help="folder to write (default: reports/)")
    report.set_defaults(handler=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    with interrupts.handled():  # first: a SIGTERM during start-up ends in exit 130 like a later one
        try:
            args = build_parser().parse_args(argv)
            with interrupts.deferred():  # every command needs torch; an interrupt inside its import would abort
                import torch  # noqa: F401
            return args.handler(args)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # the commands that record something say what; here nothing was
            print("interrupted before any work was recorded", file=sys.stderr)
            return 130
