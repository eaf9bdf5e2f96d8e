"""Syntax-aware span selection: blocks, statements, expressions, argument lists and lines.

Used by the training objective (infill middles), the benchmarks and ``refactor --query``.
Offsets are character offsets into the text given.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import tree_sitter as ts

SPAN_KINDS = ("block", "statement", "expression", "arguments", "line")

# node type -> span kind, for the Python grammar
_PY_KINDS = {
    "block": "block",
    "expression_statement": "statement",
    "return_statement": "statement",
    "assignment": "statement",
    "if_statement": "statement",
    "for_statement": "statement",
    "while_statement": "statement",
    "call": "expression",
    "binary_operator": "expression",
    "boolean_operator": "expression",
    "comparison_operator": "expression",
    "attribute": "expression",
    "subscript": "expression",
    "list_comprehension": "expression",
    "argument_list": "arguments",
    "parameters": "arguments",
}


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str


@lru_cache(maxsize=1)
def _python_parser() -> ts.Parser:
    import tree_sitter_python

    return ts.Parser(ts.Language(tree_sitter_python.language()))


def python_spans(text: str, min_chars: int = 2, max_chars: int = 400) -> list[Span]:
    """Error-free syntax nodes of Python ``text`` worth filling, as character spans."""
    data = text.encode("utf-8")
    tree = _python_parser().parse(data)
    ascii_only = len(data) == len(text)
    spans: list[Span] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        kind = _PY_KINDS.get(node.type)
        if kind is None or node.has_error:
            continue
        size = node.end_byte - node.start_byte
        if not min_chars <= size <= max_chars:
            continue
        if ascii_only:
            start, end = node.start_byte, node.end_byte
        else:
            start = len(data[: node.start_byte].decode("utf-8", "replace"))
            end = start + len(data[node.start_byte : node.end_byte].decode("utf-8", "replace"))
        if kind == "arguments":  # fill inside the brackets
            start, end = start + 1, end - 1
            if end <= start:
                continue
        spans.append(Span(start, end, kind))
    return spans
