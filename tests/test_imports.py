"""No import cycles among the project's modules: every module's imports, read from its syntax tree
(function-level and type-checking imports too), form a graph without cycles.

An import of ``diffill.a.b`` is an edge to that module alone: a package's ``__init__`` counts for
what it imports itself, not as a step of every import under it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# repository folder -> the package it is installed as (pyproject's package-dir)
PACKAGES = {"diffill": "diffill", "model": "diffill.model", "adapters": "diffill.adapters",
            "grammar": "diffill.grammar", "lsp_server": "diffill.lsp_server"}


def modules() -> dict[str, Path]:
    """Module name -> its file, for every module of the project's packages."""
    found = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if package == "diffill" and parts and parts[0] in PACKAGES:
                continue  # not a folder of the diffill package
            found[".".join((package, *parts))] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules that module ``name`` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from a import b``: the module a.b where there is one, else a
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def project_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_the_project_s_modules_import_each_other_without_cycles():
    assert cycles(project_graph()) == []


def test_a_cycle_is_found_however_the_modules_import_each_other(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "one.py").write_text("def f():\n    from . import two\n")
    (pkg / "two.py").write_text("from pkg.one import f\n")
    known = {"pkg", "pkg.one", "pkg.two"}
    assert imports("pkg.one", pkg / "one.py", known) == {"pkg.two"}
    assert imports("pkg.two", pkg / "two.py", known) == {"pkg.one"}


def test_every_package_is_read():
    names = set(modules())
    assert {"diffill.engine", "diffill.model.sampler", "diffill.adapters.lora", "diffill.grammar.constraint",
            "diffill.lsp_server.server", "diffill.bench.speed", "diffill.commands.serve"} <= names
    assert not any(n.startswith(("diffill.model.model", "diffill.tests")) for n in names)
