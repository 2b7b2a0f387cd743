"""The project's layers, read from its source: methods/ (the model side) never imports benchmarks/ (the run
side), riscore/ imports neither, and no two modules import each other, directly or around a loop."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("methods", "benchmarks", "riscore")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Project modules `path` imports anywhere in its body (imports inside functions count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: the project imports by absolute names"
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_the_model_side_never_imports_the_run_side():
    for name, imported in graph().items():
        if name.startswith("methods"):
            assert not {m for m in imported if m.startswith("benchmarks")}, name
        if name.startswith("riscore"):
            assert not {m for m in imported if not m.startswith("riscore")}, name


def test_no_import_cycles():
    """Package __init__ modules are left out as targets: importing a submodule runs its package, which is
    not a dependency of the submodule's own code."""
    edges = {name: {m for m in imported if not (ROOT / m.replace(".", "/") / "__init__.py").exists()}
             for name, imported in graph().items()}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [])
