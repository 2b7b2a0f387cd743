"""Leaderboard statistics from records that carry per-expression results: tie groups, bold, paired rows."""

from pathlib import Path

import numpy as np
import pytest
from test_report import SUITE, make_record, rows_of, write

from benchmarks.per_expression import pack
from benchmarks.report import build

EXPRESSIONS = 200


def record_with_expressions(method: str, seed: int, ious: np.ndarray, *, lr: float = 1e-3) -> dict:
    """A fixture record whose splits carry `ious` (given as intersection / 1000-pixel union) per expression."""
    intersection = np.round(np.clip(ious, 0, 1) * 1000).astype(int)
    miou = 100 * float(np.mean(intersection / 1000))
    record = make_record(method, seed=seed, lr=lr, miou=miou)
    for split in SUITE.eval_splits:
        record["results"][split]["mIoU"] = miou  # make_record offsets testA by 1; keep it consistent here
        record["results"][split]["per_expression"] = pack(range(EXPRESSIONS), intersection.tolist(),
                                                          [1000] * EXPRESSIONS, ["attribute"] * EXPRESSIONS)
    return record


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """full is 15 points better than lora; frozen has lora's scores with the seeds rotated, so the two have the
    same mean but differ seed by seed and expression by expression."""
    rng = np.random.default_rng(7)
    difficulty = rng.uniform(0.1, 0.7, EXPRESSIONS)
    draws = {method: [difficulty + shift + rng.normal(0, 0.15, EXPRESSIONS) for _ in SUITE.seeds]
             for method, shift in (("full", 0.15), ("lora", 0.0))}
    draws["frozen"] = draws["lora"][1:] + draws["lora"][:1]
    root = tmp_path / "results"
    for method, per_seed in draws.items():
        for seed, ious in zip(SUITE.seeds, per_seed, strict=True):
            for lr in SUITE.lr_grid:  # the search sees both rates; the smaller one scores higher
                write(root, record_with_expressions(method, seed, ious - (lr > 1e-3) * 0.2, lr=lr), f"{lr}")
    return root


def test_a_real_gap_is_bold_and_methods_from_one_distribution_share_a_rank(results):
    page = build(results)[Path("fixture/leaderboard.md")]
    accuracy = rows_of(page, "Accuracy")
    assert accuracy["full"][2] == "1" and accuracy["full"][3].startswith("**")
    assert accuracy["lora"][2] == accuracy["frozen"][2] == "2"  # tied: their interval covers 0
    assert not accuracy["lora"][3].startswith("**") and not accuracy["frozen"][3].startswith("**")
    assert "predate per-expression" not in page
    paired = rows_of(page, "Paired comparisons on val")
    assert paired["lora"][-1] == paired["frozen"][-1] == f"3 seeds x {EXPRESSIONS} expressions"
    second, third = paired  # equal means: in name order
    assert paired[third][4] == second
    low, high = (float(v) for v in paired[third][5].split("[")[1].rstrip("]").split(","))
    assert low < 0 < high  # the third minus its neighbour above: a tie
    assert 0.4 < float(paired[third][6]) < 0.6  # and a probability of improvement near one half
    assert float(paired["lora"][2]) < 0.3  # lora rarely beats full on an expression


def test_records_without_per_expression_data_are_named_and_fall_back_to_seeds(results):
    rng = np.random.default_rng(8)
    old = record_with_expressions("frozen", 0, rng.uniform(0.2, 0.6, EXPRESSIONS))
    for split in SUITE.eval_splits:
        del old["results"][split]["per_expression"]
    write(results, old, "0.001")  # replaces frozen's seed-0 record at the chosen rate
    page = build(results)[Path("fixture/leaderboard.md")]
    assert "The records of methods frozen predate per-expression results" in page
    paired = rows_of(page, "Paired comparisons on val")
    assert paired["frozen"][-1] == "3 seeds (no per-expression data)"
    assert paired["lora"][-1] == f"3 seeds x {EXPRESSIONS} expressions"


def _cell_interval(cell: str) -> tuple[float, float, float]:
    value, bounds = cell.split(" [")
    low, high = (float(v) for v in bounds.rstrip("]").split(","))
    return float(value), low, high


def test_oiou_and_precision_cells_carry_the_intervals_of_their_own_statistic(tmp_path):
    """oIoU's interval is the ratio bootstrap of the summed counts, Prec@t's the interval of `IoU > t`
    indicators; records without per-expression data fall back to the seeds' recorded values."""
    from benchmarks.stats import interval, ratio_interval

    rng = np.random.default_rng(11)
    unions = rng.integers(100, 3000, size=(3, EXPRESSIONS))
    inters = {method: np.floor(unions * np.clip(rng.uniform(0.2, 1.0, size=unions.shape) + shift, 0, 1)).astype(int)
              for method, shift in (("full", 0.1), ("lora", 0.0))}
    root = tmp_path / "results"
    for method, inter in inters.items():
        for seed in SUITE.seeds:
            record = make_record(method, seed=seed, lr=1e-3, miou=0.0)
            ious = inter[seed] / unions[seed]
            for split in SUITE.eval_splits:
                record["results"][split].update(
                    {"mIoU": 100 * ious.mean(), "oIoU": 100 * inter[seed].sum() / unions[seed].sum(),
                     **{f"prec@{t}": 100 * float((ious > t).mean()) for t in (0.5, 0.6, 0.7, 0.8, 0.9)},
                     "per_expression": pack(range(EXPRESSIONS), inter[seed].tolist(), unions[seed].tolist(),
                                            ["attribute"] * EXPRESSIONS)})
            if method == "lora":  # lora's records are older: no per-expression data
                for split in SUITE.eval_splits:
                    del record["results"][split]["per_expression"]
            write(root, record, "a")
    page = build(root)[Path("fixture/leaderboard.md")]
    accuracy, precision = rows_of(page, "Accuracy"), rows_of(page, "Precision at IoU thresholds on val")
    expected = ratio_interval(100 * inters["full"], unions)
    assert _cell_interval(accuracy["full"][4]) == pytest.approx((expected.value, expected.low, expected.high),
                                                                abs=0.051)
    full_ious = inters["full"] / unions
    expected = interval(100 * (full_ious > 0.9))
    assert _cell_interval(precision["full"][4]) == pytest.approx((expected.value, expected.low, expected.high),
                                                                 abs=0.051)
    seeds_only = interval(np.array([[100 * inters["lora"][s].sum() / unions[s].sum()] for s in SUITE.seeds]))
    assert _cell_interval(accuracy["lora"][4]) == pytest.approx(
        (seeds_only.value, seeds_only.low, seeds_only.high), abs=0.051)
    assert "oIoU resamples intersections and unions together" in page
    assert "±" not in accuracy["full"][4] + precision["full"][4]


def test_seeds_only_labels_name_each_row_lacking_per_expression_data_on_any_split_once():
    """The leaderboard note, the ablation line and the paper note all name these rows: one list, sorted."""
    from benchmarks.report.statistics import Scores, SplitStats, seeds_only_labels

    def scores(per_expression: bool, shift: float) -> Scores:
        matrix = np.full((3, 4), 50.0 + shift) + np.arange(4)
        return Scores((0, 1, 2), matrix.mean(axis=1), np.arange(4) if per_expression else None,
                      matrix if per_expression else None)

    val = SplitStats("val", {"b": scores(False, 0), "a": scores(True, 1), "c": scores(False, 2)})
    test = SplitStats("testA", {"a": scores(False, 0), "b": scores(False, 1), "d": scores(True, 2)})
    assert seeds_only_labels([val, test]) == ["a", "b", "c"]
    assert seeds_only_labels([val]) == ["b", "c"]
    assert seeds_only_labels([SplitStats("val", {"d": scores(True, 0)})]) == []
