"""Each shapes-analog table says whether it points the paper's way, from synthetic run tables: agreement,
disagreement, overlap and rows not run each give their own sentence."""

import pandas as pd
import pytest

from benchmarks.paper_tables import TABLES
from benchmarks.report.paper_direction import claim, sentence
from benchmarks.report.statistics import split_stats

TABLE6 = TABLES[6]  # the paper: without hierarchical alignment 58.70, below every other row
FOCAL = "w/o hierarchical alignment"


def runs(scores: list[float]) -> pd.DataFrame:
    """One row's ok runs, one per seed, with these val mIoUs."""
    return pd.DataFrame({"seed": range(len(scores)), "status": "ok", "val/mIoU": scores,
                         "started_at": "2026-01-01", "path": [f"r{i}" for i in range(len(scores))]})


def stated(rows: dict[str, list[float]]) -> str:
    return sentence(TABLE6, split_stats({label: runs(s) for label, s in rows.items()}, "val"), "shapes")


OTHERS = {"w/o Bridger": [60.0, 61.0, 62.5], "w/o global alignment": [59.0, 61.5, 62.0],
          "full model": [62.0, 63.0, 64.5]}


def test_the_claim_is_read_off_the_papers_numbers():
    assert claim(TABLE6) == '"w/o hierarchical alignment" (58.7) scores below every other row'
    assert claim(TABLES[7]).startswith('"64" (71.06 at 1.94 M) scores above every other row')
    table2 = claim(TABLES[2])
    assert '"Adapter" (69.46 at 2.39 M)' in table2.split(" and below ")[0]
    assert table2.endswith('below "Adapter + ETRIS" (71.67 at 4.33 M), "Conv Adapter + ETRIS" (72.11 at 3.14 M)')


def test_a_focal_row_resolved_the_papers_way_against_every_row_agrees():
    text = stated({FOCAL: [40.0, 41.5, 41.0], **OTHERS})
    assert "On `shapes` (val mIoU, paired 95% intervals): **agrees** (" in text
    assert "not resolved" not in text and "not run" not in text
    assert 'the paper\'s way: vs "w/o Bridger" -20.33 [' in text


def test_one_pair_resolved_against_the_paper_disagrees():
    text = stated({FOCAL: [70.0, 71.5, 71.0], **OTHERS})
    assert "**disagrees** (" in text and 'against the paper: vs "w/o Bridger" +9.67 [' in text


def test_overlapping_intervals_are_not_resolved_and_say_which_pairs():
    text = stated({FOCAL: [61.0, 62.5, 61.5], "w/o Bridger": [60.0, 63.0, 61.0], "full model": [70.0, 71.0, 72.0]})
    assert "**not resolved (intervals overlap)**" in text
    assert 'not resolved: vs "w/o Bridger"' in text and 'the paper\'s way: vs "full model"' in text
    assert 'not run: "w/o global alignment" (`python -m benchmarks sweep --table 6 --suite shapes`)' in text


@pytest.mark.parametrize("rows", [{"full model": [62.0, 63.0]}, {FOCAL: [50.0, 51.0]}, {}])
def test_without_the_focal_row_and_another_it_says_not_run_with_the_command(rows):
    assert stated(rows).endswith("**not run**: run `python -m benchmarks sweep --table 6 --suite shapes`.")


def test_agreement_on_the_rows_run_says_so():
    text = stated({FOCAL: [40.0, 41.5, 41.0], "full model": OTHERS["full model"]})
    assert "**agrees** for the rows compared (" in text and 'not run: "w/o Bridger", "w/o global alignment"' in text


def test_focal_row_is_the_row_the_table_names_and_a_table_without_one_says_so():
    focal_tables = [t for t in TABLES.values() if t.focal is not None]
    assert focal_tables
    for table in focal_tables:
        assert table.focal_row.label == table.focal
        assert sum(r is table.focal_row for r in table.rows) == 1
    plain = next(t for t in TABLES.values() if t.focal is None)
    with pytest.raises(ValueError, match=f"table {plain.number} argues no direction"):
        _ = plain.focal_row


def stated_pending(rows: dict[str, list[float]], pending: set[str]) -> str:
    return sentence(TABLE6, split_stats({label: runs(s) for label, s in rows.items()}, "val", frozenset(pending)),
                    "shapes")


def test_a_row_with_seeds_to_run_is_not_compared_and_the_rest_still_decide():
    """Resolved either way on its first seeds, a row whose sweep is under way says nothing yet."""
    text = stated_pending({FOCAL: [40.0, 41.5, 41.0], **OTHERS, "w/o Bridger": [90.0]}, {"w/o Bridger"})
    assert "**agrees** for the rows compared (" in text and "against the paper" not in text
    assert text.endswith('seeds still to run: "w/o Bridger" (`python -m benchmarks sweep --table 6 --suite shapes`)).')


@pytest.mark.parametrize("pending", [{FOCAL}, {"w/o Bridger", "w/o global alignment", "full model"}])
def test_nothing_compared_yet_says_which_rows_wait_for_seeds_not_agreement(pending):
    text = stated_pending({FOCAL: [40.0], **{label: [60.0] for label in OTHERS}}, pending)
    assert "agrees" not in text and "not resolved" not in text
    named = [FOCAL] if FOCAL in pending else sorted(pending, key=list(OTHERS).index)
    assert text.endswith("**seeds still to run** (" + ", ".join(f'"{n}"' for n in named)
                         + "): finish `python -m benchmarks sweep --table 6 --suite shapes`.")
