"""`counts`: risbench's parameter counts for every row of ETRIS's parameter tables, at paper scale.

ETRIS's Tables 2, 3, 4, 5 and 7 give each row's backbone parameters. The same rows, built as `sweep --table N`
would train them (Tables 2, 4, 5, 7 on `paper-rn101`; Table 3 on each paper suite), are counted here with
random weights (a count does not depend on the weights' values, so no download and no data), and saved as one
document under results/counts/ that the paper page reads.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from benchmarks.build import build_base_model
from benchmarks.paper_tables import PAPER_SUITE, TABLES, PaperTable, Row
from benchmarks.store import COUNTS_DIR
from benchmarks.suites import Suite, load_suite
from methods import get_method
from methods.model import ParameterCounts, RISModel
from riscore.errors import UserError

COUNTS_FILE = "paper-tables.json"
COMMAND = f"python -m benchmarks counts --out results/{COUNTS_DIR}/{COUNTS_FILE}"
# tables whose rows are also counted on another backbone (the paper gives RN101 only; ViT-B/16 is the other
# paper-scale setting these methods are compared on)
ALSO_ON = {"paper-vitb16": (2,)}


def counted_tables() -> list[PaperTable]:
    return [t for t in TABLES.values() if t.params_column is not None]


def paper_measure(counts: ParameterCounts) -> int:
    """The count ETRIS's tables give: the parameters a method adds (Bridger, adapters, prompts, LoRA factors),
    or, for a method that adds none, the backbone weights it trains (full tuning: the whole backbone; frozen:
    0). CLIP positional embeddings that Bridger also trains are not in the paper's figures, so not here."""
    return counts.added if counts.added else counts.trainable - counts.decoder


def _without_weights(suite: Suite) -> Suite:
    return suite.replace({"pretrained": None})


def count_row(row: Row, base: RISModel) -> dict[str, Any]:
    """One row's counts on a copy of `base` (its suite's model before any method)."""
    model = copy.deepcopy(base)
    spec = get_method(row.method)
    spec.apply(model, spec.make_config(row.options))
    counts = model.parameter_counts()
    return {"method": row.method, "options": dict(row.options), "params": counts.to_dict(),
            "paper_measure": paper_measure(counts)}


def count_tables(tables: list[PaperTable], analog_suite: Suite | None = None) -> dict[str, Any]:
    """Per table number, per row label: its counts. Rows on the table's own suite count on `analog_suite`
    (default `paper-rn101`, the paper's setting); each suite's base model is built once."""
    analog = analog_suite or _without_weights(load_suite(PAPER_SUITE))
    bases: dict[str, RISModel] = {}
    out: dict[str, Any] = {}
    for table in tables:
        rows = {}
        for row in table.rows:
            suite = _without_weights(load_suite(row.suite)) if row.suite else row.suite_for(analog)
            key = json.dumps(suite.to_dict(), sort_keys=True, default=str)
            if key not in bases:
                bases[key] = build_base_model(suite)
            rows[row.label] = {**count_row(row, bases[key]), "suite": suite.name}
        out[str(table.number)] = rows
    return out


def counts_document(environment: dict[str, Any]) -> dict[str, Any]:
    """The document `counts` writes: how it was made, every counted table on its own suite, and the tables of
    `ALSO_ON` on those suites."""
    return {"command": COMMAND, "weights": "random", "environment": environment,
            "tables": count_tables(counted_tables()),
            "also_on": {suite: count_tables([TABLES[n] for n in numbers], _without_weights(load_suite(suite)))
                        for suite, numbers in ALSO_ON.items()}}


def load_counts(results: Path) -> dict[str, Any] | None:
    """The committed counts document, or None where there is none (the page then says how to make
    it); an unreadable one is an error naming the file, never a page built on half of it."""
    path = results / COUNTS_DIR / COUNTS_FILE
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
        if not isinstance(document["tables"], dict) or not isinstance(document.get("also_on", {}), dict):
            raise TypeError("'tables' or 'also_on' is not an object")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a counts document ({exc.__class__.__name__}: {exc}); regenerate it with "
                        f"{COMMAND}") from None
    return document
