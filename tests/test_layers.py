"""Imports point downwards: the language server talks to the engine only (nothing from the model),
and the engine's side (benchmarks, evaluation, refactoring) takes nothing from the CLI's commands.
Every import counts, those inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported(path: Path) -> set[str]:
    """The modules a file imports (``from a.b import c``: ``a.b`` and ``a.b.c``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending(files: list[Path], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in files:
        bad = sorted(n for n in imported(path) if any(n == f or n.startswith(f + ".") for f in forbidden))
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_imports_inside_functions_count(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import os\n\n\ndef f():\n    from diffill.model.lead import typed_word\n")
    assert imported(source) == {"os", "diffill.model.lead", "diffill.model.lead.typed_word"}


def test_the_language_server_imports_nothing_from_the_model():
    files = sorted((ROOT / "lsp_server").rglob("*.py"))
    assert files
    assert offending(files, ("diffill.model", "model")) == {}


def test_the_engine_side_takes_nothing_from_the_cli():
    files = [p for p in sorted((ROOT / "diffill").rglob("*.py"))
             if "commands" not in p.relative_to(ROOT / "diffill").parts and p.name != "cli.py"]
    assert any(p.parent.name == "bench" for p in files)
    assert offending(files, ("diffill.commands", "diffill.cli")) == {}
