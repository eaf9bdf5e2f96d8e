"""Line/column positions and character offsets (1-based for the CLI, as in compiler messages)."""

from __future__ import annotations

from diffill.errors import DiffillError
from diffill.newlines import LINE_END


def line_starts(text: str) -> list[int]:
    """Where each line starts; lines end at ``\\r\\n``, ``\\r`` or ``\\n``, as the LSP's do."""
    return [0, *(m.end() for m in LINE_END.finditer(text))]


def offset_of(text: str, line: int, col: int) -> int:
    """Character offset of 1-based ``line``:``col``; col may be one past the end of the line."""
    starts = line_starts(text)
    if line < 1 or line > len(starts):
        raise DiffillError(f"line {line} is outside the document (it has {len(starts)} lines)")
    start = starts[line - 1]
    end = starts[line] - 1 if line < len(starts) else len(text)
    if end > start and text[end - 1] == "\r":  # a CRLF line ends before its carriage return
        end -= 1
    if col < 1 or start + col - 1 > end:
        raise DiffillError(f"column {col} is outside line {line} (it has {end - start} characters)")
    return start + col - 1


def parse_point(spec: str) -> tuple[int, int]:
    try:
        line, col = spec.split(":")
        return int(line), int(col)
    except ValueError:
        raise DiffillError(f"bad position {spec!r}: expected LINE:COL, e.g. 12:5") from None


def parse_range(spec: str) -> tuple[tuple[int, int], tuple[int, int]]:
    try:
        a, b = spec.split("-")
    except ValueError:
        raise DiffillError(f"bad range {spec!r}: expected L1:C1-L2:C2, e.g. 3:1-7:1") from None
    return parse_point(a), parse_point(b)
