"""The syntax constraint the sampler calls at every refinement step.

Each step the sampler hands over the canvas view (committed tokens, else the model's current
guess) and which slots are committed and proposed. The constraint renders prefix + view +
suffix, truncated at the first ``<eoi>``, asks the hole's ``HoleChecker`` for new error nodes,
and maps them back to slots through each token's bytes:

- tree-sitter reports an error where the parse could not go on, so the last slot of an error
  region (a token, or the <eoi> that ends the fill too early) is to blame: a proposal there is
  banned (not committed, its guess banned at the slot); a committed token there, when the
  region holds no open guess, is re-masked and banned (the sampler bounds how often): the
  in-loop repair. An open guess there is left to change by itself;
- other proposals in an error region are held (not committed this step, not banned), while
  some other proposal of the row moves on. When every proposal would be held, the error is
  blamed on open guesses after them, which change once the proposals are committed: the
  proposals go through. (Banning one instead cost a forward pass per ban, and left to right,
  where one slot is proposed at a time against an unchanged canvas, it banned good first
  tokens one after another until the step budget ran out.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from diffill.grammar.validity import HoleChecker


class Verdict(NamedTuple):
    """What the sampler's ``Constraint.check`` returns (a tuple of three slot sets)."""

    hold: set[int]  # proposals not committed this step
    ban: set[int]  # proposals not committed, guess banned at the slot
    remask: set[int]  # committed slots back to <mask>, token banned there

    @classmethod
    def empty(cls) -> Verdict:
        return cls(set(), set(), set())


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of the byte-level BPE alphabet (GPT-2's ``bytes_to_unicode``)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def token_bytes(tok) -> list[bytes]:
    """The UTF-8 bytes each token id stands for (special tokens: b""), for a byte-level BPE
    ``CodeTokenizer``. Concatenating them gives the bytes of the decoded text exactly. Computed
    once per tokenizer and kept on it (a table keyed by ``id(tok)`` outlived its tokenizer, and a
    later one at the same address got the wrong table)."""
    table = tok.__dict__.get("_token_bytes")
    if table is None:
        dec = _byte_decoder()
        table = []
        for i in range(tok.vocab_size):
            piece = tok.backend.id_to_token(i)
            if i in tok.special_ids or piece is None:
                table.append(b"")
            else:
                table.append(bytes(dec[c] for c in piece) if all(c in dec for c in piece)
                             else piece.encode("utf-8"))
        tok._token_bytes = table
    return table


@dataclass
class SyntaxConstraint:
    """The constraint for one hole (one sampler row)."""

    checker: HoleChecker
    pieces: list[bytes]  # token id -> bytes
    mask_id: int
    eoi_id: int
    checks: int = 0
    # the post-processing a whole fill gets before the user sees it (``accepts`` judges that text:
    # a raw fill that repeats the suffix's ``):`` is valid once the repeat is dropped)
    finish: Callable[[str], str] | None = None

    def accepts(self, tokens: list[int]) -> bool:
        """Whether the whole fill ``tokens`` (up to the first <eoi>), post-processed, is valid."""
        self.checks += 1
        text = self.render(tokens)[0].decode("utf-8", "replace")
        return self.checker.is_valid(self.finish(text) if self.finish else text)

    def render(self, tokens: list[int]) -> tuple[bytes, list[tuple[int, int]]]:
        """The fill's bytes (up to the first <eoi>) and each slot's byte span in it; slots from
        the first <eoi> on are empty spans at the end."""
        spans, out, pos, ended = [], [], 0, False
        for t in tokens:
            ended = ended or t == self.eoi_id
            piece = b"" if ended or t == self.mask_id else self.pieces[t]
            spans.append((pos, pos + len(piece)))
            out.append(piece)
            pos += len(piece)
        return b"".join(out), spans

    def regions(self, fill: bytes) -> list[tuple[int, int]]:
        """New errors as byte ranges of the fill; an error that runs on past the fill ends at
        ``len(fill) + 1``, so the <eoi> that ends the fill there is part of it."""
        n, base = len(fill), self.checker.offset + self.checker.hole
        out = []
        for e in self.checker.errors(fill):
            a, b = e.start - base, e.end - base
            out.append((min(max(a, 0), n), min(max(b, 0), n + 1) if b > n else max(b, 0)))
        return out

    def check(self, row: int, tokens: list[int], committed: list[bool], proposed: list[bool]) -> Verdict:
        fill, spans = self.render(tokens)
        self.checks += 1
        regions = self.regions(fill)
        if not regions:
            return Verdict.empty()
        # slots that can be blamed: the fill's tokens and the <eoi> that ends it
        end = tokens.index(self.eoi_id) if self.eoi_id in tokens else len(tokens) - 1
        hold, ban, remask = set(), set(), set()
        for a, b in regions:
            hit = [i for i in range(end + 1) if _touches(*spans[i], a, b)]
            if not hit:
                continue
            # tree-sitter reports an error where the parse could not go on: blame the last slot
            last = hit[-1]
            earlier = {i for i in hit[:-1] if proposed[i]}
            if proposed[last]:
                ban.add(last)
            elif committed[last] and all(committed[i] or proposed[i] for i in hit):
                remask.add(last)
            hold |= earlier
        if not ban and not remask and all(i in hold for i, p in enumerate(proposed) if p):
            hold = set()  # every proposal held: blamed on later open guesses, so commit them
        return Verdict(hold - ban, ban, remask)


def _touches(s: int, e: int, a: int, b: int) -> bool:
    """Does the slot's byte span [s, e) meet the error region [a, b) (or the point a == b)?"""
    if a == b:
        return s <= a <= e
    if s == e:
        return a <= s < b
    return s < b and e > a


@dataclass
class RowConstraints:
    """One sampler-level constraint over a batch: row index -> that row's SyntaxConstraint
    (rows without a grammar are unconstrained)."""

    rows: Mapping[int, SyntaxConstraint]

    def check(self, row: int, tokens: list[int], committed: list[bool], proposed: list[bool]) -> Verdict:
        one = self.rows.get(row)
        return one.check(row, tokens, committed, proposed) if one is not None else Verdict.empty()

    def accepts(self, row: int, tokens: list[int]) -> bool:
        one = self.rows.get(row)
        return one.accepts(tokens) if one is not None else True


def slots_in_errors(constraint: SyntaxConstraint, tokens: list[int], fill: bytes | None = None) -> list[int]:
    """The slot to blame for each new error of ``fill`` (default: the tokens' own render): the
    last slot the error touches, as in ``check``; the engine bans their tokens when it
    resamples a hole. ``fill`` may be the render post-processed: what post-processing dropped
    before it (a leading space) shifts its errors back onto the tokens."""
    rendered, spans = constraint.render(tokens)
    fill = rendered if fill is None else fill
    shift = max(0, rendered.find(fill)) if fill else 0
    blamed = set()
    for a, b in constraint.regions(fill):
        hit = [i for i, (s, e) in enumerate(spans) if _touches(s, e, a + shift, b + shift)]
        if hit:
            blamed.add(hit[-1])
    return sorted(blamed)
