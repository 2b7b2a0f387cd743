"""Kept predicted masks: exact round trip, the fixed choice of items, agreement with the scores, the figure."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from test_report import SUITE, make_record, write

from benchmarks.data import build_dataset
from benchmarks.evaluate import eval_subset, evaluate
from benchmarks.per_expression import unpack as unpack_scores
from benchmarks.report import build
from benchmarks.report.qualitative import choose_rows, iou, shown_runs
from benchmarks.report.runs import at_chosen_rates, current_budget, leaderboard_runs, runs_frame
from benchmarks.showcase import PER_KIND, Showcase, ShowcaseKeeper, pack, unpack
from benchmarks.store import ResultStore


@pytest.mark.parametrize("seed", range(20))
def test_masks_round_trip_exactly_whatever_their_shape(seed):
    rng = np.random.default_rng(seed)
    masks = {int(i): rng.random((int(rng.integers(1, 70)), int(rng.integers(1, 70)))) < rng.random()
             for i in rng.choice(1000, size=int(rng.integers(0, 6)), replace=False)}
    kinds = {i: random.Random(i).choice(["spatial", "colour", ""]) for i in masks}
    back = unpack(json.loads(json.dumps(pack(masks, kinds))))
    assert back.kinds == kinds and set(back.masks) == set(masks)
    for i, mask in masks.items():
        assert back.masks[i].dtype == bool and np.array_equal(back.masks[i], mask)


@pytest.mark.parametrize("bad", [{}, {"encoding": "rle"}, {"encoding": "packbits+zlib+base64", "items": [{}]},
                                 {"encoding": "packbits+zlib+base64",
                                  "items": [{"index": 0, "kind": "", "shape": [9, 9], "bits": "!!"}]}])
def test_garbled_masks_are_a_value_error(bad):
    with pytest.raises(ValueError):
        unpack(bad)


@pytest.mark.parametrize("seed", range(10))
def test_keeper_keeps_the_first_of_each_kind_and_shards_merge_to_the_same(seed):
    rng = random.Random(seed)
    kinds = [rng.choice("abc") for _ in range(40)]
    masks = {i: torch.rand(5, 7) > 0.5 for i in range(40)}
    whole = ShowcaseKeeper()
    for i, kind in enumerate(kinds):
        whole.offer(i, masks[i], kind)
    expected = sorted(i for i, k in enumerate(kinds) if kinds[:i + 1].count(k) <= PER_KIND)
    assert sorted(whole.masks) == expected
    cuts = sorted(rng.sample(range(1, 40), 2))
    shards = []
    for start, stop in zip([0, *cuts], [*cuts, 40], strict=True):
        keeper = ShowcaseKeeper()
        for i in range(start, stop):
            keeper.offer(i, masks[i], kinds[i])
        shards.append(keeper)
    merged = ShowcaseKeeper.merged(shards)
    assert merged.pack() == whole.pack()


def test_evaluation_keeps_the_masks_it_scored(tiny):
    """The kept masks are those scored: their IoU against the targets is each expression's recorded IoU."""
    dataset = eval_subset(build_dataset("shapes", "val", 64), 30)
    scored = evaluate(tiny, dataset, batch_size=8, threshold=0.35, device=torch.device("cpu"), showcase=True)
    kept = unpack(scored["showcase"])
    kinds = [dataset[i]["kind"] for i in range(30)]
    assert sorted(kept.masks) == sorted(i for i in range(30) if kinds[:i + 1].count(kinds[i]) <= PER_KIND)
    per_expression = unpack_scores(scored["per_expression"])
    recorded = dict(zip(per_expression.index.tolist(), per_expression.iou.tolist(), strict=True))
    for index, mask in kept.masks.items():
        target = dataset[index]["orig_mask"].numpy()
        assert mask.shape == target.shape and iou(mask, target) == pytest.approx(recorded[index], abs=1e-12)


def test_rows_are_one_per_kind_then_the_largest_disagreement():
    target = {i: np.eye(4, dtype=bool) for i in range(6)}
    kinds = {0: "a", 1: "b", 2: "a", 3: "b", 4: "a", 5: "b"}
    right, wrong = np.eye(4, dtype=bool), np.zeros((4, 4), dtype=bool)
    # methods agree on 0, 1, 3 (both right) and disagree fully on 4, partly on 2, 5
    half = np.diag([True, True, False, False])
    one = Showcase({0: right, 1: right, 2: right, 3: right, 4: right, 5: right}, kinds)
    two = Showcase({0: right, 1: right, 2: half, 3: right, 4: wrong, 5: half}, kinds)
    rows = choose_rows({"one": one, "two": two}, target, rows=4)
    assert [(r.index, r.why) for r in rows] == [(0, "kind"), (1, "kind"), (4, "spread"), (2, "spread")]


@pytest.mark.parametrize("seed", range(15))
def test_rows_come_only_from_targets_every_shown_run_kept(seed):
    """Targets beyond what some run kept (or beyond every run) are skipped, never a KeyError: the rows are those
    chosen from the targets restricted to the common indices."""
    rng = np.random.default_rng(seed)
    kinds = {i: str(rng.choice(["a", "b", "c"])) for i in range(30)}
    shown = {}
    for name in ("one", "two", "three")[:int(rng.integers(1, 4))]:
        kept = [int(i) for i in rng.choice(30, size=int(rng.integers(0, 25)), replace=False)]
        shown[name] = Showcase({i: rng.random((3, 3)) < 0.5 for i in kept}, {i: kinds[i] for i in kept})
    targets = {int(i): rng.random((3, 3)) < 0.5 for i in rng.choice(40, size=int(rng.integers(0, 40)), replace=False)}
    common = set.intersection(*(set(s.masks) for s in shown.values())) & set(targets)
    rows = choose_rows(shown, targets, rows=8)
    assert len(rows) == min(8, len(common)) and {r.index for r in rows} <= common
    assert rows == choose_rows(shown, {i: targets[i] for i in common}, rows=8)


def test_choosing_rows_without_a_shown_run_is_a_value_error():
    with pytest.raises(ValueError, match="at least one shown run"):
        choose_rows({}, {0: np.eye(2, dtype=bool)})


def _kept_masks_record(method: str, quality: str, seed: int = 0, lr: float = 1e-3) -> dict:
    """A report fixture record whose val masks are the ground truth ('right') or empty ('empty')."""
    record = make_record(method, seed=seed, lr=lr, miou=40.0)
    dataset = build_dataset(SUITE.dataset, "val", SUITE.image_size, SUITE.dataset_options)
    items = {i: dataset[i] for i in range(10)}
    masks = {i: item["orig_mask"].numpy() if quality == "right" else np.zeros_like(item["orig_mask"].numpy())
             for i, item in items.items()}
    record["results"]["val"]["showcase"] = pack(masks, {i: item["kind"] for i, item in items.items()})
    return record


def test_leaderboard_shows_the_masks_of_every_method_that_kept_them(tmp_path: Path):
    root = tmp_path / "results"
    write(root, _kept_masks_record("full", "right"), "a")
    write(root, _kept_masks_record("frozen", "empty"), "a")
    write(root, make_record("lora", seed=0, lr=1e-3, miou=10.0), "a")  # an older record: no masks
    files = build(root)
    page = files[Path("fixture/leaderboard.md")]
    assert files[Path("fixture/qualitative.png")].startswith(b"\x89PNG")
    assert "![qualitative.png](qualitative.png)" in page and "Not shown (no kept masks): lora." in page
    assert "among the 10 val expressions" in page


def test_figure_takes_an_extra_seed_only_where_the_first_suite_seed_kept_no_masks(tmp_path: Path):
    """Records of the suite's seeds made before masks were kept: the figure falls back to the lowest other seed at
    the chosen rate; a run at a rate the search did not choose, or of a method's later seed, is never shown."""
    root = tmp_path / "results"
    for seed in (0, 1, 2):  # full: the suite's seeds without masks; 1e-3 wins the search over 3e-3
        write(root, make_record("full", seed=seed, lr=1e-3, miou=40.0), "a")
    write(root, make_record("full", seed=0, lr=3e-3, miou=5.0), "b")
    write(root, _kept_masks_record("full", "right", seed=5), "a")
    write(root, _kept_masks_record("full", "empty", seed=3, lr=3e-3), "b")  # not the chosen rate
    write(root, _kept_masks_record("full", "empty", seed=7), "a")  # a later extra seed
    write(root, _kept_masks_record("frozen", "empty", seed=0), "a")  # the first suite seed kept masks
    write(root, _kept_masks_record("frozen", "right", seed=3), "a")
    runs = runs_frame(ResultStore(root).records())
    chosen = leaderboard_runs(current_budget(runs))
    shown, seeds = shown_runs(at_chosen_rates(runs, chosen), ["full", "frozen"], "val")
    assert seeds == {"full": 5, "frozen": 0}
    assert all(shown["full"].masks[i].any() for i in shown["full"].masks)  # seed 5's 'right' masks
    assert not any(shown["frozen"].masks[i].any() for i in shown["frozen"].masks)
    page = build(root)[Path("fixture/leaderboard.md")]
    assert "at its chosen learning rate, seed 0, 5 (the column titles say which" in page


def test_leaderboard_says_why_there_is_no_figure_for_records_without_masks(tmp_path: Path):
    root = tmp_path / "results"
    write(root, make_record("full", seed=0, lr=1e-3, miou=40.0), "a")
    files = build(root)
    assert Path("fixture/qualitative.png") not in files
    page = files[Path("fixture/leaderboard.md")]
    assert "No qualitative figure: no record of this suite keeps predicted masks" in page


TIMINGS = {"started_at", "train_seconds", "images_per_second", "eval_seconds", "selection_seconds",
           "peak_memory_train_mb", "peak_memory_eval_mb"}


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_only_evaluations_a_record_keeps_pack_masks_and_the_record_is_unchanged(tmp_path, monkeypatch):
    """Anytime and selection scoring keep only mIoU: they build no ShowcaseKeeper. Packing in every evaluation,
    as before, gives the same record."""
    import benchmarks.evaluate as evaluation
    import benchmarks.train as train
    from benchmarks.store import ResultStore, RunSpec
    from benchmarks.suites import load_suite
    from methods import get_method

    built = []

    class Counting(ShowcaseKeeper):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(evaluation, "ShowcaseKeeper", Counting)
    monkeypatch.setattr(train, "profile_run", lambda *args: {})  # FLOPs: not what is tested here
    suite = load_suite("smoke").replace({"eval_every": 1, "select_every": 1})
    spec = RunSpec(suite, "lora", get_method("lora").make_config(), lr=suite.lr, seed=0, off_budget=True)
    record = train.run(spec, ResultStore(tmp_path / "now"), device=torch.device("cpu"), progress=False)
    assert len(record["train_info"]["anytime"]) == len(record["selection"]["history"]) == suite.steps
    assert record["selection"]["step"] != suite.steps  # so the selected weights' splits are scored (and kept) too
    kept_evaluations = 2 * len(suite.eval_splits)
    assert len(built) == 2 * kept_evaluations  # each builds two keepers: its process's and the merged one

    packing_everywhere = evaluation.evaluate
    monkeypatch.setattr(train, "evaluate", lambda *args, **kwargs: packing_everywhere(*args, **{**kwargs,
                                                                                             "showcase": True}))
    before = train.run(spec, ResultStore(tmp_path / "before"), device=torch.device("cpu"), progress=False)
    assert len(built) > 2 * 2 * kept_evaluations  # the anytime and selection scoring packed masks too
    assert without_timings(record) == without_timings(before)
    assert unpack(record["results"]["val"]["showcase"]).masks and unpack(record["selection"]["results"]["val"]
                                                                         ["showcase"]).masks
