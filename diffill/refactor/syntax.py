"""Tree-sitter access for refactoring: a file's language, its parse, and whether a fill is valid.

A thin seam over ``grammar.registry`` (languages) and ``grammar.validity`` (the validity rule).
"""

from __future__ import annotations

from pathlib import Path

import tree_sitter as ts

from diffill.grammar import registry
from diffill.grammar.validity import HoleChecker, marks_error

LANGUAGES: tuple[str, ...] = registry.GRAMMAR_NAMES


def canonical_language(name: str) -> str | None:
    """Our language name for what the user typed (a languageId such as ``typescriptreact``, or
    a name such as ``tsx``), or None when unknown."""
    found = registry.by_language_id(name)
    return found.name if found else None


def language_for_path(path: str | Path) -> str | None:
    found = registry.by_extension(str(path))
    return found.name if found else None


def ts_language(lang: str) -> ts.Language:
    return registry.grammar(lang).language


def parse(text: str, lang: str) -> ts.Tree:
    return registry.grammar(lang).parser().parse(text.encode("utf-8"))


def fill_is_valid(prefix: str, fill: str, suffix: str, lang: str) -> bool:
    """Whether ``prefix + fill + suffix`` has no new syntax error on or below the fill's lines
    (``grammar.validity``'s rule: errors the document already had elsewhere are ignored)."""
    return HoleChecker(registry.grammar(lang), prefix, suffix).is_valid(fill)


def syntax_errors(text: str, lang: str) -> int:
    """How many ERROR and MISSING nodes (and nodes hiding an error) the whole document has."""
    count = 0
    stack = [parse(text, lang).root_node]
    while stack:
        node = stack.pop()
        if marks_error(node):
            count += 1
        stack.extend(c for c in node.children if c.has_error or c.is_missing)
    return count
