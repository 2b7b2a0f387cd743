"""`counts` and the paper page's parameter columns: each row's count is what the model builder gives for its
method and options, differences from the paper are marked with the project's reason, and a missing counts
document says how to make it."""

import dataclasses
import functools
import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.build import build_base_model, build_model
from benchmarks.cli import main
from benchmarks.paper_counts import ALSO_ON, COMMAND, count_tables, counted_tables, load_counts
from benchmarks.paper_tables import TABLES
from benchmarks.report import paper
from benchmarks.report.paper_params import millions
from benchmarks.store import ResultStore
from benchmarks.suites import load_suite
from methods import get_method
from riscore.errors import UserError

REPO = Path(__file__).resolve().parent.parent
SMALL = load_suite("smoke").replace({"pretrained": None})


# one row per kind of count: weights unfrozen, nothing, options set, a combination (the whole table takes ~30 s)
CHECKED = ("Full tuning", "Frozen backbone", "CoOp", "Conv Adapter + ETRIS")


@functools.cache
def base_size() -> int:
    return sum(p.numel() for p in build_base_model(SMALL).parameters())


def independent_count(method: str, options: dict[str, str]) -> int:
    """Parameters the method adds (new tensors' sizes), or, when it adds none, backbone weights it unfreezes."""
    model = build_model(SMALL, method, get_method(method).make_config(options))
    added = sum(p.numel() for p in model.parameters()) - base_size()
    if added:
        return added
    return sum(p.numel() for name, p in model.named_parameters()
               if p.requires_grad and not name.startswith("decoder."))


@pytest.fixture(scope="module")
def table2_counts():
    checked = dataclasses.replace(TABLES[2], rows=tuple(r for r in TABLES[2].rows if r.label in CHECKED), focal=None)
    return {"tables": count_tables([checked], SMALL)}


def table_rows(page: str, number: int) -> dict[str, list[str]]:
    section = page.split(f"## Table {number}:", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in rows[0]]
    return {cells[0].strip(): dict(zip(header, (c.strip() for c in cells), strict=True)) for cells in rows[1:]}


def test_the_pages_count_is_the_model_builders_count_for_each_rows_method_and_options(table2_counts):
    page = paper.page(pd.DataFrame(), [], table2_counts)
    shown = table_rows(page, 2)
    for row in (r for r in TABLES[2].rows if r.label in CHECKED):
        expected = independent_count(row.method, row.options)
        assert table2_counts["tables"]["2"][row.label]["paper_measure"] == expected, row.label
        assert shown[row.label]["risbench `paper-rn101` params (M)"].split(" ")[0] == millions(expected), row.label
    counted = table2_counts["tables"]["2"]
    assert counted["Frozen backbone"]["paper_measure"] == 0 < counted["CoOp"]["paper_measure"]
    assert shown["Adapter"]["risbench `paper-rn101` params (M)"] == "not counted"


def test_counts_that_differ_from_the_papers_are_marked_with_the_projects_reason():
    counts = {"tables": {"2": {"Adapter": {"paper_measure": 1_586_688}, "ETRIS": {"paper_measure": 1_942_080},
                               "LoRA": {"paper_measure": 262_144}, "CoOp": {"paper_measure": 4096},
                               "Frozen backbone": {"paper_measure": 200_000}}},
              "also_on": {"paper-vitb16": {"2": {"Adapter": {"paper_measure": 3_965_952}}}}}
    page = paper.page(pd.DataFrame(), [], counts)
    shown = {label: cells["risbench `paper-rn101` params (M)"] for label, cells in table_rows(page, 2).items()}
    assert shown["Adapter"] == "1.59 (≠ paper)" and shown["LoRA"] == "0.26 (≠ paper)"
    assert shown["ETRIS"] == "1.94" and shown["CoOp"] == "0.0041" and shown["Compacter"] == "not counted"
    vit = {label: cells["risbench `paper-vitb16` params (M)"] for label, cells in table_rows(page, 2).items()}
    assert vit["Adapter"] == "3.97" and vit["ETRIS"] == "not counted"  # never compared: the paper has none
    notes = page.split("## Table 2:", 1)[1].split("\n## ", 1)[0]
    assert "Adapter: 1.59 M vs 2.39 M, RN101's image tower has no transformer blocks" in notes
    assert "LoRA: 0.26 M vs 0.03 M, ETRIS does not publish its LoRA setup; 0.033 M is rank 1" in notes
    assert shown["Frozen backbone"] == "0.20 (≠ paper)"  # a made-up gap no row explains
    assert "Frozen backbone: 0.20 M vs 0 M, no reason known to the project." in notes
    assert "ETRIS: 1.94 M" not in notes


def test_without_a_counts_document_the_page_says_which_command_makes_it(tmp_path):
    assert load_counts(tmp_path) is None
    page = paper.page(pd.DataFrame(), [], load_counts(tmp_path))
    for number in (2, 3, 4, 5, 7):
        section = page.split(f"## Table {number}:", 1)[1].split("\n## ", 1)[0]
        assert f"not counted: run `{COMMAND}`" in section
        assert all(cells.get("risbench `paper-rn101` params (M)", cells.get("risbench backbone (M)")) == "not counted"
                   for cells in table_rows(page, number).values())


def test_a_corrupt_counts_document_is_one_error_naming_it(tmp_path):
    (tmp_path / "counts").mkdir()
    (tmp_path / "counts" / "paper-tables.json").write_text('{"tables": [1')
    with pytest.raises(UserError, match=r"paper-tables.json: not a counts document .* regenerate it with"):
        load_counts(tmp_path)


def test_the_committed_counts_document_covers_every_counted_row_and_says_how_it_was_made():
    document = json.loads((REPO / "results" / "counts" / "paper-tables.json").read_text())
    assert document["command"] == COMMAND and document["weights"] == "random"
    assert {"torch", "open_clip_torch", "peft"} <= set(document["environment"]["packages"])
    for table in counted_tables():
        assert set(document["tables"][str(table.number)]) == {row.label for row in table.rows}
        for row in table.rows:
            assert document["tables"][str(table.number)][row.label]["method"] == row.method
    for suite, numbers in ALSO_ON.items():
        assert {n: set(document["also_on"][suite][str(n)]) for n in numbers} == {
            n: {row.label for row in TABLES[n].rows} for n in numbers}


def test_counts_refuses_an_output_that_is_not_json(capsys, tmp_path):
    assert main(["counts", "--out", str(tmp_path / "counts.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and ".json" in err and "\n" not in err
    assert not (tmp_path / "counts.txt").exists()


def test_the_counts_document_is_not_taken_for_a_run_record(tmp_path):
    (tmp_path / "counts").mkdir()
    (tmp_path / "counts" / "paper-tables.json").write_text(json.dumps({"command": COMMAND, "tables": {}}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a skipped foreign file warns
        assert list(ResultStore(tmp_path).records()) == []
