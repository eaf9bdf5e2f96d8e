"""Line endings: the engine works on ``\\n`` text; a ``\\r\\n`` document gets its fills back in ``\\r\\n``.

The model was trained on files with ``\\n`` line ends (``model/corpus.py`` turns ``\\r\\n`` into
``\\n``), and copying from a ``\\r\\n`` document would carry its carriage returns into a fill
(``y = x + 1\\r``). So a request's document is read without the carriage return of each ``\\r\\n``
(and with a lone ``\\r`` as ``\\n``), its offsets moved to match, and its fills written with the
document's own line ending.
"""

from __future__ import annotations

import re
from bisect import bisect_left

LINE_END = re.compile(r"\r\n|\r|\n")  # the LSP's line ends
_CRLF = re.compile("\r\n")


def newline_of(text: str) -> str:
    """The document's line ending, as its first line ends: ``\\r\\n``, ``\\r`` or ``\\n`` (also
    for a document of one line)."""
    first = LINE_END.search(text)
    return first.group() if first else "\n"


class LineFeeds:
    """``text`` without the carriage return of each ``\\r\\n`` and with a lone ``\\r`` (a line end
    of old Mac files) as ``\\n``; and offsets between the two."""

    def __init__(self, text: str):
        self.changed = "\r" in text
        self.crs = [m.start() for m in _CRLF.finditer(text)] if self.changed else []  # the dropped ``\r``s
        self.text = text.replace("\r\n", "\n").replace("\r", "\n") if self.changed else text
        self.newline = newline_of(text)

    def offset(self, original: int) -> int:
        """An offset of the original text in ``self.text``; one between ``\\r`` and ``\\n`` is the
        line's end."""
        return original - bisect_left(self.crs, original)

    def fill(self, text: str) -> str:
        """A fill of ``self.text`` as the original document writes lines."""
        text = text.replace("\r", "") if self.changed else text
        return text.replace("\n", self.newline) if self.newline != "\n" else text
