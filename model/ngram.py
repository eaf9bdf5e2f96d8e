"""Copying code the model cannot see: token caches mixed into the model's guesses.

Code repeats itself: the same statements and docstring lines recur in a file, and whole blocks
are copied between a repository's modules. The model sees only its window. A ``TokenCache``
holds token streams of more code: the document's whole text around the hole, the editor's other
open documents, and, with a workspace adapter, its repository's files. For a candidate fill
(model/beam.py; in threshold decoding, the fill left of its leftmost masked slot,
model/sampler.py) it finds where the tokens just before the next slot (the hole's prefix, then
the fill so far) occur in them, as an infini-gram does, and mixes what follows there into the
model's next-token distribution:

    m = the longest match: the most tokens before the next slot that occur in a stream (at most
        ``LONGEST``; fewer than ``MIN_MATCH``: no match, the model alone)
    p_cache(token) = how often ``token`` follows those m tokens, over how often they occur (over
                     every cache with a match that long)
    p(token) = (1 - lam) * p_model(token) + lam * p_cache(token),  lam = WEIGHT * m / (m + HALF)

so a long match (a copied line with the lines before it) nearly decides the next token and a
short one only leans on the model's choice. Matching is blind to indentation (every line break
is alike: copied code moves between depths), and a stream's line break is the hole's end.

Measured on the step-28800 model, beam of 4 (docs/decoding.md, Copying): held-out corpus lines
with the document as the cache, 0.086 -> 0.138 exact (seed 0) and 0.060 -> 0.106 (seed 1);
boltons 26.2.0 (``diffill adapt``'s split, 200 lines), 6 -> 30 with its training files as well.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import numpy as np

SEP = -1  # between streams: no match runs across it
END = -2  # a line break, whatever indentation follows it
# a continuation that followed a lone space in its stream (``fold_spaces``): the space, or the
# token itself where the fill is already past a space (a line's start, "x = |")
SPACED = 1 << 20
WEIGHT, HALF, MIN_MATCH, LONGEST = 0.9, 8.0, 4, 48
# a line bridge: the hole's line is taken from the occurrences of the lines around it when more
# than this share of them agree on it (a tie is left to the beam: seed-0 held-out lines 0.262 ->
# 0.264 against "at least", as in `os.path.join(path, f)` against `os.path.join(path,f)`, once each)
BRIDGE_SHARE = 0.5
BRIDGE_SAMPLE = 4096  # a token cache's places counted for a bridge at most (evenly spread)
# a line bridge from the lines after the hole alone (none before it agree): the next this many
# lines, or else the next two
FOLLOWING = 3
# the document's characters on each side of the hole that are tokenized for it, per request: about
# 5 ms per 10,000 characters (300 held-out holes: 3.4 ms at the median, 22 ms at the 95th percentile)
DOCUMENT_CHARS = 16_000


def fold_spaces(ids: np.ndarray, space: int | None) -> np.ndarray:
    """``ids`` without their lone-space tokens, the token after one marked ``SPACED``. A hole's
    context is matched without them (a prefix's own end may be a lone space that its file would
    join to the next word), so the streams are too: ", rate" is ",", " ", "rate" where the
    vocabulary has no " rate", and "rate" alone where the prefix ends at ", "."""
    if space is None:
        return ids
    lone = ids == space
    if not lone.any():
        return ids
    after = np.zeros_like(lone)
    after[1:] = lone[:-1]
    out = ids.copy()
    out[after & ~lone & (ids >= 0)] |= SPACED
    return out[~lone]


def fold_breaks(ids) -> np.ndarray:
    """``ids`` (canonical: ``END`` for every line break) with each run of line breaks as one. Blank
    lines tokenize one way where a prefix ends ("\n\n", one token) and another inside a file ("\n",
    "\n"), so they are matched as if absent: a hole after a blank line matches its file's place."""
    ids = np.asarray(ids, dtype=np.int64)
    return ids[kept_breaks(ids)]


def kept_breaks(ids: np.ndarray) -> np.ndarray:
    """Which of ``ids`` ``fold_breaks`` keeps: all but a line break right after another."""
    keep = np.ones(len(ids), dtype=bool)
    keep[1:] = (ids[1:] != END) | (ids[:-1] != END)
    return keep


class TokenCache:
    """Token streams, indexed once, to look a fill's left context up in."""

    def __init__(self, line_breaks=frozenset(), unspaced: dict[int, int] | None = None, space: int | None = None):
        self.line_breaks = frozenset(line_breaks)
        self.unspaced = unspaced or {}
        self.space = space  # the token of one space alone
        top = max([*self.line_breaks, *self.unspaced, *self.unspaced.values(), 0]) + 1
        self._table = np.arange(-2, top, dtype=np.int64)  # id + 2 -> the id as matched (SEP, END kept)
        for t, u in self.unspaced.items():
            self._table[t + 2] = u
        self._table[[t + 2 for t in self.line_breaks]] = END
        self._parts: list[np.ndarray] = []
        self._stream: np.ndarray | None = None  # the streams' ids as matched (``canonical``)
        self._next: np.ndarray | None = None  # as predicted: their own ids, line breaks END
        self._where: dict[int, np.ndarray] = {}

    @classmethod
    def for_tokenizer(cls, tok) -> TokenCache:
        """An empty cache for ``tok``'s ids (its line breaks and its tokens' unspaced forms)."""
        return cls(tok.line_break_ids(), tok.unspaced_ids(), tok.backend.token_to_id("\u0120"))

    def extend(self, streams) -> TokenCache:
        """Add token streams (sequences of ids), each one file's or one piece of a file's."""
        for ids in streams:  # an empty one too: streams keep their numbers (``match``'s ``skip``)
            self._parts.append(np.append(np.asarray(ids, dtype=np.int64), SEP))
        self._stream = None
        return self

    def replace(self, stream: int, ids) -> TokenCache:
        """Stream number ``stream``'s tokens replaced by ``ids`` (empty: a file that is gone); the
        index is rebuilt at the next match."""
        self._parts[stream] = np.append(np.asarray(ids, dtype=np.int64), SEP)
        self._stream = None
        return self

    @property
    def streams(self) -> int:
        return len(self._parts)

    def save(self, path) -> None:
        """The streams, as one int32 array with ``SEP`` between them (``.npy``)."""
        np.save(path, np.concatenate(self._parts).astype(np.int32) if self._parts else np.zeros(0, np.int32))

    @classmethod
    def load(cls, path, tok) -> TokenCache:
        """A cache for ``tok``'s ids over the streams ``save`` wrote to ``path``; a file that is
        not such an array raises ValueError."""
        try:
            flat = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"{path}: not a token cache ({e})") from e
        if flat.ndim != 1 or flat.dtype.kind != "i" or (len(flat) and (flat.min() < SEP or flat.max() >= tok.vocab_size)):
            raise ValueError(f"{path}: not a token cache of this tokenizer's ids")
        pieces = np.split(flat, np.flatnonzero(flat == SEP) + 1)  # each ends with SEP, then an empty rest
        return cls.for_tokenizer(tok).extend(piece[:-1] for piece in pieces if len(piece))

    def __len__(self) -> int:
        return sum(len(p) - 1 for p in self._parts)

    def canonical(self, ids) -> np.ndarray:
        """Ids as matched: every line break alike, and spaced tokens as their unspaced form."""
        ids = np.asarray(ids, dtype=np.int64)
        out = ids.copy()
        known = ids < len(self._table) - 2
        out[known] = self._table[ids[known] + 2]
        return out

    def _index(self) -> np.ndarray:
        if self._stream is None:
            nxt = np.concatenate(self._parts) if self._parts else np.array([SEP], dtype=np.int64)
            nxt[np.isin(nxt, np.fromiter(self.line_breaks, dtype=np.int64))] = END
            # the stream each position belongs to (``match``'s ``skip``)
            owner = np.repeat(np.arange(len(self._parts)), [len(p) for p in self._parts]) if self._parts else np.zeros(1, int)
            owner = owner if self.space is None else owner[nxt != self.space]  # as folded below
            nxt = fold_spaces(nxt, self.space)
            kept = kept_breaks(nxt)
            self._owner, nxt = owner[kept], nxt[kept]
            self._next, self._stream = nxt, self.canonical(np.where(nxt >= 0, nxt & ~SPACED, nxt))
            order = np.argsort(self._stream, kind="stable")
            tokens, starts = np.unique(self._stream[order], return_index=True)
            ends = np.append(starts[1:], len(order))
            self._where = {int(t): order[s:e] for t, s, e in zip(tokens, starts, ends)}
        return self._stream

    def match(self, context: list[int], skip: int | None = None) -> tuple[int, Counter]:
        """The longest match of the end of ``context`` (canonical ids, at most ``LONGEST``) and the
        counts of the ids after it; (0, empty) when no token matches. ``skip``: a stream (in the
        order they were added) left out."""
        stream = self._index()
        pos = self._where.get(context[-1]) if context else None
        if pos is None:
            return 0, Counter()
        if skip is not None:
            pos = pos[self._owner[pos] != skip]
        pos = pos[pos + 1 < len(stream)]
        pos = pos[self._next[pos + 1] != SEP]  # a match must have a continuation (not the prefix's own end)
        m = 1
        while m < len(context) and len(pos):
            before = pos - m
            ok = before >= 0
            ok[ok] = stream[before[ok]] == context[-1 - m]
            if not ok.any():
                break
            pos, m = pos[ok], m + 1
        nxt = Counter(self._next[pos + 1].tolist())
        nxt.pop(SEP, None)
        return (m, nxt) if nxt else (0, Counter())

    def _places(self, key: list[int], skip: int | None = None) -> np.ndarray:
        """Where ``key`` (canonical ids) occurs in the streams (but stream ``skip``): the positions
        of its last token."""
        stream = self._index()
        pos = self._where.get(key[-1]) if key else None
        if pos is None:
            return np.zeros(0, dtype=np.int64)
        if skip is not None:
            pos = pos[self._owner[pos] != skip]
        for m in range(1, len(key)):
            before = pos - m
            pos = pos[before >= 0]
            pos = pos[stream[pos - m] == key[-1 - m]]
        return pos

    def bridge(self, context: list[int], after: list[int], limit: int, skip: int | None = None,
               alone: bool = True) -> tuple[list[int], int, int] | None:
        """``bridge``'s answer from these streams (but stream ``skip``, as in ``match``): the
        document's own repeated code (a block of similar statements, the same call sequence in each
        method) bridges its holes."""
        return bridge(Without(self, skip), context, after, limit, alone)

    def lines_between(self, key: list[int], want: list[int], limit: int,
                      skip: int | None = None) -> tuple[Counter, int]:
        """``LineSource.lines_between``; ``skip``: a stream left out, as in ``match``."""
        stream, nxt = self._index(), self._next
        places = _spread(self._places(key, skip))
        tally, counted = Counter(), 0
        for p in places.tolist():
            line = []
            q = p + 1
            # lines longer than ``limit`` vote too (up to ``LONGEST`` tokens): a line that does not
            # fit is no answer
            while q < len(stream) and stream[q] not in (END, SEP) and len(line) <= max(limit, LONGEST):
                line.append(int(nxt[q]))
                q += 1
            if not line or q >= len(stream) or stream[q] != END:
                continue
            if stream[q : q + len(want)].tolist() == want:
                tally[tuple(line)] += 1
                counted += 1
        return tally, counted

    def lines_before(self, following: list[int], limit: int, head: list[int],
                     skip: int | None = None) -> tuple[Counter, int]:
        """``LineSource.lines_before``; ``skip``: a stream left out, as in ``match``."""
        stream, nxt = self._index(), self._next
        places = _spread(self._places(following, skip) - len(following))  # the line break before each
        counts: Counter = Counter()  # the line before each place (past the hole's own: none)
        for q in places.tolist():
            b = q - 1
            while b >= 0 and stream[b] not in (END, SEP):
                b -= 1
            if q > 0 and stream[q] == END and b + 1 < q:
                counts[tuple(nxt[b + 1 : q].tolist())] += 1
        return counts, sum(counts.values())

    def canonical_line(self, line) -> list[int]:
        """A line's ids (``SPACED`` marks kept) as matched."""
        return self.canonical([plain(t) for t in line]).tolist()

    @staticmethod
    def line_ids(line) -> list[int]:
        return list(line)


def _spread(places: np.ndarray) -> np.ndarray:
    """At most ``BRIDGE_SAMPLE`` of ``places``, evenly spread."""
    if len(places) > BRIDGE_SAMPLE:
        places = places[np.linspace(0, len(places) - 1, BRIDGE_SAMPLE).astype(np.int64)]
    return places


class Without:
    """A token cache with one of its streams left out (None: none): the workspace's copy of the
    document being edited, whose text around the hole the document's own cache has as it is now
    (copying the saved copy would only give back what a regenerated selection held)."""

    def __init__(self, cache: TokenCache, stream: int | None):
        self.cache, self.stream = cache, stream
        self.canonical_line, self.line_ids = cache.canonical_line, cache.line_ids

    def match(self, context: list[int]) -> tuple[int, Counter]:
        return self.cache.match(context, skip=self.stream)

    def bridge(self, context: list[int], after: list[int], limit: int,
               alone: bool = True) -> tuple[list[int], int, int] | None:
        return bridge(self, context, after, limit, alone)

    def lines_between(self, key: list[int], want: list[int], limit: int) -> tuple[Counter, int]:
        return self.cache.lines_between(key, want, limit, self.stream)

    def lines_before(self, following: list[int], limit: int, head: list[int]) -> tuple[Counter, int]:
        return self.cache.lines_before(following, limit, head, self.stream)


def prefix_context(prefix: list[int], bos: int | None) -> list[int]:
    """The end of a request's prefix ids that ``continuation`` can use, without ``<bos>``."""
    return [x for x in prefix[-2 * LONGEST :] if x != bos]


def weight(m: int) -> float:
    """The share of the cache's distribution after a match of ``m`` tokens."""
    return WEIGHT * m / (m + HALF)


def continuation(caches, context: list[int]) -> tuple[dict[int, float], float]:
    """After ``context`` (the ids before the next slot, the last one last): the distribution of
    what follows its longest match in ``caches`` (``END`` for a line break) and the weight to mix
    it in with; ({}, 0.0) when nothing matches ``MIN_MATCH`` tokens."""
    if not caches or len(context) < MIN_MATCH:
        return {}, 0.0
    space = caches[0].space
    ctx = caches[0].canonical(context[-2 * LONGEST :]).tolist()
    # a prefix that ends in a space ("x = |"): in a file's tokens that space starts the next token,
    # so a lone space is left out of the context (and the fill's first token comes without one)
    unspace = ctx[-1] in (END, space)
    ctx = fold_breaks([t for t in ctx if t != space]).tolist()[-LONGEST:]
    best, counts = 0, Counter()
    for cache in caches:
        m, nxt = cache.match(ctx)
        if m > best:
            best, counts = m, nxt
        elif m == best and m:
            counts += nxt
    if best < MIN_MATCH:
        return {}, 0.0
    if unspace:  # the fill starts after the indentation, or after the prefix's space
        counts = _pool((caches[0].unspaced.get(plain(t), plain(t)), c) for t, c in counts.items())
    else:  # a token that followed a lone space: the space first
        counts = _pool((space if t > 0 and t & SPACED else t, c) for t, c in counts.items())
    total = sum(counts.values())
    return {t: c / total for t, c in counts.items()}, weight(best)


@dataclass
class Bridged:
    """A line bridge's answer: the line's ids and the agreement behind it."""

    line: list[int]
    agreement: tuple[int, int]  # places that have this line, places counted


def line_bridge(caches, context: list[int], suffix: list[int], limit: int, alone: bool = True) -> list[int] | None:
    """``bridged_line``'s line, or None."""
    found = bridged_line(caches, context, suffix, limit, alone)
    return found.line if found is not None else None


def bridged_line(caches, context: list[int], suffix: list[int], limit: int, alone: bool = True) -> Bridged | None:
    """A one-line hole's whole fill from a cache that bridges lines (a library index,
    ``LibraryIndex.bridge``; a token cache, ``TokenCache.bridge``): the line its code has between
    the line before the hole (with the hole line's start) and the line after it, or else before the
    next lines alone, when most of the places agree; None otherwise. The document's own cache (``caches[0]``) is asked last:
    six draws of held-out lines, 880 -> 889 exact of 3,000 either way, 10 gained and 1 lost asked
    last, 14 and 5 asked first. ``context``: the ids before the hole; ``suffix``: after it; ``alone``:
    whether the next lines alone may place the line (not where the hole may be several lines: the
    line before the next lines would be the last of them)."""
    bridges = [c for c in (*caches[1:], caches[0]) if hasattr(c, "bridge")]
    if not bridges:
        return None
    space = caches[0].space
    raw = caches[0].canonical(context[-2 * LONGEST :]).tolist()
    ctx = fold_breaks([t for t in raw if t != space]).tolist()
    after = fold_breaks([t for t in caches[0].canonical(suffix).tolist() if t != space]).tolist()  # as the library folds them
    for cache in bridges:
        found = cache.bridge(ctx, after, limit, alone=alone)
        if found is None:
            continue
        first, *rest = found[0]
        # the hole starts after the indentation or a space ("x = |"): its first token comes without one
        line = [caches[0].unspaced.get(plain(first), plain(first))] if raw and raw[-1] in (END, space) else [first]
        line = [x for t in line + rest for x in ((space, plain(t)) if t > 0 and t & SPACED else (t,))]
        return Bridged(line, (found[1], found[2])) if len(line) <= limit else None
    return None


class LineSource(Protocol):
    """Code that a hole's line can be bridged from (a token cache, a library index): the lines it
    has at the places of some canonical ids, in its own representation, which it maps to ids."""

    def lines_between(self, key: list[int], want: list[int], limit: int) -> tuple[Counter, int]:
        """Where ``key`` occurs followed by a line and then ``want`` (the line break and the next
        line): each such line (up to its line break, not included), counted; and how many places
        have one. Lines longer than ``limit`` are counted too, as far as the source reads them."""
        ...

    def lines_before(self, following: list[int], limit: int, head: list[int]) -> tuple[Counter, int]:
        """Where ``following`` (the next lines) occurs after a line break: the line before it,
        counted; and how many places have one (``head``: the hole line's start, which the lines
        read must reach past)."""
        ...

    def canonical_line(self, line) -> list[int]:
        """A counted line's tokens as canonical ids."""
        ...

    def line_ids(self, line) -> list[int]:
        """A counted line's tokens as ids (``END`` for a line break, ``SPACED`` marks kept)."""
        ...


def bridge(source: LineSource, context: list[int], after: list[int], limit: int,
           alone: bool = True) -> tuple[list[int], int, int] | None:
    """The line between the end of ``context`` and ``after`` (canonical ids: the hole's prefix,
    then its suffix, which must start with a line break) as ``source`` writes it between the same
    lines: where the two lines before (or else the one line before; with the start of the hole's
    own) and the next line occur around one line, the line more than ``BRIDGE_SHARE`` of those
    places have. Else, from the next lines alone: where the next ``FOLLOWING`` lines (or else the
    next two) occur, the line before them that more than ``BRIDGE_SHARE`` of those places have,
    when it starts with the hole line's start (``alone``: whether to). Returns its ids (``END`` not
    included; at most ``limit`` tokens; ``SPACED`` marks kept), how many places have it and how
    many places were counted; None when there is no such line."""
    found_keys = bridge_keys(context, after)
    if found_keys is None:
        return None
    keys, stop = found_keys
    # first with the two lines before: fewer places, more of them counted
    for key in keys:
        found = agreed(*source.lines_between(context[key:], after[:stop], limit), limit)
        if found is not None:
            return source.line_ids(found[0]), found[1], found[2]
    if not alone:
        return None
    head = context[len(context) - context[::-1].index(END):] if END in context else context
    for lines in range(FOLLOWING, 1, -1):
        following = next_lines(after, lines)
        if following is None:
            continue
        found = agreed_rest(*source.lines_before(following, limit, head), head, limit, source.canonical_line)
        if found is not None:
            return source.line_ids(found[0]), found[1], found[2]
    return None


def bridge_keys(context: list[int], after: list[int]) -> tuple[list[int], int] | None:
    """Where a bridge's keys start in ``context`` (the ``END`` before the two lines before the
    hole, then before the one line before: fewer places first) and how many of ``after`` make up
    the next line (``line_end``); None when either side is too short or ``after`` does not start
    with a line break."""
    start = line_start(context)
    if start is None or not after or after[0] != END:
        return None
    stop = line_end(after)
    if stop is None:
        return None
    longer = line_start(context[: start + 1])
    return ([] if longer is None else [longer]) + [start], stop


def line_start(ids: list[int]) -> int | None:
    """The index of the ``END`` that starts the line before the last line of ``ids`` (going back
    past blank lines); None when ``ids`` do not reach back that far."""
    i = len(ids) - 1
    while i >= 0 and ids[i] != END:  # the last line
        i -= 1
    while i >= 0 and ids[i] == END:  # blank lines
        i -= 1
    if i < 0:
        return None
    while i >= 0 and ids[i] != END:  # the line before
        i -= 1
    return i if i >= 0 else None


def line_end(after: list[int]) -> int | None:
    """How many of ``after`` (starting with the hole line's ``END``) make up the line break, blank
    lines and the next line up to its own ``END`` (included); None when it ends first."""
    i = 0
    while i < len(after) and after[i] == END:
        i += 1
    if i == len(after):
        return None
    while i < len(after) and after[i] != END:
        if after[i] == SEP:
            return None
        i += 1
    return i + 1 if i < len(after) else None


def next_lines(after: list[int], lines: int) -> list[int] | None:
    """The first ``lines`` lines of ``after`` (which starts with the hole line's ``END``) past the
    blank lines after the hole, each with its ``END``; None when ``after`` ends first."""
    i = 0
    while i < len(after) and after[i] == END:
        i += 1
    begin, seen = i, 0
    while i < len(after):
        if after[i] == SEP:
            return None
        if after[i] == END and after[i - 1] != END:
            seen += 1
            if seen == lines:
                return after[begin : i + 1]
        i += 1
    return None


def agreed(tally: Counter, counted: int, limit: float) -> tuple[tuple[int, ...], int, int] | None:
    """A line bridge's answer from the lines found at ``counted`` places (``tally``): the most
    common one when more than ``BRIDGE_SHARE`` of the places have it and it fits in ``limit``
    tokens, with how many have it and ``counted``; None otherwise."""
    if not tally:
        return None
    line, count = tally.most_common(1)[0]
    if count <= BRIDGE_SHARE * counted or len(line) > limit:
        return None
    return line, count, counted


def agreed_rest(tally: Counter, counted: int, head: list[int], limit: int,
                canonical) -> tuple[list[int], int, int] | None:
    """``agreed`` for the line before the next lines (a bridge from them alone): the most common
    line, when more than ``BRIDGE_SHARE`` of the ``counted`` places have it and it starts with
    ``head`` (the hole line's start, canonical ids; ``canonical`` maps a line's tokens to such):
    the rest of it (1 to ``limit`` tokens), how many places have it and ``counted``."""
    found = agreed(tally, counted, math.inf)
    if found is None:
        return None
    line, count, _ = found
    if len(line) < len(head) or list(canonical(line[: len(head)])) != list(head):
        return None
    rest = list(line[len(head):])
    return (rest, count, counted) if 0 < len(rest) <= limit else None


def plain(token: int) -> int:
    """A continuation's token without its ``SPACED`` mark."""
    return token & ~SPACED if token > 0 else token


def _pool(pairs) -> Counter:
    out: Counter = Counter()
    for t, c in pairs:
        out[t] += c
    return out


def sure_run(caches, context: list[int], limit: int) -> tuple[list[int], bool]:
    """The tokens ``caches`` continue ``context`` with while they are sure (one continuation, after
    a match of at least ``HALF`` tokens), up to ``limit`` tokens or a line break (not included);
    and whether a line break ended it."""
    run: list[int] = []
    while len(run) < limit:
        dist, lam = continuation(caches, context + run)
        if len(dist) != 1 or lam < weight(HALF):
            return run, False
        (token,) = dist
        if token == END:
            return run, True
        run.append(token)
    return run, False


def mix(logp, dist: dict[int, float], lam: float, end: int | None):
    """``logp`` (a row of next-token log-probabilities, a torch tensor) mixed with ``dist``, whose
    ``END`` becomes ``end`` (None: left out, the rest renormalised); forbidden tokens (-inf) stay so."""
    import torch

    if end is None:
        dist = {t: p for t, p in dist.items() if t != END}
        total = sum(dist.values())
        dist = {t: p / total for t, p in dist.items()}
    if not dist:
        return logp
    p = logp.exp() * (1 - lam)
    ids = torch.tensor([end if t == END else t for t in dist])
    p.index_add_(0, ids, torch.tensor(list(dist.values()), dtype=p.dtype) * lam)
    return torch.where(logp == -math.inf, logp, p.log())


def hole_caches(tok, prefix: str, suffix: str, more=()) -> tuple[TokenCache, ...]:
    """The caches a hole's fill is mixed with: the document around it (the ``DOCUMENT_CHARS`` on
    each side, two streams), then ``more`` (other open documents', a repository's; None entries
    skipped)."""
    document = TokenCache.for_tokenizer(tok)
    prefix, suffix = prefix[-DOCUMENT_CHARS:], suffix[:DOCUMENT_CHARS]
    before = tok.encode(prefix)
    if before and before[-1] == document.space:  # ``continuation`` leaves it out: no match of its own
        before = before[:-1]
    document.extend([before, tok.encode(suffix)])
    return (document, *(c for c in more if c is not None))
