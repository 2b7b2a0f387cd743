"""`sweep --table N`: exactly the runs that fill each of ETRIS's tables, shardable, with one-line refusals."""

import itertools
import re

import pytest

from benchmarks.cli import main
from benchmarks.paper_tables import TABLES
from benchmarks.suites import load_suite
from methods import get_method
from methods.decoder import check_components

RUN_LINE = re.compile(r"^\s*(to run|finished): (\S+) lr=(\S+) seed=(\d+) -> (\S+)$")


def planned(capsys, tmp_path, *argv):
    assert main(["sweep", *argv, "--dry-run", "--out", str(tmp_path / "results"),
                 "--checkpoint-dir", str(tmp_path / "ckpt")]) == 0
    return [m.groups() for m in map(RUN_LINE.match, capsys.readouterr().err.splitlines()) if m]


@pytest.mark.parametrize("number", [n for n, t in TABLES.items() if t.analog])
def test_a_table_plans_each_rows_learning_rate_search_once(capsys, tmp_path, number):
    smoke = load_suite("smoke")
    runs = planned(capsys, tmp_path, "--table", str(number), "--suite", "smoke")
    rows = TABLES[number].rows
    assert len({path for *_, path in runs}) == len(runs) == len(rows) * len(smoke.lr_grid)  # distinct configs
    assert sorted(method for _, method, *_ in runs) == sorted(r.method for r in rows for _ in smoke.lr_grid)
    assert not (tmp_path / "results").exists()


def test_shards_split_a_table_without_overlap(capsys, tmp_path):
    whole = planned(capsys, tmp_path, "--table", "6", "--suite", "smoke")
    parts = [planned(capsys, tmp_path, "--table", "6", "--suite", "smoke", "--shard", f"{i}/2") for i in (0, 1)]
    assert sorted(parts[0] + parts[1]) == sorted(whole) and not set(parts[0]) & set(parts[1])


ANALOG = [n for n, t in TABLES.items() if t.analog]


@pytest.mark.parametrize("numbers", list(itertools.combinations(ANALOG, 2)) + [tuple(ANALOG)])
def test_tables_run_as_one_sweep_plan_every_row_of_each_once(capsys, tmp_path, numbers):
    """A row two tables share (the default Bridger is ETRIS in five) is one entry: its runs are listed once."""
    alone = {path: run for n in numbers
             for *run, path in planned(capsys, tmp_path, "--table", str(n), "--suite", "smoke")}
    given = [["--table", ",".join(map(str, numbers))], [a for n in numbers for a in ("--table", str(n))]]
    for argv in given:
        together = planned(capsys, tmp_path, *argv, "--suite", "smoke")
        assert len({path for *_, path in together}) == len(together) and {p: r for *r, p in together} == alone


def test_every_row_names_a_method_with_valid_options_and_the_papers_columns():
    for table in TABLES.values():
        for row in table.rows:
            get_method(row.method).make_config(row.options)
            check_components(row.decoder_options)
            assert len(row.paper) == len(table.columns), (table.number, row.label)
            assert table.analog == (row.suite is None)


@pytest.mark.parametrize("argv, message", [
    (["--table", "9"], "--table 9: the ETRIS paper has tables 1, 2, 3, 4, 5, 6, 7, 8"),
    (["--table", "1", "--suite", "smoke"], "table 1 runs on its own suites (paper-rn101, paper-rn50, paper-vitb16)"),
    (["--table", "3"], "table 3 holds parameter counts, not trained runs"),
    (["--table", "2", "--method", "lora"], "--table 2 sets each row's method, options and suite"),
    (["--table", "2,7", "--set", "width=8"], "--table 2,7 sets each row's method, options and suite"),
    (["--table", "2,4", "--table", "2"], "--table lists 2 twice"),
    (["--table", "6,1", "--suite", "smoke"], "table 1 runs on its own suites"),
    (["--table", "2,x"], "--table"),
    (["--table", ""], "--table needs a table number"),
    (["--table", "7,0"], "--table 0: the ETRIS paper has tables"),
    (["--table", "2,3"], "table 3 holds parameter counts"),  # no row of table 2 is listed before the error
    (["--table", "6,1"], "refcoco"),  # table 1's suites need the RefCOCO files
])
def test_bad_table_requests_are_one_line(capsys, tmp_path, argv, message):
    assert main(["sweep", *argv, "--dry-run", "--out", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
