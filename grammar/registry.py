"""Language registry: LSP languageId or file extension -> tree-sitter grammar.

Grammars come from the per-language wheels (``tree-sitter-python`` and the rest), which ship
compiled parsers and work offline. An unknown language has no grammar: callers complete it
unconstrained (``resolve`` logs a one-line notice, once per language).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath

import tree_sitter as ts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrammarSpec:
    name: str  # our name, also the main LSP languageId
    module: str  # the wheel's Python module
    function: str  # the function in it that returns the language pointer
    language_ids: tuple[str, ...]
    extensions: tuple[str, ...]


SPECS: tuple[GrammarSpec, ...] = (
    GrammarSpec("python", "tree_sitter_python", "language", ("python",), (".py", ".pyi", ".pyw")),
    GrammarSpec("javascript", "tree_sitter_javascript", "language", ("javascript", "javascriptreact"),
                (".js", ".mjs", ".cjs", ".jsx")),
    GrammarSpec("typescript", "tree_sitter_typescript", "language_typescript", ("typescript",),
                (".ts", ".mts", ".cts")),
    GrammarSpec("tsx", "tree_sitter_typescript", "language_tsx", ("typescriptreact", "tsx"), (".tsx",)),
    GrammarSpec("go", "tree_sitter_go", "language", ("go",), (".go",)),
    GrammarSpec("rust", "tree_sitter_rust", "language", ("rust",), (".rs",)),
    GrammarSpec("java", "tree_sitter_java", "language", ("java",), (".java",)),
    GrammarSpec("c", "tree_sitter_c", "language", ("c",), (".c", ".h")),
    GrammarSpec("cpp", "tree_sitter_cpp", "language", ("cpp", "c++"),
                (".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp")),
)

GRAMMAR_NAMES: tuple[str, ...] = tuple(s.name for s in SPECS)
_BY_ID = {lid: s for s in SPECS for lid in (s.name, *s.language_ids)}
_BY_EXT = {ext: s for s in SPECS for ext in s.extensions}


@dataclass(frozen=True)
class Grammar:
    name: str
    language: ts.Language

    def parser(self) -> ts.Parser:
        """A new parser (parsers hold state: one per thread or per checker)."""
        return ts.Parser(self.language)


@lru_cache(maxsize=None)
def _load(name: str) -> Grammar:
    spec = next(s for s in SPECS if s.name == name)
    module = importlib.import_module(spec.module)
    return Grammar(spec.name, ts.Language(getattr(module, spec.function)()))


def by_language_id(language_id: str) -> Grammar | None:
    """The grammar for an LSP languageId (``python``, ``typescriptreact``, ...), or None."""
    spec = _BY_ID.get(language_id.strip().lower())
    return _load(spec.name) if spec else None


def by_extension(path: str) -> Grammar | None:
    """The grammar for a file name or path by its extension (``.rs``, ``x.tsx``), or None."""
    name = PurePath(path).name.lower()
    suffix = PurePath(name).suffix or (name if name.startswith(".") else "")
    spec = _BY_EXT.get(suffix)
    return _load(spec.name) if spec else None


def grammar(name: str) -> Grammar:
    """One of ``GRAMMAR_NAMES`` by name; KeyError for anything else."""
    if name not in GRAMMAR_NAMES:
        raise KeyError(f"no grammar named {name!r}; known: {', '.join(GRAMMAR_NAMES)}")
    return _load(name)


_noticed: set[str] = set()


def resolve(language_id: str | None = None, path: str | None = None) -> Grammar | None:
    """The grammar for a request: its languageId first, else its path's extension.

    None when neither is known; a one-line notice is logged (once per language) saying the
    completion runs unconstrained.
    """
    found = by_language_id(language_id) if language_id else None
    if found is None and path:
        found = by_extension(path)
    if found is None:
        what = language_id or (PurePath(path).suffix if path else "") or "unknown"
        if what not in _noticed:
            _noticed.add(what)
            log.warning("no grammar for language %r: completing without the syntax constraint", what)
    return found
