"""Reading source files for the engine: text only, with clear errors for binary or missing files."""

from __future__ import annotations

from pathlib import Path

from diffill.errors import DiffillError


def read_source(path: str | Path) -> str:
    """The file's text (UTF-8); DiffillError when missing, unreadable, binary or undecodable."""
    p = Path(path)
    if not p.exists():
        raise DiffillError(f"no such file: {p}")
    if not p.is_file():
        raise DiffillError(f"not a regular file: {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DiffillError(f"cannot read {p}: {e.strerror}") from e
    if b"\x00" in data[:8192]:
        raise DiffillError(f"{p} is a binary file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DiffillError(f"{p} is not valid UTF-8 text (byte {e.start})") from e
