"""Python indentation, checked lexically: what tree-sitter's Python grammar lets through.

tree-sitter-python accepts a block opener with an empty body (``if x:`` then a dedent) and an
unexpected indent; CPython rejects both. ``IndentScan`` follows logical lines (brackets,
strings, comments and backslash continuations taken into account) and reports the first line
whose indentation is wrong: not deeper after a line ending in ``:``, deeper without one, or a
dedent to a level that no open block has.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

_OPEN, _CLOSE = b"([{", b")]}"


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
        i, n, last = 0, len(line), b""
        single = b""
        while i < n:
            c = line[i : i + 1]
            if self.quote:
                if c == b"\\":
                    i += 2
                    continue
                if line.startswith(self.quote, i):
                    i += 3
                    self.quote = b""
                    last = b"'"
                    continue
                i += 1
                continue
            if single:
                if c == b"\\":
                    i += 2
                    continue
                if c == single:
                    single = b""
                    last = c
                i += 1
                continue
            if c == b"#":
                break
            if c in (b"'", b'"'):
                if line.startswith(c * 3, i):
                    self.quote = c * 3
                    i += 3
                    continue
                single = c
            elif c in _OPEN:
                self.depth += 1
            elif c in _CLOSE:
                self.depth = max(0, self.depth - 1)
            if not c.isspace():
                last = c
            i += 1
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
