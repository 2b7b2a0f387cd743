"""Anytime curves, the compute-matched table and the memory cap on the leaderboard page."""

from pathlib import Path

from test_report import make_record, rows_of, write

from benchmarks.report import build

BATCH = 4
GFLOPS_PER_IMAGE = {"frozen": 1.0, "full": 3.0}


def record_with_curve(method: str, seed: int, *, over_cap: bool) -> dict:
    """Anytime points every 10 steps to 100: frozen reaches step / 2, full 10 + step / 2 (three times the compute)."""
    record = make_record(method, seed=seed, lr=1e-3, miou=50.0 if method == "frozen" else 60.0)
    offset = 0.0 if method == "frozen" else 10.0
    record["train_info"].update(anytime_split="val", anytime_expressions=200, anytime=[
        {"step": step, "images_seen": step * BATCH, "train_seconds": step / 10 + seed,
         "train_gflops": step * BATCH * GFLOPS_PER_IMAGE[method], "mIoU": offset + step / 2 + seed}
        for step in range(10, 101, 10)])
    record["cost"].update(memory_cap_gb=1.0, memory_cap_enforced=False, over_memory_cap=over_cap)
    return record


def test_compute_matched_table_reads_each_curve_at_frozens_and_fulls_budgets(tmp_path):
    root = tmp_path / "results"
    for seed in (0, 1, 2):
        write(root, record_with_curve("frozen", seed, over_cap=False), "a")
        write(root, record_with_curve("full", seed, over_cap=seed == 2), "a")
    files = build(root)
    page = files[Path("fixture/leaderboard.md")]
    matched = rows_of(page, "Accuracy at equal training compute")
    # mean over seeds adds 1; frozen's whole run is 400 GFLOPs, full's 1200. Full at 400: between its step 30
    # (360 GFLOPs, 25 + 1) and step 40 (480, 30 + 1), a third of the way: 27.67.
    assert matched["frozen"] == ["400", "51.00", "51.00", "51.00*"]
    assert matched["full"] == ["1,200", "61.00", "27.67", "61.00"]
    assert "at frozen's run (400 GFLOPs)" in page and "at full's run (1,200 GFLOPs)" in page
    assert "Each run scored the first 200 val expressions every " in page
    assert Path("fixture/anytime.png") in files and "![anytime.png](anytime.png)" in page
    cost = rows_of(page, "Cost")
    assert cost["full"][-1] == "**over in 1 of 3 runs**" and cost["frozen"][-1] == "within"
    assert "Memory cap 1 GB, not enforceable on CPU" in page and "over it: full" in page


def test_records_without_curves_say_so(tmp_path):
    root = tmp_path / "results"
    write(root, make_record("frozen", seed=0, lr=1e-3, miou=30.0), "a")
    page = build(root)[Path("fixture/leaderboard.md")]
    assert "No anytime curves: these records predate evaluation during training" in page
    assert "memory cap" not in page
