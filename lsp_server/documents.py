"""Open documents and LSP positions (zero-based lines, UTF-16 code units, as LSP requires).

Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (the LSP definition, not Python's ``splitlines``, which
also breaks at form feeds and ``\\u2028``). Offsets are Python string indices (code points).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from diffill.errors import DiffillError
from diffill.positions import line_starts

def utf16_len(s: str) -> int:
    """Number of UTF-16 code units in ``s`` (characters outside the BMP count twice)."""
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


@dataclass
class Document:
    uri: str
    text: str
    version: int | None = None
    language_id: str = ""
    _starts: list[int] | None = field(default=None, repr=False)

    def line_starts(self) -> list[int]:
        if self._starts is None:
            self._starts = line_starts(self.text)
        return self._starts

    def _line_bounds(self, line: int) -> tuple[int, int]:
        starts = self.line_starts()
        start = starts[line]
        end = starts[line + 1] if line + 1 < len(starts) else len(self.text)
        while end > start and self.text[end - 1] in "\r\n":
            end -= 1
        return start, end

    def offset_at(self, line: int, character: int) -> int:
        """Offset of an LSP position. A line past the end is an error; a character past the end
        of its line means the end of the line (as the LSP specification says)."""
        starts = self.line_starts()
        if line < 0 or character < 0:
            raise DiffillError(f"position {line}:{character} is negative")
        if line >= len(starts):
            raise DiffillError(f"position {line}:{character} is outside the document "
                               f"(it has {len(starts)} lines)")
        start, end = self._line_bounds(line)
        units = 0
        for i in range(start, end):
            if units >= character:
                return i
            units += 2 if ord(self.text[i]) > 0xFFFF else 1
        return end

    def position_at(self, offset: int) -> tuple[int, int]:
        """LSP (line, character) of an offset."""
        if not 0 <= offset <= len(self.text):
            raise DiffillError(f"offset {offset} is outside the document (length {len(self.text)})")
        starts = self.line_starts()
        line = bisect.bisect_right(starts, offset) - 1
        return line, utf16_len(self.text[starts[line] : offset])

    def apply_change(self, start: tuple[int, int] | None, end: tuple[int, int] | None, text: str) -> None:
        """Replace the range ``start``-``end`` (LSP positions) with ``text``; no range: the whole text."""
        if start is None or end is None:
            self.text = text
        else:
            a, b = self.offset_at(*start), self.offset_at(*end)
            if b < a:
                raise DiffillError(f"change range {start}-{end} ends before it starts")
            self.text = self.text[:a] + text + self.text[b:]
        self._starts = None


class DocumentStore:
    """The documents the client has opened, by URI."""

    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}

    def open(self, uri: str, text: str, version: int | None, language_id: str) -> Document:
        doc = self._docs[uri] = Document(uri, text, version, language_id)
        return doc

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def get(self, uri: str) -> Document:
        doc = self._docs.get(uri)
        if doc is None:
            raise DiffillError(f"unknown document {uri}: it is not open (send textDocument/didOpen first)")
        return doc

    def others(self, uri: str, limit: int, max_chars: int) -> tuple[str, ...]:
        """The texts of up to ``limit`` other open documents, the last opened first, each of at most
        ``max_chars`` characters (longer ones are left out)."""
        texts = [d.text for u, d in reversed(self._docs.items()) if u != uri and len(d.text) <= max_chars]
        return tuple(texts[:limit])

    def __contains__(self, uri: str) -> bool:
        return uri in self._docs

    def __len__(self) -> int:
        return len(self._docs)
