"""Post-processing of a raw infill: small, named, pure filters applied in order.

Each filter takes the infill text and the context of the hole and returns the text to keep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from diffill.grammar.indentation import stray_space


@dataclass(frozen=True)
class HoleContext:
    prefix: str  # document text before the hole
    suffix: str  # document text after the hole
    multiline: bool


Filter = Callable[[str, HoleContext], str]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def single_line(text: str, ctx: HoleContext) -> str:
    """A single-line hole ends at the end of its line."""
    return text if ctx.multiline else text.split("\n", 1)[0]


def drop_suffix_overlap(text: str, ctx: HoleContext) -> str:
    """Drop an ending that repeats what already follows the cursor on its line (``foo)`` + ``)``)."""
    rest = ctx.suffix.split("\n", 1)[0].rstrip()
    if not rest:
        return text
    for k in range(min(len(rest), len(text)), 0, -1):
        if text.endswith(rest[:k]) and (k == len(rest) or not rest[:k].isalnum()):
            return text[: len(text) - k]
    return text


def stop_at_dedent(text: str, ctx: HoleContext) -> str:
    """In a multi-line fill, stop before the first line that dedents out of the current block."""
    if not ctx.multiline or "\n" not in text:
        return text
    current = ctx.prefix.rsplit("\n", 1)[-1]
    base = _indent(current) if current.strip() == "" else _indent(current)
    lines = text.split("\n")
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() and _indent(line) < base:
            return "\n".join(lines[:i]).rstrip() + ("\n" if i else "")
    return text


def drop_repeated_suffix_lines(text: str, ctx: HoleContext) -> str:
    """In a multi-line fill, drop ending lines that repeat the lines right after the hole
    (the model wrote ``return y`` and the next line already is ``return y``)."""
    if not ctx.multiline or "\n" not in text:
        return text
    following = [line.strip() for line in ctx.suffix.split("\n")[1:] if line.strip()]
    lines = text.split("\n")
    ends = [i for i in range(1, len(lines)) if lines[i].strip()]  # fill lines that may be repeats
    for k in range(min(len(ends), len(following)), 0, -1):
        tail = [lines[i].strip() for i in ends[-k:]]
        if tail == following[:k] and all(not line.strip() for line in lines[ends[-1] + 1 :]):
            return "\n".join(lines[: ends[-k]]).rstrip()
    return text


def no_double_space(text: str, ctx: HoleContext) -> str:
    """A fill after a space on a line with code (``x = |``) does not start with another one: a
    token copied from ``x = measure`` is `` measure`` where the vocabulary has no unspaced form.
    After indentation, one space before code (``grammar.indentation.stray_space``) is dropped."""
    line = ctx.prefix.rsplit("\n", 1)[-1]
    if line.strip() and line.endswith((" ", "\t")):
        return text.lstrip(" \t")
    return text[1:] if stray_space(line, text) else text


def trim_trailing_space(text: str, ctx: HoleContext) -> str:
    """No trailing whitespace at the end of a fill unless the suffix continues the same line."""
    if ctx.suffix.startswith("\n") or not ctx.suffix:
        return text.rstrip(" \t")
    return text


FILTERS: list[Filter] = [single_line, stop_at_dedent, drop_repeated_suffix_lines, drop_suffix_overlap,
                         no_double_space, trim_trailing_space]


def postprocess(text: str, ctx: HoleContext, filters: list[Filter] = FILTERS) -> str:
    for f in filters:
        text = f(text, ctx)
    return text
