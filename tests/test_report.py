"""The report from a small hand-made set of run records: tables, statuses, regeneration, bad files."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.report import build, file_bytes, write_report
from benchmarks.store import SCHEMA_VERSION, atomic_write_text
from benchmarks.suites import load_suite
from benchmarks.sweep import pick_lr
from methods import get_method

SUITE = dataclasses.replace(load_suite("smoke"), name="fixture", seeds=(0, 1, 2), lr_grid=(1e-3, 3e-3),
                            eval_splits=("val", "testA"))
KINDS = ("attribute", "relation")


def make_record(method: str, *, seed: int, lr: float, miou: float | None, status: str = "ok",
                options: dict | None = None, suite=SUITE, off_budget: bool = False, started: str = "2026-01-01"):
    """A schema-valid record whose val mIoU is `miou` (testA = miou + 1); costs depend on the method."""
    config = json.loads(json.dumps(dataclasses.asdict(get_method(method).make_config(options or {}))))
    trainable = {"frozen": 1000, "full": 90000, "lora": 3000}[method]
    results = {}
    if miou is not None:
        for k, split in enumerate(suite.eval_splits):
            value = miou + k
            results[split] = {"mIoU": value, "oIoU": max(value - 2, 0.0), **{f"prec@{t}": value / 2 for t in
                                                                   ("0.5", "0.6", "0.7", "0.8", "0.9")},
                              "n": 10, "per_kind": {kind: value + i for i, kind in enumerate(KINDS)},
                              "eval_seconds": 1.0}
    baselines = {split: {"largest_object": {"mIoU": 20.0, "oIoU": 15.0, **{f"prec@{t}": 20.0 for t in
                                                                           ("0.5", "0.6", "0.7", "0.8", "0.9")}}}
                 for split in suite.eval_splits}
    return {
        "schema_version": SCHEMA_VERSION,
        "run_info": {"suite": suite.name, "method": method, "method_config": config, "lr": lr, "seed": seed,
                     "config_hash": "x", "off_budget": off_budget, "status": status,
                     "error": "RuntimeError: boom" if status == "failed" else None, "started_at": started,
                     "config": {"suite": suite.to_dict(), "method": method, "method_config": config, "lr": lr}},
        "train_info": {"steps_done": 3, "train_seconds": 10.0, "images_per_second": 5.0,
                       "curve": [{"step": 1, "loss": 1.0 - seed / 10}, {"step": 2, "loss": 0.5}]},
        "results": results, "baselines": baselines,
        "cost": {"params": {"trainable": trainable, "total": 100000, "added": 0, "ratio_trainable": trainable / 1e5,
                            "ratio_added": 0.0}, "peak_memory_train_mb": 100.0 + trainable / 1000,
                 "gflops_per_image": 1.0, "train_gflops_per_image": 2.0},
        "meta_info": {"git_sha": "abcdef0123", "device": "cpu (test)"},
    }


def write(root: Path, record: dict, name: str) -> None:
    info = record["run_info"]
    atomic_write_text(root / info["suite"] / info["method"] / f"{name}-seed{info['seed']}.json", json.dumps(record))


@pytest.fixture
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    # full: lr search at seed 0 picks 1e-3 (40 > 30); seeds 1, 2 at 1e-3; one diverged seed elsewhere
    write(root, make_record("full", seed=0, lr=1e-3, miou=40.0), "a")
    write(root, make_record("full", seed=0, lr=3e-3, miou=30.0), "b")
    write(root, make_record("full", seed=1, lr=1e-3, miou=44.0), "a")
    write(root, make_record("full", seed=2, lr=1e-3, miou=None, status="diverged"), "a")
    # frozen: search picks 3e-3; three ok seeds there
    write(root, make_record("frozen", seed=0, lr=1e-3, miou=20.0), "a")
    for seed, miou in ((0, 25.0), (1, 26.0), (2, 27.0)):
        write(root, make_record("frozen", seed=seed, lr=3e-3, miou=miou), "b")
    # lora: every run failed
    write(root, make_record("lora", seed=0, lr=1e-3, miou=None, status="failed"), "a")
    # off budget and an ablation point: never in the leaderboard
    write(root, make_record("full", seed=0, lr=1e-3, miou=99.0, off_budget=True,
                            suite=dataclasses.replace(SUITE, steps=7)), "c")
    write(root, make_record("lora", seed=0, lr=1e-3, miou=35.0, options={"rank": 4}), "d")
    return root


def rows_of(markdown: str, heading: str) -> dict[str, list[str]]:
    """The table under a '## heading' as {first cell: other cells}."""
    section = markdown.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_leaderboard_averages_the_chosen_rate_and_counts_every_status(results):
    page = build(results)[Path("fixture/leaderboard.md")]
    accuracy = rows_of(page, "Accuracy")
    assert list(accuracy)[:3] == ["full", "frozen", "lora"]  # sorted by val mIoU, no-ok rows last
    runs, lr, rank, val_miou, val_oiou = accuracy["full"][:5]
    assert runs == "2 ok, 1 diverged" and float(lr) == 1e-3
    # seeds 0, 1 at 1e-3 (the 3e-3 search run and the off-budget 99 left out); the records have no per-expression
    # data, so the interval resamples the two seeds: [40, 44]; 16 points above frozen on both: significantly best
    assert rank == "1" and val_miou == "42.00 [40.0, 44.0]"  # not bold: seeds-only intervals (no per-expression data)
    assert val_oiou == "40.00 [38.0, 42.0]"  # the seeds' recorded oIoU resampled alike; never bold
    assert accuracy["frozen"][:4] == ["3 ok", "0.003", "2", "26.00 [25.0, 27.0]"]
    assert accuracy["lora"][0] == "1 failed (lr search incomplete)" and accuracy["lora"][3] == "–"
    assert accuracy["*baseline: largest object (ignores the text)*"][3] == "20.00"  # baselines never bold
    assert "These records predate per-expression results" in page
    cost = rows_of(page, "Cost")
    assert cost["frozen"][0] == "**1,000**" and cost["full"][0] == "90,000"
    assert "1 off-budget runs" in page
    not_ok = rows_of(page, "Runs that did not finish ok")
    assert [cells[3] for cells in not_ok.values()] == ["diverged", "failed"]
    assert not_ok["lora"][4] == "RuntimeError: boom"


def test_ablation_page_tables_a_swept_knob_and_says_not_run_for_the_rest(results):
    page = build(results)[Path("fixture/ablations.md")]
    rank = rows_of(page, "lora: LoRA rank")
    assert rank["4"][0] == "1 ok (lr search incomplete)" and rank["4"][2] == "35.00"  # nothing to beat: not bold
    assert rank["8 (default)"][0] == "1 failed (lr search incomplete)"
    assert "--method bridger --set width=$v" in page.split("## bridger: Bridger width", 1)[1]


def test_paper_page_quotes_the_paper_and_says_not_run_without_paper_suite_records(results):
    page = build(results)[Path("paper.md")]
    etris_vit = next(line for line in page.splitlines() if line.startswith("| ETRIS | ViT-B-16"))
    assert "70.51" in etris_vit and "73.51" in etris_vit and "66.63" in etris_vit
    header = next(line for line in page.splitlines() if line.startswith("| method | backbone"))
    rn50 = next(line for line in page.splitlines() if line.startswith("| ETRIS | RN50"))
    assert header.split(" | ").index("refcocog (google) val") == rn50.split(" | ").index("57.22")  # Table 1's columns
    assert "69.5-69.9" in page and "71.09 / 73.72 / 66.79" in page  # re-runs of ETRIS, with their spread
    ours = [line for line in page.splitlines() if line.startswith("| risbench ETRIS")]
    assert len(ours) == 3 and all("not run" in line for line in ours)
    assert "## Efficiency at paper scale\n\nnot run" in page


def test_paper_page_says_which_seeds_stand_behind_each_suites_cells(results, monkeypatch):
    import benchmarks.report.paper as paper

    real = paper.load_suite
    monkeypatch.setattr(paper, "load_suite", lambda name: dataclasses.replace(
        real(name), seeds=(0, 1, 2, 3, 4) if name == "shapes" else (7,)))
    intro = build(results)[Path("paper.md")].split("## Table 1")[0]
    assert "`shapes` 0, 1, 2, 3, 4 (5 seeds)" in intro and "`paper-rn101` 7 (1 seed)" in intro


def test_paper_page_shows_a_paper_suite_run_beside_the_paper(tmp_path):
    suite = dataclasses.replace(SUITE, name="paper-vitb16", eval_splits=("val", "testA", "testB"), seeds=(0,))
    root = tmp_path / "results"
    write(root, make_record("full", seed=0, lr=1e-3, miou=61.0, suite=suite), "a")
    page = build(root)[Path("paper.md")]
    row = next(line for line in page.splitlines() if line.startswith("| risbench full fine-tuning | ViT-B-16"))
    one = "(1 seed: no seed spread)"
    assert f"| 61.00 {one} | 62.00 {one} | 63.00 {one} |" in row and "1 ok (lr search incomplete); last step" in row


def test_paper_page_compares_the_selected_checkpoint_with_etris_and_the_leaderboard_keeps_the_last_step(tmp_path):
    suite = dataclasses.replace(SUITE, name="paper-vitb16", eval_splits=("val", "testA", "testB"), seeds=(0,))
    root = tmp_path / "results"
    record = make_record("full", seed=0, lr=1e-3, miou=61.0, suite=suite)
    record["selection"] = {"split": "val", "every": 1, "step": 2, "score": 70.0,
                           "results": {split: {"mIoU": 70.0 + k} for k, split in enumerate(suite.eval_splits)}}
    write(root, record, "a")
    files = build(root)
    row = next(line for line in files[Path("paper.md")].splitlines()
               if line.startswith("| risbench full fine-tuning | ViT-B-16"))
    one = "(1 seed: no seed spread)"
    assert f"| 70.00 {one} | 71.00 {one} | 72.00 {one} |" in row and "best checkpoint by ETRIS's selection" in row
    assert rows_of(files[Path("paper-vitb16/leaderboard.md")], "Accuracy (%)")["full"][3].startswith("61.00")


def test_table8_precision_on_a_paper_suite_comes_from_etris_selected_checkpoint(tmp_path):
    suite = dataclasses.replace(SUITE, name="paper-rn101", eval_splits=("val", "testA", "testB"), seeds=(0,))
    root = tmp_path / "results"
    record = make_record("full", seed=0, lr=1e-3, miou=61.0, suite=suite)
    record["selection"] = {"split": "val", "every": 1, "step": 2, "score": 70.0,
                           "results": {"val": {"mIoU": 70.0, **{f"prec@{t}": 90.0 - 10 * k for k, t in
                                                                 enumerate(("0.5", "0.6", "0.7", "0.8", "0.9"))}}}}
    write(root, record, "a")
    row = rows_of(build(root)[Path("paper.md")], "Table 8: Table 2 with precision")["Full tuning"]
    assert row[6:12] == ["70.00 (1 seed: no seed spread)", "90.00", "80.00", "70.00", "60.00", "50.00"]


def test_paper_page_has_every_table_and_fills_ablation_rows_from_their_runs(tmp_path):
    """Table 6's 'w/o Bridger' is frozen on the shapes analog; a decoder-ablation run is a row of its own and
    does not become the suite's budget (which would hide every other run)."""
    shapes = dataclasses.replace(SUITE, name="shapes", lr_grid=(1e-3,))
    root = tmp_path / "results"
    for seed, miou in ((0, 25.0), (1, 26.0), (2, 27.0)):
        write(root, make_record("frozen", seed=seed, lr=1e-3, miou=miou, suite=shapes), "a")
    ablated = dataclasses.replace(shapes, decoder_options={"global_alignment": False})
    write(root, make_record("frozen", seed=0, lr=1e-3, miou=10.0, suite=ablated, started="2026-02-01"), "b")
    pages = build(root)
    page = pages[Path("paper.md")]
    headings = [int(n) for n in re.findall(r"^## Table (\d):", page, flags=re.M)]
    assert headings == list(range(1, 9))  # every table once, in the paper's order
    without_bridger = next(line for line in page.splitlines() if line.startswith("| w/o Bridger"))
    assert "67.73" in without_bridger and "not run" in without_bridger and "| 26.00 [25.0, 27.0] |" in without_bridger
    assert "python -m benchmarks sweep --table 6 --suite paper-rn101" in page
    board = pages[Path("shapes/leaderboard.md")]
    assert "26.00" in board and "10.00" not in board.split("## ")[1]


def test_report_is_byte_identical_when_regenerated(results, tmp_path):
    first = write_report(results, tmp_path / "one")
    second = write_report(results, tmp_path / "two")
    assert {p.relative_to(tmp_path / "one") for p in first} == {p.relative_to(tmp_path / "two") for p in second}
    assert any(p.suffix == ".png" for p in first)
    for path in first:
        assert path.read_bytes() == (tmp_path / "two" / path.relative_to(tmp_path / "one")).read_bytes(), path


def test_corrupt_record_is_skipped_with_a_warning_naming_it(results, tmp_path, capsys):
    bad = results / "fixture" / "full" / "zzz-seed9.json"
    bad.write_text('{"schema_version": 1, "run_info": ')
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "reports")]) == 0
    err = capsys.readouterr().err
    assert re.search(rf"warning: skipping {re.escape(str(bad))}: not a readable JSON run record", err)
    assert "2 ok, 1 diverged" in (tmp_path / "reports" / "fixture" / "leaderboard.md").read_text()


def test_pick_lr_takes_the_best_score_ties_to_the_smaller_rate_and_falls_back():
    assert pick_lr({1e-3: 30.0, 3e-3: 31.0}, default=1e-3) == 3e-3
    assert pick_lr({1e-3: 30.0, 3e-3: 30.0}, default=3e-3) == 1e-3
    assert pick_lr({1e-3: None, 3e-3: None}, default=3e-3) == 3e-3


def test_profile_document_adds_side_by_side_speed_and_is_not_taken_for_a_record(results, tmp_path, capsys):
    rows = [{"method": m, "backbone": SUITE.backbone, "image_size": SUITE.image_size, "batch_size": SUITE.batch_size,
             "device": "cpu", "throughput": {"train_images_per_s": ips, "infer_images_per_s": 10 * ips}}
            for m, ips in (("frozen", 50.0), ("full", 20.0))]
    atomic_write_text(results / "profile" / "fixture.json", json.dumps({"suite": "fixture", "rows": rows}))
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "reports")]) == 0
    assert "skipping" not in capsys.readouterr().err
    cost = rows_of((tmp_path / "reports" / "fixture" / "leaderboard.md").read_text(), "Cost")
    assert cost["frozen"][-2:] == ["**50**", "**500**"] and cost["full"][-2:] == ["20", "200"]


def test_each_suite_page_shows_only_its_own_splits_and_unusable_records_are_skipped(results, capsys):
    other = dataclasses.replace(SUITE, name="other", eval_splits=("testB",), lr_search_split="testB")
    write(results, make_record("frozen", seed=0, lr=1e-3, miou=10.0, suite=other), "a")
    broken = make_record("frozen", seed=1, lr=1e-3, miou=10.0, suite=other)
    del broken["run_info"]["config"]["suite"]["seeds"]
    write(results, broken, "b")
    with pytest.warns(UserWarning, match=r"skipping .*b-seed1\.json: run record lacks or mistypes a field \(KeyError"):
        files = build(results)
    assert "testB" not in files[Path("fixture/leaderboard.md")]
    other_page = files[Path("other/leaderboard.md")]
    assert "testB mIoU" in other_page and "val mIoU" not in other_page and "1 ok (lr search incomplete)" in other_page


def test_regenerating_removes_what_the_results_no_longer_give_and_nothing_else(results, tmp_path):
    other = dataclasses.replace(SUITE, name="other")
    write(results, make_record("frozen", seed=0, lr=1e-3, miou=10.0, suite=other), "a")
    out = tmp_path / "reports"
    write_report(results, out)
    (out / "notes.md").write_text("mine")
    assert (out / "other" / "leaderboard.md").exists()
    for path in (results / "other").rglob("*.json"):
        path.unlink()
    write_report(results, out)
    assert not (out / "other" / "leaderboard.md").exists() and (out / "fixture" / "leaderboard.md").exists()
    assert (out / "notes.md").read_text() == "mine"


def test_committed_reports_are_what_the_committed_results_give():
    """reports/ is generated, never edited: after adding records, run `nox -s report` and commit both.
    Pages are compared byte for byte; figures only for presence (PNG bytes depend on the matplotlib build)."""
    repo = Path(__file__).resolve().parent.parent
    for relative, content in build(repo / "results").items():
        committed = repo / "reports" / relative
        assert committed.exists(), f"{committed} missing: run nox -s report"
        if relative.suffix == ".md":
            assert committed.read_bytes() == file_bytes(content), f"{committed} is stale: run nox -s report"


def test_paired_comparisons_use_the_seeds_both_ran_ok(results):
    page = build(results)[Path("fixture/leaderboard.md")]
    paired = rows_of(page, "Paired comparisons on val")
    # full has ok seeds 0 and 1 (40, 44; seed 2 diverged), frozen 25, 26, 27: seed 2 cannot be paired
    assert list(paired) == ["frozen"]  # lora has no ok run to pair
    assert paired["frozen"][:4] == ["2", "-16.50 [-18.0, -15.0]", "0.00", "0 of 2"]
    assert paired["frozen"][-1] == "2 seeds (no per-expression data)"


def test_a_method_whose_seeds_are_still_running_is_shown_but_not_ranked_or_compared(tmp_path):
    """Mid-sweep, a method with one seed would tie with the leader only for want of seeds."""
    root = tmp_path / "results"
    write(root, make_record("full", seed=0, lr=1e-3, miou=40.0), "a")  # best, but seeds 1 and 2 still to run
    write(root, make_record("full", seed=0, lr=3e-3, miou=30.0), "b")
    write(root, make_record("full", seed=1, lr=1e-3, miou=1.0, status="interrupted"), "a")
    for method, best, other in (("lora", 1e-3, 3e-3), ("frozen", 3e-3, 1e-3)):
        write(root, make_record(method, seed=0, lr=other, miou=10.0), "b")
        for seed in (0, 1, 2):
            write(root, make_record(method, seed=seed, lr=best, miou=(35.0 if method == "lora" else 20.0) + seed,
                                    status="diverged" if (method, seed) == ("frozen", 2) else "ok"), "a")
    page = build(root)[Path("fixture/leaderboard.md")]
    accuracy = rows_of(page, "Accuracy")
    assert [accuracy[m][2] for m in ("full", "lora", "frozen")] == ["–", "1", "2"]  # frozen's diverged seed ended
    assert accuracy["full"][3] == "40.00"  # one seed: no interval
    assert "Not ranked or compared until every seed of the suite has run: full (seeds 1, 2 to go)." in page
    assert "the 2 methods fall into 2 tiers" in page and "full vs" not in page
    assert list(rows_of(page, "Paired comparisons on val")) == ["frozen"]


def test_runs_of_seeds_outside_the_suite_are_counted_beside_the_leaderboard_not_in_it(results):
    """`bench --seed 7` (and an interrupted or --force re-run of one) never moves a row silently."""
    before = build(results)
    write(results, make_record("full", seed=7, lr=1e-3, miou=90.0), "a")
    write(results, make_record("frozen", seed=5, lr=3e-3, miou=1.0, status="interrupted"), "b")
    after = build(results)
    for name in ("fixture/leaderboard.md", "fixture/ablations.md", "paper.md"):
        page = after[Path(name)]
        if name == "fixture/leaderboard.md":
            assert "2 runs of seeds outside the suite's seeds (5, 7) are not in the tables." in page
            page = page.replace("\n2 runs of seeds outside the suite's seeds (5, 7) are not in the tables.", "")
        assert page == before[Path(name)], name


def test_a_leaderboard_whose_records_count_flops_under_two_rules_says_so(results):
    assert "different rules" not in build(results)[Path("fixture/leaderboard.md")]
    for seed, rule in ((0, "rule A"), (1, "rule B")):
        record = make_record("full", seed=seed, lr=1e-3, miou=40.0 + seed)
        record["cost"]["flop_convention"] = rule
        write(results, record, "a")
    assert "counted under 2 different rules" in build(results)[Path("fixture/leaderboard.md")]


def test_paper_efficiency_table_keeps_one_row_per_device_and_precision():
    """A GPU document (bf16 and fp16 rows) beside a CPU one: every measurement setting keeps its row."""
    from benchmarks.report.paper import efficiency_table

    def row(device: str, precision: str, speed: float) -> dict:
        return {"method": "bridger", "backbone": "ViT-B-16", "image_size": 416, "batch_size": 32,
                "params": {"trainable": 2e7, "added": 6e5, "ratio_added": 0.004, "ratio_paper": 0.007},
                "gflops_per_image": 100.0, "train_gflops_per_image": 300.0, "device": device,
                "precision": precision, "throughput": {"train_images_per_s": speed}}

    profiles = [{"suite": "paper-vitb16", "rows": [row("NVIDIA H200", "bf16", 300.0),
                                                   row("NVIDIA H200", "fp16", 310.0)]},
                {"suite": "paper-vitb16", "rows": [row("cpu (test)", "fp32", 2.0)]}]
    lines = [line for line in efficiency_table(profiles).splitlines() if "| bridger" in line]
    assert len(lines) == 3
    cells = [{c.strip() for c in line.split("|")} for line in lines]
    assert sorted(("NVIDIA H200" in c, ({"bf16", "fp16", "fp32"} & c).pop()) for c in cells) == [
        (False, "fp32"), (True, "bf16"), (True, "fp16")]


def test_paper_page_cells_carry_the_leaderboards_interval_and_name_the_seeds_to_go(tmp_path):
    """Same runs, same statistics: a shapes-analog cell equals the leaderboard's mIoU cell (both
    seeds-only here), and a row with one of the suite's three seeds names the two still to run; Table 8's
    precision cells equal the leaderboard's precision table."""
    shapes = dataclasses.replace(SUITE, name="shapes", lr_grid=(1e-3,))
    root = tmp_path / "results"
    for seed, miou in ((0, 30.0), (1, 34.0), (2, 35.5)):
        write(root, make_record("full", seed=seed, lr=1e-3, miou=miou, suite=shapes), "a")
    write(root, make_record("frozen", seed=0, lr=1e-3, miou=25.0, suite=shapes), "a")
    pages = build(root)
    board = rows_of(pages[Path("shapes/leaderboard.md")], "Accuracy (%)")
    table2 = rows_of(pages[Path("paper.md")], "Table 2: Other PET methods")
    assert re.fullmatch(r"33\.17 \[\d+\.\d, \d+\.\d\]", board["full"][3])
    assert table2["Full tuning"][-1] == board["full"][3]
    assert board["frozen"][3] == "25.00"
    assert table2["Frozen backbone"][-1] == "25.00 (seeds 1, 2 to go: not compared yet)"
    assert "over seeds, then over expressions" in pages[Path("paper.md")].split("## Table 1")[0]
    precision = rows_of(pages[Path("shapes/leaderboard.md")], "Precision at IoU thresholds on val")
    table8 = rows_of(pages[Path("paper.md")], "Table 8: Table 2 with precision")
    assert table8["Full tuning"][-5:] == precision["full"] and precision["full"][0].startswith("16.58 [")
    assert table8["Frozen backbone"][-5:] == ["12.50"] * 5  # one seed: no interval
    assert table8["Adapter"][-6:] == ["not run"] * 6


def test_a_search_that_chose_an_end_of_its_grid_is_named_on_both_pages(tmp_path):
    """full peaks at the grid's lowest rate, lora at its highest, frozen inside: only the first two are named,
    on the leaderboard and in the paper page's tables; a search still missing a rate names nothing yet."""
    shapes = dataclasses.replace(SUITE, name="shapes", lr_grid=(3e-4, 1e-3, 3e-3), seeds=(0,))
    root = tmp_path / "results"
    scores = {"full": (30.0, 20.0, 10.0), "lora": (10.0, 20.0, 30.0), "frozen": (10.0, 30.0, 20.0)}
    for method, values in scores.items():
        for lr, miou in zip(shapes.lr_grid, values, strict=True):
            write(root, make_record(method, seed=0, lr=lr, miou=miou, suite=shapes), f"{method}-{lr:g}")
    pages = build(root)
    board = pages[Path("shapes/leaderboard.md")]
    assert ("Learning rate at an end of the searched grid: full (0.0003, the lowest); lora (0.003, the highest)."
            in board)
    paper = pages[Path("paper.md")]
    assert ('Learning rate at an end of the searched grid on `shapes`: "Full tuning" (0.0003, the lowest); "LoRA" '
            '(0.003, the highest).') in paper.split("## Table 2")[1].split("## Table 4")[0]
    (root / "shapes" / "lora" / "lora-0.0003-seed0.json").unlink()  # lora's search is no longer complete
    assert "lora (0.003" not in build(root)[Path("shapes/leaderboard.md")]
