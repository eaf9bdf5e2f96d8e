"""Which regions of a file to fill: placeholder bodies and fill markers (``--holes``), or the
``@fill`` captures of a tree-sitter query (``--query``).

A region is either a *cursor* hole (the placeholder or marker is removed and new code is
generated in its place) or a *regenerated* span (a query capture, or the code between a
``diffill: fill`` and a ``diffill: end`` marker, rewritten from its surroundings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tree_sitter as ts

from diffill.errors import DiffillError
from diffill.newlines import newline_of
from diffill.refactor.syntax import parse, ts_language

_MARKER = re.compile(r"^\s*(?:#|//|/\*|--)\s*(?:TODO|diffill)\s*:\s*fill\b", re.IGNORECASE)
_END_MARKER = re.compile(r"^\s*(?:#|//|/\*|--)\s*(?:TODO|diffill)\s*:\s*end\b", re.IGNORECASE)

_NOT_IMPLEMENTED = r"""\(\s*(['"`])[^'"`]*not\s+implemented[^'"`]*\1\s*\)"""
PLACEHOLDERS: dict[str, re.Pattern[str]] = {
    "python": re.compile(r"^(?:\.\.\.|pass|raise\s+NotImplementedError(?:\s*\(.*\))?)$", re.DOTALL),
    "javascript": re.compile(rf"^throw\s+new\s+\w*Error\s*{_NOT_IMPLEMENTED}\s*;?$", re.IGNORECASE | re.DOTALL),
    "go": re.compile(r'^panic\(\s*"[^"]*not\s+implemented[^"]*"\s*\)$', re.IGNORECASE),
    "rust": re.compile(r"^(?:todo|unimplemented)!\s*\(.*\)\s*;?$", re.DOTALL),
    "java": re.compile(rf"^throw\s+new\s+(?:UnsupportedOperationException\s*\(.*\)|\w*(?:Exception|Error)\s*"
                       rf"{_NOT_IMPLEMENTED})\s*;$", re.IGNORECASE | re.DOTALL),
}
PLACEHOLDERS["typescript"] = PLACEHOLDERS["tsx"] = PLACEHOLDERS["javascript"]

_FUNCTIONS = {
    "function_definition", "function_declaration", "function_expression", "function", "arrow_function",
    "method_definition", "generator_function_declaration", "generator_function", "method_declaration",
    "func_literal", "function_item", "constructor_declaration",
}
# decorators and base classes that make an empty body intentional in Python
_INTENTIONAL = re.compile(r"@(?:\w+\.)*(?:abstractmethod|abstractproperty|overload)\b")
_BODY_INDENT = {"go": "\t"}
_CLOSERS = ("}", ")", "]")


@dataclass(frozen=True)
class Region:
    start: int  # character offsets, in the file, of the text the fill replaces
    end: int
    kind: str  # "placeholder", "marker" or "query"
    line: int  # 1-based line of ``start``
    lead: str = ""  # put before the fill (a newline and indentation when the hole shares a header's line)
    trail: str = ""  # put after the fill (a newline before a closing bracket on the same line)
    regenerate: bool = False  # True: the old text is rewritten; False: a cursor hole in its place

    def hole(self, text: str) -> tuple[str, int, int]:
        """The document the model sees and the hole in it."""
        if self.regenerate:
            return text, self.start, self.end
        doc = text[: self.start] + self.lead + self.trail + text[self.end :]
        at = self.start + len(self.lead)
        return doc, at, at

    def apply(self, text: str, fill: str) -> str:
        return text[: self.start] + self.lead + fill + self.trail + text[self.end :]

    def fill_span(self, fill: str) -> tuple[int, int]:
        """Character offsets of the fill in ``apply``'s result."""
        a = self.start + len(self.lead)
        return a, a + len(fill)


class _Text:
    """Character offsets for tree-sitter's byte offsets."""

    def __init__(self, text: str):
        self.text = text
        self.ascii = text.isascii()
        self.data = text.encode("utf-8")

    def char(self, byte: int) -> int:
        return byte if self.ascii else len(self.data[:byte].decode("utf-8", "replace"))

    def span(self, node: ts.Node) -> tuple[int, int]:
        return self.char(node.start_byte), self.char(node.end_byte)

    def line(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1


def find_holes(text: str, lang: str, placeholders: bool = True) -> list[Region]:
    """Placeholder bodies (unless ``placeholders`` is False, as in stub files) and fill markers,
    in file order, without overlaps."""
    t = _Text(text)
    tree = parse(text, lang)
    regions: list[Region] = []
    pattern = PLACEHOLDERS.get(lang) if placeholders else None
    comments: list[ts.Node] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.children))
        if "comment" in node.type:
            comments.append(node)
        elif pattern is not None and node.type in _FUNCTIONS:
            stmt = _placeholder_statement(node, lang, pattern)
            if stmt is not None:
                regions.append(_cursor_region(t, *t.span(stmt), "placeholder", lang))
    regions.extend(_marker_regions(t, comments, lang))
    return _without_overlaps(regions)


def _statements(body: ts.Node) -> list[ts.Node]:
    nodes = [c for c in body.named_children if "comment" not in c.type]
    if len(nodes) == 1 and nodes[0].type == "statement_list":  # Go wraps a block's statements
        return _statements(nodes[0])
    return nodes


def _placeholder_statement(func: ts.Node, lang: str, pattern: re.Pattern[str]) -> ts.Node | None:
    body = func.child_by_field_name("body")
    if body is None or body.has_error or body.type in ("expression", "call_expression"):
        return None
    stmts = _statements(body) if body.named_child_count else []
    if lang == "python":
        if _intentionally_empty(func):
            return None
        if len(stmts) == 2 and _is_docstring(stmts[0]):
            stmts = stmts[1:]
    if len(stmts) != 1:
        return None
    stmt = stmts[0]
    text = stmt.text.decode("utf-8", "replace").strip()
    return stmt if pattern.match(text) else None


def _is_docstring(node: ts.Node) -> bool:
    return node.type == "expression_statement" and node.named_child_count == 1 \
        and node.named_children[0].type == "string"


def _intentionally_empty(func: ts.Node) -> bool:
    """Abstract methods, overloads and Protocol members have placeholder bodies on purpose."""
    parent = func.parent
    if parent is not None and parent.type == "decorated_definition":
        decorators = "".join(c.text.decode("utf-8", "replace") for c in parent.children if c.type == "decorator")
        if _INTENTIONAL.search(decorators):
            return True
        parent = parent.parent
    while parent is not None and parent.type != "class_definition":
        parent = parent.parent
    if parent is not None:
        bases = parent.child_by_field_name("superclasses")
        if bases is not None and b"Protocol" in bases.text:
            return True
    return False


def _line_bounds(text: str, offset: int) -> tuple[int, int]:
    a = text.rfind("\n", 0, offset) + 1
    b = text.find("\n", offset)
    return a, len(text) if b < 0 else b


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _unit(text: str, lang: str) -> str:
    if lang in _BODY_INDENT:
        return _BODY_INDENT[lang]
    m = re.search(r"^([ \t]+)\S", text, re.MULTILINE)
    return m.group(1) if m and len(m.group(1)) <= 8 else "    "


def _cursor_region(t: _Text, a: int, b: int, kind: str, lang: str) -> Region:
    """A cursor hole where ``text[a:b]`` (a placeholder or a marker) was: when code comes before it
    on its line (``def f(): ...``, ``{ // TODO: fill }``) the fill goes on a new, indented line."""
    text = t.text
    if b > a and text[b - 1] == "\r":  # a comment token may end with a CRLF's carriage return
        b -= 1
    line_start, line_end = _line_bounds(text, a)
    before, after = text[line_start:a], text[b : _line_bounds(text, b)[1]]
    indent = _indent_of(text[line_start:line_end].rstrip("\r"))
    newline = newline_of(text)
    lead = trail = ""
    start, end = a, b
    if before.strip():
        start = line_start + len(before.rstrip())
        lead = newline + indent + _unit(text, lang)
    if after.strip().startswith(_CLOSERS):
        end = b + len(after) - len(after.lstrip())
        trail = newline + (indent if before.strip() else indent[: -len(_unit(text, lang))] if indent else "")
    elif not after.strip():
        end = b + len(after.rstrip("\r"))  # drop trailing spaces with the marker
    return Region(start, end, kind, t.line(start), lead, trail)


def _marker_regions(t: _Text, comments: list[ts.Node], lang: str) -> list[Region]:
    text = t.text
    regions: list[Region] = []
    open_marker: tuple[int, int] | None = None
    for node in comments:
        a, b = t.span(node)
        if b > a and text[b - 1] == "\r":
            b -= 1
        body = text[a:b]
        if _END_MARKER.match(body) and open_marker is not None:
            start = open_marker[0]
            regions.append(Region(start, b, "marker", t.line(start), regenerate=True))
            open_marker = None
            continue
        if not _MARKER.match(body):
            continue
        if open_marker is not None:  # the previous marker had no end: a cursor hole on its own
            regions.append(_cursor_region(t, *open_marker, "marker", lang))
        line_start, _ = _line_bounds(text, a)
        own_line = not text[line_start:a].strip()
        open_marker = (a, b) if own_line else None
        if not own_line:
            regions.append(_cursor_region(t, a, b, "marker", lang))
    if open_marker is not None:
        regions.append(_cursor_region(t, *open_marker, "marker", lang))
    return regions


def still_a_hole(fill: str, lang: str) -> bool:
    """A fill that is itself a placeholder or a fill marker (a second run would select it again)."""
    pattern = PLACEHOLDERS.get(lang)
    stripped = fill.strip()
    return bool(pattern is not None and pattern.match(stripped)) or any(
        _MARKER.match(line) for line in stripped.splitlines())


def compile_query(source: str, lang: str) -> ts.Query:
    """The query for ``lang``; DiffillError when it does not compile or captures no ``@fill``."""
    try:
        query = ts.Query(ts_language(lang), source)
    except (ts.QueryError, ValueError) as e:
        raise DiffillError(f"the query does not compile for {lang}: {e}") from e
    names = [query.capture_name(i) for i in range(query.capture_count)]
    if "fill" not in names:
        raise DiffillError("the query has no capture named @fill")
    return query


def find_query(text: str, lang: str, query: ts.Query) -> list[Region]:
    """Every ``@fill`` capture, regenerated in place; nested captures give way to the outermost."""
    t = _Text(text)
    captures = ts.QueryCursor(query).captures(parse(text, lang).root_node).get("fill", [])
    regions = []
    for node in captures:
        a, b = t.span(node)
        if b > a:
            regions.append(Region(a, b, "query", t.line(a), regenerate=True))
    return _without_overlaps(regions)


def _without_overlaps(regions: list[Region]) -> list[Region]:
    """Sorted by position; a region overlapping an earlier-starting (or longer) one is dropped."""
    out: list[Region] = []
    for r in sorted(regions, key=lambda r: (r.start, -r.end)):
        if out and r.start < out[-1].end:
            continue
        out.append(r)
    return out


def merge(*groups: list[Region]) -> list[Region]:
    return _without_overlaps([r for g in groups for r in g])
