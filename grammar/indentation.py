"""Python indentation, checked lexically: what tree-sitter's Python grammar lets through.

tree-sitter-python accepts a block opener with an empty body (``if x:`` then a dedent) and an
unexpected indent; CPython rejects both. ``IndentScan`` follows logical lines (brackets,
strings, comments and backslash continuations taken into account) and reports the first line
whose indentation is wrong: not deeper after a line ending in ``:``, deeper without one, or a
dedent to a level that no open block has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

_OPEN, _CLOSE = b"([{", b")]}"
_SPECIAL = re.compile(rb"[#'\"()\[\]{}]")  # what changes the scan's state outside strings
# inside a string opened by each quote: an escape (a backslash and the byte after it) or its end
_INSIDE = {q: re.compile(rb"\\(?s:.)?|" + re.escape(q)) for q in (b"'", b'"', b"'''", b'"""')}


@dataclass
class IndentScan:
    stack: list[int] = field(default_factory=list)  # indentation of the open blocks, innermost last
    depth: int = 0  # open brackets
    quote: bytes = b""  # the open triple quote, if a triple-quoted string spans lines
    opens: bool = False  # the last logical line ended with ":"
    going_on: bool = False  # the logical line goes on (open brackets or a backslash)

    def copy(self) -> IndentScan:
        return replace(self, stack=list(self.stack))

    def feed(self, text: bytes, stop_after: int | None = None, check: bool = True) -> int | None:
        """Scan whole lines of ``text``; the offset of the first line with a wrong indentation,
        or None (``check=False``: only follow the state). With ``stop_after``, stop once a
        logical line starting past that offset has been checked."""
        pos = 0
        for line in text.split(b"\n"):
            starts = not self.quote and not self.depth and not self.going_on
            body = line.lstrip(b" \t")
            if starts and body and not body.startswith(b"#"):
                if not self._indent_ok(len(line) - len(body)) and check:
                    return pos
                if stop_after is not None and pos > stop_after:
                    return None
            self._scan_line(line)
            pos += len(line) + 1
        return None

    def _indent_ok(self, ind: int) -> bool:
        if not self.stack:
            self.stack.append(ind)
        top = self.stack[-1]
        if self.opens:
            self.opens = False
            if ind <= top:
                return False
            self.stack.append(ind)
            return True
        if ind > top:
            return False
        while self.stack and self.stack[-1] > ind:
            self.stack.pop()
        if not self.stack:  # dedented out of the scanned code: a level we have not seen
            self.stack.append(ind)
        return self.stack[-1] == ind

    def _scan_line(self, line: bytes) -> None:
        """Follow one line's strings, brackets and comment, jumping from one such character to the
        next (a long line, minified or generated, is scanned at C speed)."""
        i, n, last = 0, len(line), b""
        while i < n:
            if self.quote:  # inside a triple-quoted string: to its end, past escapes
                m = _INSIDE[self.quote].search(line, i)
                if m is None:
                    break
                i = m.end()
                if not m.group().startswith(b"\\"):
                    self.quote, last = b"", b"'"
                continue
            m = _SPECIAL.search(line, i)
            j = m.start() if m else n
            code = line[i:j].rstrip()
            if code:
                last = code[-1:]
            if m is None or m.group() == b"#":
                break
            c = m.group()
            i = j + 1
            if c in (b"'", b'"'):
                if line.startswith(c * 3, j):
                    self.quote, i = c * 3, j + 3
                    continue
                last = c  # a string on one line: to its closing quote (or the line's end)
                m = _INSIDE[c].search(line, i)
                while m is not None and m.group().startswith(b"\\"):
                    m = _INSIDE[c].search(line, m.end())
                i = m.end() if m else n
                continue
            self.depth = self.depth + 1 if c in _OPEN else max(0, self.depth - 1)
            last = c
        self.going_on = line.rstrip().endswith(b"\\") and not self.quote
        if last and not self.quote and not self.depth and not self.going_on:  # blank lines change nothing
            self.opens = last == b":"


def stray_space(line: str | bytes, fill: str | bytes) -> bool:
    """Whether ``fill``, put after ``line`` (the hole's line up to the hole: indentation only),
    starts with one space before code. That space is the byte-level BPE's spaced form of a word
    (`` mimetypes``) where the vocabulary has no unspaced one, not a deeper indentation: the fill
    is checked (``HoleChecker``) and delivered (``diffill.postprocess``) without it."""
    space, blank = (b" ", b" \t\r\n") if isinstance(fill, bytes) else (" ", " \t\r\n")
    return bool(line) and not line.strip() and len(fill) > 1 and fill[:1] == space and fill[1:2] not in blank
