"""The README's worked examples (a new method, a new dataset) run as written: one file each, trained in a suite."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.data import registry as dataset_registry
from methods import registry as method_registry

README = Path(__file__).resolve().parent.parent / "README.md"


def example(marker: str) -> str:
    """The fenced code block right after `<!-- example: MARKER -->` in the README."""
    found = re.search(rf"<!-- example: {re.escape(marker)} -->\n```\w*\n(.*?)\n```", README.read_text(), re.S)
    assert found, f"README has no example block '{marker}'"
    return found.group(1) + "\n"


def import_as_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, code: str) -> None:
    """The snippet as its own module file, imported (what the README's import line does)."""
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    importlib.import_module(name)
    monkeypatch.delitem(sys.modules, name)


def bench(tmp_path: Path, *args: str) -> dict:
    assert main(["bench", *args, "--out", str(tmp_path / "results"), "--checkpoint-dir", str(tmp_path / "ckpt"),
                 "--models-dir", str(tmp_path / "models"), "--threads", "1", "--no-progress"]) == 0
    record, = (json.loads(p.read_text()) for p in (tmp_path / "results").rglob("*.json"))
    assert record["run_info"]["status"] == "ok"
    return record


def test_new_method_example(tmp_path, monkeypatch):
    monkeypatch.setattr(method_registry, "_REGISTRY", dict(method_registry._REGISTRY))  # registered for this test
    import_as_file(tmp_path, monkeypatch, "readme_bitfit", example("method"))
    record = bench(tmp_path, "--method", "bitfit", "--suite", "smoke", "--set", "towers=image")
    assert record["run_info"]["method_config"] == {"towers": "image"}
    from benchmarks.build import build_base_model
    from benchmarks.suites import load_suite

    base = build_base_model(load_suite("smoke"))
    biases = sum(p.numel() for n, p in base.backbone.clip.named_parameters()
                 if n.endswith("bias") and n.startswith("visual."))
    decoder = sum(p.numel() for p in base.decoder.parameters())
    assert biases > 0 and record["cost"]["params"]["trainable"] == decoder + biases


def test_new_dataset_example(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dataset_registry, "_REGISTRY", dict(dataset_registry._REGISTRY))
    import_as_file(tmp_path, monkeypatch, "readme_halves", example("dataset"))
    suite = tmp_path / "halves.toml"
    suite.write_text(example("dataset suite"))
    assert main(["data", "stats", "--suite", str(suite)]) == 0
    assert "halves val (suite halves): 40 expressions" in capsys.readouterr().out
    record = bench(tmp_path, "--method", "frozen", "--suite", str(suite))
    assert record["run_info"]["suite"] == "halves" and record["results"]["val"]["n"] == 40
    assert set(record["results"]["val"]["per_kind"]) == {"left", "right", "top", "bottom"}
