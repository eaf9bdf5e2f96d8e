"""Does an infill introduce a syntax error? The syntax guard's validity check, incremental.

An infill is *invalid* when the document with the infill has a new tree-sitter ERROR or MISSING
node at or after the infill: one that overlaps the infilled text widened to whole lines, or lies
below it in the same top-level construct (an unclosed ``{`` in the fill leaves its MISSING ``}``
lines below). *New* means the document without the infill (prefix + suffix) has no error of
the same kind whose span, mapped across the hole, is the same. Errors elsewhere in a
half-edited file are ignored, and so is a pre-existing error that merely grows to absorb the
infill (its insides are not judged: tree-sitter's recovery inside it shifts with any edit). The
empty infill is always valid.

A ``HoleChecker`` belongs to one hole of one document. It parses the document once, keeps the
top-level constructs around the hole, and checks each candidate fill by editing its previous
tree (``Tree.edit`` + ``parse(old_tree)``), so a check costs a small incremental parse plus a
walk down the nodes that hold errors. All offsets are UTF-8 byte offsets.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import lru_cache

import tree_sitter as ts

from diffill.grammar.indentation import IndentScan, stray_space
from diffill.grammar.registry import Grammar

SUFFIX_SCAN = 4000  # bytes of the suffix the indentation pre-check may read
CACHE_SIZE = 64  # fills remembered per hole (sampler steps often re-render the same text)


@dataclass(frozen=True)
class SyntaxError_:
    """A new error node: its kind (``ERROR`` or ``MISSING <type>``) and document byte span."""

    kind: str
    start: int
    end: int


def _as_bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else text


def _point(data: bytes, offset: int) -> tuple[int, int]:
    row = data.count(b"\n", 0, offset)
    return row, offset - (data.rfind(b"\n", 0, offset) + 1)


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _kind(node: ts.Node) -> str:
    return f"MISSING {node.type}" if node.is_missing else "ERROR"


def _overlaps(start: int, end: int, lo: int, hi: int) -> bool:
    """A node [start, end) against the line region [lo, hi] (``hi`` is the line end)."""
    if start == end:
        return lo <= start <= hi
    return start < hi and end > lo


def hides_error(node: ts.Node) -> bool:
    """A node that has an error but no ERROR or MISSING node below it to show where: tree-sitter
    recovers so from a missing invisible token (Python's `a < b c` on one line: two statements,
    no newline between them). The node itself is the error's place."""
    return (node.has_error and not node.is_error and not node.is_missing
            and not any(c.has_error or c.is_missing for c in node.children))


def marks_error(node: ts.Node) -> bool:
    """Whether ``node`` is a place of a syntax error: ERROR, MISSING, or hiding one."""
    return node.is_error or node.is_missing or hides_error(node)


def error_nodes(tree: ts.Tree, lo: int, hi: int, enter=lambda node: True) -> list[ts.Node]:
    """ERROR and MISSING nodes overlapping [lo, hi] (and nodes that hide an error), outermost
    first; nested ones too, inside the ERROR nodes for which ``enter`` is true."""
    out: list[ts.Node] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if marks_error(node):
            out.append(node)
            if node.is_missing or not node.is_error or not enter(node):
                continue
        cursor = node.walk()
        if cursor.goto_first_child_for_byte(max(0, lo - 1)) is None:
            continue
        while True:
            child = cursor.node
            if child.start_byte > hi:
                break
            if (child.has_error or child.is_missing) and _overlaps(child.start_byte, child.end_byte, lo, hi):
                stack.append(child)
            if not cursor.goto_next_sibling():
                break
    return out


def _inside_text(node: ts.Node | None) -> bool:
    while node is not None:
        if node.type in ("string", "comment", "string_content", "concatenated_string"):
            return True
        node = node.parent
    return False


def _open_quote(text: bytes) -> int | None:
    """Offset of a single-quoted Python string that ``text`` (whole lines) leaves unterminated
    at the end of a line, or None (also None when a triple-quoted string is left open: that
    may legally go on)."""
    i, n = 0, len(text)
    quote, opened, triple = b"", 0, False
    while i < n:
        c = text[i : i + 1]
        if quote:
            if c == b"\\":
                i += 2
                continue
            if triple and text.startswith(quote * 3, i):
                quote, i = b"", i + 3
                continue
            if not triple and c == quote:
                quote = b""
            elif not triple and c == b"\n":
                return opened
            i += 1
            continue
        if c == b"#":
            nl = text.find(b"\n", i)
            i = n if nl < 0 else nl
        elif c in (b"'", b'"'):
            triple = text.startswith(c * 3, i)
            quote, opened = c, i
            i += 3 if triple else 1
        else:
            i += 1
    return opened if quote and not triple else None


WINDOW_BYTES = 8000  # a larger Python slice is narrowed to the class or function body around the hole
_NESTED = ("class_definition", "function_definition")


def _around(parent: ts.Node, lo: int, hi: int) -> tuple[int, int]:
    """Byte range of ``parent``'s children overlapping [lo, hi] plus one neighbour on each side
    (to the parent's own ends when they are its first or last child)."""
    kids = parent.children
    if not kids:
        return parent.start_byte, parent.end_byte
    hit = [i for i, k in enumerate(kids) if k.start_byte <= hi and k.end_byte >= lo]
    if hit:
        first, last = max(0, hit[0] - 1), min(len(kids) - 1, hit[-1] + 1)
    else:
        nxt = next((i for i, k in enumerate(kids) if k.start_byte > hi), len(kids))
        first, last = max(0, nxt - 1), min(len(kids) - 1, nxt)
    start = parent.start_byte if first == 0 else kids[first].start_byte
    end = parent.end_byte if last == len(kids) - 1 else kids[last].end_byte
    return start, end


def _window(tree: ts.Tree, data: bytes, lo: int, hi: int, nested: bool) -> tuple[int, int]:
    """The slice of ``data`` that later checks reparse: the top-level constructs around the
    hole's lines [lo, hi]; with ``nested`` (Python, whose grammar takes indented code on its
    own), a large slice is narrowed to the statements around the hole inside the class or
    function body that holds it, from the start of their first line."""
    parent = tree.root_node
    start, end = _around(parent, lo, hi)
    start = 0 if start == parent.start_byte else start
    while nested and end - start > WINDOW_BYTES:
        inner = next((k for k in parent.children if k.start_byte <= lo and k.end_byte >= hi), None)
        if inner is not None and inner.type == "decorated_definition":
            inner = inner.child_by_field_name("definition")
        body = inner.child_by_field_name("body") if inner is not None and inner.type in _NESTED else None
        if body is None or body.type != "block" or body.start_byte > lo:
            break
        s, end = _around(body, lo, hi)
        start = data.rfind(b"\n", 0, s) + 1
        parent = body
    return min(start, lo), max(end, hi)


EMPTY_BLOCK = "EMPTY block"


@lru_cache(maxsize=None)
def _empty_block_query(language: ts.Language) -> ts.Query:
    return ts.Query(language, "(block) @block")


class HoleChecker:
    """Checks candidate fills of the hole between ``prefix`` and ``suffix`` (the whole document)."""

    def __init__(self, grammar: Grammar, prefix: str | bytes, suffix: str | bytes, window: bool = True,
                 tree: ts.Tree | None = None):
        """``tree``: the parse of ``prefix + suffix`` where the caller has it (not parsed again)."""
        self.grammar = grammar
        self.parser = grammar.parser()
        prefix, suffix = _as_bytes(prefix), _as_bytes(suffix)
        lo = prefix.rfind(b"\n") + 1
        nl = suffix.find(b"\n")
        hi = len(prefix) + (len(suffix) if nl < 0 else nl)
        # Parse once, then keep only the top-level constructs around the hole: later checks
        # reparse this slice, so their cost does not grow with the file.
        data = prefix + suffix
        whole = tree if tree is not None else self.parser.parse(data)
        cut_lo, cut_hi = _window(whole, data, lo, hi, grammar.name == "python") if window else (0, len(data))
        sliced = (cut_lo, cut_hi) != (0, len(data))
        # the slice is cut where the document *without* the fill has its constructs; a fill can
        # join lines beyond it (reopen a dict whose first line was the hole), so a verdict of
        # "invalid" is confirmed on the whole document
        self._document = (prefix, suffix, whole) if sliced else None
        self._whole: HoleChecker | None = None
        self.offset = cut_lo  # document offset of the slice
        self.prefix, self.suffix = prefix[cut_lo:], suffix[: cut_hi - len(prefix)]
        self.hole = len(self.prefix)
        self.line_start = lo - cut_lo
        self.line_head = self.prefix[self.line_start :]  # the hole's line up to the hole
        self.rest_of_line = hi - len(prefix)  # bytes from the hole to the end of its line
        self.code_end = len(self.prefix[: self.line_start].rstrip())  # end of the code above
        self.tree = self.parser.parse(self.prefix + self.suffix) if sliced else whole
        self.fill = b""
        # Python's grammar accepts a compound statement with an empty body (``for x in xs:``
        # then a dedent); the check counts such an empty block as an error
        self._empty_blocks = _empty_block_query(grammar.language) if grammar.name == "python" else None
        end = len(self.prefix) + len(self.suffix)
        self.base_errors = {(_kind(n), n.start_byte, n.end_byte)
                            for n in error_nodes(self.tree, self.code_end, end)}
        self.base_errors |= {(EMPTY_BLOCK, n.start_byte, n.end_byte)
                             for n in self._empty(self.line_start, self.hole + self.rest_of_line)}
        self._cache: OrderedDict[bytes, list[SyntaxError_]] = OrderedDict()
        # the lexical pre-check needs the hole's line to start outside any string or comment
        at = self.tree.root_node.descendant_for_byte_range(self.line_start, self.hole)
        self._lexical_ok = grammar.name == "python" and not _inside_text(at)
        if self._lexical_ok:
            self._indent = IndentScan()
            self._indent.feed(self.prefix[: self.line_start], check=False)
            self._indent_base = self._indent_error(b"")

    # -- public ----------------------------------------------------------------------------

    def errors(self, fill: str | bytes) -> list[SyntaxError_]:
        """New error nodes at or after the fill's lines in the slice, in document byte offsets."""
        fill = _as_bytes(fill)
        if stray_space(self.line_head, fill):
            # checked without its first space (as it is delivered); offsets back in ``fill``'s document
            at = self.offset + self.hole
            return [replace(e, start=e.start + (e.start > at), end=e.end + (e.end > at)) for e in self.errors(fill[1:])]
        hit = self._cache.get(fill)
        if hit is not None:
            self._cache.move_to_end(fill)
            return hit
        found = (self._lexical(fill) or self._errors(fill)) if fill else []
        self._cache[fill] = found
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return found

    def is_valid(self, fill: str | bytes) -> bool:
        """The verdict: ``errors`` (fast, on the slice, what steering uses), confirmed on the
        whole document when the slice finds any."""
        if not self.errors(fill):
            return True
        if self._document is None:
            return False
        if self._whole is None:
            prefix, suffix, tree = self._document
            self._whole = HoleChecker(self.grammar, prefix, suffix, window=False, tree=tree)
            self._document = (prefix, suffix, None)
        return self._whole.is_valid(fill)

    def fill_regions(self, fill: str | bytes) -> list[tuple[int, int]]:
        """The new errors as byte ranges inside the fill (clamped; a zero-width range marks an
        error at that point, for instance a MISSING token)."""
        n = len(_as_bytes(fill))
        out = []
        for e in self.errors(fill):
            a = min(max(e.start - self.offset - self.hole, 0), n)
            b = min(max(e.end - self.offset - self.hole, 0), n)
            out.append((a, b))
        return out

    def longest_valid_prefix(self, fill: str) -> str:
        """The longest prefix of ``fill`` that is valid and ends at a line boundary (before a
        newline of the fill, or the whole fill); "" when there is none."""
        if self.is_valid(fill):
            return fill
        cut = fill.rfind("\n")
        while cut > 0:
            head = fill[:cut]
            if head.strip() and self.is_valid(head):
                return head
            cut = fill.rfind("\n", 0, cut)
        return ""

    # -- helpers ---------------------------------------------------------------------------

    def _reparse(self, fill: bytes) -> bytes:
        old_fill = self.fill
        if fill == old_fill:
            return self.prefix + fill + self.suffix
        head = _common_prefix(old_fill, fill)
        tail = _common_prefix(old_fill[head:][::-1], fill[head:][::-1])
        old_doc = self.prefix + old_fill + self.suffix
        new_doc = self.prefix + fill + self.suffix
        start = self.hole + head
        old_end = self.hole + len(old_fill) - tail
        new_end = self.hole + len(fill) - tail
        self.tree.edit(start, old_end, new_end, _point(old_doc, start), _point(old_doc, old_end),
                       _point(new_doc, new_end))
        self.tree = self.parser.parse(new_doc, self.tree)
        self.fill = fill
        return new_doc

    def _lexical(self, fill: bytes) -> list[SyntaxError_]:
        """Cheap pre-checks before a parse (Python): a quote the fill leaves open at the end of a
        line (a parse would catch it too, but an open quote re-lexes the rest of the file), and
        a wrong indentation (which tree-sitter's Python grammar lets through)."""
        if not self._lexical_ok:
            return []
        end = len(self.prefix) + len(fill) + self.rest_of_line
        text = self.prefix[self.line_start :] + fill + self.suffix[: self.rest_of_line]
        at = _open_quote(text)
        if at is not None:
            start = self.line_start + at + self.offset
            return [SyntaxError_("UNTERMINATED string", start, max(start + 1, end + self.offset))]
        at = self._indent_error(fill)
        line = self.hole - self.line_start
        if at is None or (at >= line + len(fill) and at - len(fill) == self._indent_base):
            return []  # no indentation error, or the one the document already had
        start = self.line_start + at + self.offset
        return [SyntaxError_("INDENTATION", start, start + 1)]

    def _indent_error(self, fill: bytes) -> int | None:
        """Offset (from the hole's line start) of the first line with a wrong indentation, from
        the hole's line to the first logical line after the fill's."""
        text = self.prefix[self.line_start :] + fill + self.suffix[: self.rest_of_line + SUFFIX_SCAN]
        stop = len(self.prefix) - self.line_start + len(fill) + self.rest_of_line
        return self._indent.copy().feed(text, stop_after=stop)

    def _errors(self, fill: bytes) -> list[SyntaxError_]:
        self._reparse(fill)
        # from the end of the code before the fill's line (tree-sitter may place a MISSING node
        # right after the previous token) to the end of the slice (a fill that opens a bracket
        # may leave its MISSING close lines below)
        lo = self.code_end
        hi = len(self.prefix) + len(fill) + len(self.suffix)
        pre_existing = self._pre_existing(len(fill))
        found = []
        for node in error_nodes(self.tree, lo, hi, enter=lambda n: not pre_existing(n)):
            if not pre_existing(node):
                found.append(SyntaxError_(_kind(node), node.start_byte + self.offset,
                                          node.end_byte + self.offset))
        for node in self._empty(lo, self.hole + len(fill) + self.rest_of_line):
            if not pre_existing(node, EMPTY_BLOCK):
                found.append(SyntaxError_(EMPTY_BLOCK, node.start_byte + self.offset, node.end_byte + self.offset))
        return found

    def _empty(self, lo: int, hi: int) -> list[ts.Node]:
        if self._empty_blocks is None:
            return []
        cursor = ts.QueryCursor(self._empty_blocks)
        cursor.set_byte_range(max(0, lo - 1), hi + 1)
        return [n for nodes in cursor.captures(self.tree.root_node).values() for n in nodes
                if n.named_child_count == 0 and lo <= n.start_byte <= hi]

    def _pre_existing(self, delta: int):
        """Whether a node of the filled document is an error the document had without the fill."""
        h = self.hole

        def back(p: int, strict: bool = False) -> tuple[int, ...]:
            # a document offset -> the offsets it may have had without the fill (``strict``: the
            # end of the fill is not the hole, as for an empty body the fill itself opened)
            if p < h:
                return (p,)
            if p == h or (p == h + delta and not strict):
                return (h,)
            if p > h + delta:
                return (p - delta,)
            return ()  # inside the fill: new

        def test(node: ts.Node, kind: str | None = None) -> bool:
            kind = kind or _kind(node)
            strict = kind == EMPTY_BLOCK
            return any((kind, a, b) in self.base_errors
                       for a in back(node.start_byte, strict) for b in back(node.end_byte, strict))

        return test
