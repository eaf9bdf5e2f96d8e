"""Syntax-aware span selection: blocks, statements, expressions, argument lists and lines.

Used by the training objective (infill middles), the benchmarks and ``refactor --query``.
Every grammar of the registry has a table that names which tree-sitter node types are spans of
which kind. Offsets are character offsets into the text given.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import tree_sitter as ts

from diffill.grammar.registry import GRAMMAR_NAMES, grammar

SPAN_KINDS = ("block", "statement", "expression", "arguments", "line")
NODE_KINDS = SPAN_KINDS[:4]

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


def _table(block, statement, expression, arguments) -> dict[str, str]:
    out = {}
    for kind, types in (("block", block), ("statement", statement), ("expression", expression),
                        ("arguments", arguments)):
        out.update(dict.fromkeys(types.split(), kind))
    return out


_JS_STATEMENTS = ("expression_statement return_statement if_statement for_statement for_in_statement "
                  "while_statement lexical_declaration variable_declaration throw_statement")
_JS_EXPRESSIONS = ("call_expression binary_expression member_expression subscript_expression "
                   "arrow_function ternary_expression new_expression array object await_expression")
_JS = _table("statement_block class_body", _JS_STATEMENTS, _JS_EXPRESSIONS, "arguments formal_parameters")
_C_STATEMENTS = ("expression_statement return_statement if_statement for_statement while_statement "
                 "do_statement declaration")
_C_EXPRESSIONS = ("call_expression binary_expression field_expression subscript_expression "
                  "conditional_expression unary_expression")

NODE_TABLES: dict[str, dict[str, str]] = {
    "python": _PY_KINDS,
    "javascript": _JS,
    "typescript": _JS,
    "tsx": _JS,
    "go": _table("block", "expression_statement return_statement if_statement for_statement "
                 "short_var_declaration assignment_statement var_declaration go_statement defer_statement",
                 "call_expression binary_expression selector_expression index_expression composite_literal "
                 "unary_expression", "argument_list parameter_list"),
    "rust": _table("block declaration_list", "expression_statement let_declaration",
                   "call_expression binary_expression field_expression index_expression macro_invocation "
                   "closure_expression if_expression match_expression reference_expression",
                   "arguments parameters"),
    "java": _table("block class_body", "expression_statement local_variable_declaration return_statement "
                   "if_statement for_statement enhanced_for_statement while_statement throw_statement",
                   "method_invocation binary_expression field_access object_creation_expression "
                   "array_access lambda_expression ternary_expression",
                   "argument_list formal_parameters"),
    "c": _table("compound_statement field_declaration_list", _C_STATEMENTS, _C_EXPRESSIONS,
                "argument_list parameter_list"),
    "cpp": _table("compound_statement field_declaration_list", _C_STATEMENTS,
                  _C_EXPRESSIONS + " lambda_expression new_expression", "argument_list parameter_list"),
}
assert set(NODE_TABLES) == set(GRAMMAR_NAMES)

_OPEN, _CLOSE = "([{<", ")]}>"


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str


@lru_cache(maxsize=None)
def _parser(language: str) -> ts.Parser:
    return grammar(language).parser()


def _node_spans(text: str, language: str, min_chars: int, max_chars: int,
                kinds: frozenset[str]) -> list[Span]:
    data = text.encode("utf-8")
    tree = _parser(language).parse(data)
    table = NODE_TABLES[language]
    ascii_only = len(data) == len(text)
    spans: list[Span] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        kind = table.get(node.type)
        if kind is None or kind not in kinds or node.has_error:
            continue
        size = node.end_byte - node.start_byte
        if not min_chars <= size <= max_chars:
            continue
        if ascii_only:
            start, end = node.start_byte, node.end_byte
        else:
            start = len(data[: node.start_byte].decode("utf-8", "replace"))
            end = start + len(data[node.start_byte : node.end_byte].decode("utf-8", "replace"))
        # argument lists (and braced blocks outside Python) are filled inside their brackets
        if kind == "arguments" or (kind == "block" and language != "python"):
            if language != "python" and not (text[start] in _OPEN and text[end - 1] in _CLOSE):
                continue
            start, end = start + 1, end - 1
            if end <= start:
                continue
        spans.append(Span(start, end, kind))
    return spans


def line_spans(text: str, min_chars: int = 2, max_chars: int = 400) -> list[Span]:
    """Every non-blank line after its indentation, without trailing whitespace."""
    spans, pos = [], 0
    for line in text.split("\n"):
        body = line.strip()
        if body and min_chars <= len(body) <= max_chars:
            start = pos + len(line) - len(line.lstrip())
            spans.append(Span(start, start + len(body), "line"))
        pos += len(line) + 1
    return spans


def select_spans(text: str, language: str, kinds: tuple[str, ...] = SPAN_KINDS, min_chars: int = 2,
                 max_chars: int = 400) -> list[Span]:
    """Spans worth filling in ``text`` of a registry language (``python``, ``rust``, ...):
    error-free syntax nodes of the node kinds asked for, then lines when ``line`` is asked for."""
    if language not in NODE_TABLES:
        raise KeyError(f"no span table for language {language!r}; known: {', '.join(NODE_TABLES)}")
    unknown = set(kinds) - set(SPAN_KINDS)
    if unknown:
        raise ValueError(f"unknown span kinds {sorted(unknown)}; known: {', '.join(SPAN_KINDS)}")
    spans = _node_spans(text, language, min_chars, max_chars, frozenset(kinds))
    if "line" in kinds:
        spans += line_spans(text, min_chars, max_chars)
    return spans


def python_spans(text: str, min_chars: int = 2, max_chars: int = 400) -> list[Span]:
    """Error-free syntax nodes of Python ``text`` worth filling, as character spans."""
    return _node_spans(text, "python", min_chars, max_chars, frozenset(NODE_KINDS))
