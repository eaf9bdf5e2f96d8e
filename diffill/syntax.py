"""The engine's side of the syntax constraint: one guard per hole, and the last-resort path.

During sampling the guard's ``SyntaxConstraint`` steers every step. After sampling, a fill that
is still invalid is repaired (its error slots' tokens banned and the hole resampled, a bounded
number of times), then cut to its longest valid prefix that ends at a line boundary, then
dropped. With a guard, nothing invalid leaves the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from diffill.grammar.constraint import SyntaxConstraint, slots_in_errors, token_bytes
from diffill.grammar.registry import resolve
from diffill.grammar.validity import HoleChecker

log = logging.getLogger(__name__)

# a document larger than this is filled without the constraint: every check reparses it (a
# 1.5 MB one-line file took 26 s for one cursor), and files this large are generated, not written
MAX_CHECKED_CHARS = 1_000_000

# (bans for the one resampled row) -> (tokens up to <eoi>, post-processed text)
Resample = Callable[[dict[tuple[int, int], set[int]]], tuple[list[int], str]]


@dataclass
class HoleGuard:
    checker: HoleChecker
    constraint: SyntaxConstraint
    outcome: str = "unchecked"  # valid | repaired | truncated | empty


def guard_for(text: str, start: int, end: int, tok, language: str | None = None,
              path: str | None = None) -> HoleGuard | None:
    """The guard for the hole ``text[start:end]``, or None when the language has no grammar
    (``resolve`` logs a one-line notice and the hole is filled unconstrained)."""
    grammar = resolve(language, path)
    if grammar is None:
        return None
    if len(text) > MAX_CHECKED_CHARS:
        log.warning("the document has %d characters (over %d): completing without the syntax constraint",
                    len(text), MAX_CHECKED_CHARS)
        return None
    checker = HoleChecker(grammar, text[:start], text[end:])
    return HoleGuard(checker, SyntaxConstraint(checker, token_bytes(tok), tok.mask_id, tok.eoi_id))


def ensure_valid(guard: HoleGuard, tokens: list[int], text: str, resample: Resample | None,
                 repairs: int, runners_up: list[str] = ()) -> str:
    """``text`` if valid; else the first valid of ``runners_up`` (other fills a beam search
    found: no model call); else a repaired resample; else the longest valid line-boundary prefix
    of any attempt; else "". Records which in ``guard.outcome``."""
    if guard.checker.is_valid(text):
        guard.outcome = "valid"
        return text
    for alt in runners_up:
        if alt.strip() and guard.checker.is_valid(alt):
            guard.outcome = "runner-up"
            return alt
    attempts = [text]
    bans: dict[tuple[int, int], set[int]] = {}
    for _ in range(repairs if resample else 0):
        slots = slots_in_errors(guard.constraint, tokens, text.encode("utf-8"))
        if not slots:
            break
        for s in slots:
            bans.setdefault((0, s), set()).add(tokens[s])
        tokens, text = resample(bans)
        if guard.checker.is_valid(text):
            guard.outcome = "repaired"
            return text
        attempts.append(text)
    best = max((guard.checker.longest_valid_prefix(t) for t in attempts), key=len)
    guard.outcome = "truncated" if best else "empty"
    log.debug("invalid infill %s: %r", guard.outcome, attempts[0][:80])
    return best
