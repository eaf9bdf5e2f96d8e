"""A library index: copying from a large body of code (tens of millions of tokens) by suffix array.

A ``TokenCache`` (model/ngram.py) finds a context by scanning every position of its last token:
fine for a document or a repository, far too slow for the code the model was trained on. A
``LibraryIndex`` holds the same kind of token streams, sorted once into a suffix array, as
infini-gram does, so that the longest match of a fill's left context costs a few binary searches.

The suffixes are read backwards: entry ``j`` of the array stands for the tokens ending at position
``j`` (``j``, ``j - 1``, ``j - 2``, ...), sorted on their first ``DEPTH`` tokens, so that matching
the end of a context is narrowing one range a token at a time, longest match first. What follows a
match is the token after ``j``.

On disk (a folder): ``tokens.npy`` (uint16 codes: a line break 0, a stream's end 1, token ``t``
``t + 2``), ``suffixes.npy`` (uint32 positions), ``buckets.npy`` (where each first token's range
starts) and ``index.json`` (the tokenizer's hash, the sources, how many files and tokens). About 6
bytes a token; built by ``diffill index``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from diffill.model.ngram import END, LONGEST, SEP, SPACED, bridge, fold_spaces, kept_breaks

INDEX_FORMAT = 3  # the index's layout; 3: runs of line breaks folded into one (``model.ngram.fold_breaks``)
DEPTH = 64  # suffixes are sorted on this many tokens: more than LONGEST
SAMPLE = 4096  # continuations counted per match at most (evenly spread over its occurrences)
_SCAN = 2048  # ranges at most this long are narrowed with one vectorised search
# the library's shortest match worth copying from: a few tokens of boilerplate ('"""', "return")
# found among millions say little the model did not learn, and steer a model that is unsure.
# Seed-0 / seed-1 held-out lines: 0.254 / 0.194 with 4 (the other caches' minimum), 0.260 / 0.198
# with 8, 0.262 / 0.198 with 12, 0.262 / 0.190 with 16
MIN_MATCH = 12
_END_CODE, _SEP_CODE = END + 2, SEP + 2
_SPACED_CODE = 1 << 14  # a code's mark for ``SPACED`` (codes of a vocabulary under 16,382 tokens)


def tokenizer_hash(tok) -> str:
    """A hash of the tokenizer's vocabulary: an index is only valid for the ids it was built with."""
    vocab = sorted(tok.backend.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


def default_folder(tok) -> Path | None:
    """Where ``diffill index`` puts the index and the engine looks for it: ``$DIFFILL_LIBRARY_INDEX``
    ("none": nowhere), else the user's cache folder, one index per tokenizer."""
    given = os.environ.get("DIFFILL_LIBRARY_INDEX")
    if given:
        return None if given == "none" else Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "diffill" / "library-index" / tokenizer_hash(tok)


def _codes(tok, streams) -> tuple[np.ndarray, int]:
    """Streams of ids as one uint16 array of codes, ``LONGEST`` stream ends before the first, one
    after each stream; and how many streams were not empty. Runs of line breaks are one
    (``model.ngram.fold_breaks``); lone spaces are folded into the next token's code
    (``model.ngram.fold_spaces``)."""
    if tok.vocab_size + 2 > _SPACED_CODE:
        raise ValueError(f"a library index holds a vocabulary of at most {_SPACED_CODE - 2} tokens")
    line_breaks = np.fromiter(tok.line_break_ids(), dtype=np.int64)
    space = tok.backend.token_to_id("\u0120")
    parts = [np.full(LONGEST, _SEP_CODE, dtype=np.uint16)]
    for ids in streams:
        ids = fold_spaces(np.asarray(ids, dtype=np.int64), space)
        if len(ids):
            spaced = (ids & SPACED) > 0
            base = ids & ~SPACED
            codes = base + 2
            codes[spaced] |= _SPACED_CODE
            codes[np.isin(base, line_breaks)] = _END_CODE
            codes = codes[kept_breaks(np.where(codes == _END_CODE, END, codes))]
            parts.append(np.append(codes, _SEP_CODE).astype(np.uint16))
    return np.concatenate(parts), len(parts) - 1


def _ids(codes: np.ndarray) -> list[int]:
    """Codes as ids (``END`` for a line break, ``SPACED`` marks kept)."""
    spaced = (codes & _SPACED_CODE) > 0
    ids = (codes & ~_SPACED_CODE).astype(np.int64) - 2
    return np.where(spaced & (ids >= 0), ids | SPACED, ids).tolist()


def _canonical_table(tok) -> np.ndarray:
    """Code -> the code as matched (a token's unspaced form, without its ``SPACED`` mark), as
    ``TokenCache.canonical`` does."""
    table = np.arange(tok.vocab_size + 2, dtype=np.uint16)
    for spaced, unspaced in tok.unspaced_ids().items():
        table[spaced + 2] = unspaced + 2
    full = np.zeros(2 * _SPACED_CODE, dtype=np.uint16)
    full[: len(table)] = table
    full[_SPACED_CODE : _SPACED_CODE + len(table)] = table
    return full


def backward_suffix_array(canon: np.ndarray, depth: int = DEPTH) -> np.ndarray:
    """Positions ``j`` sorted on ``canon[j], canon[j - 1], ...`` (the first ``depth`` of them;
    before position 0, lower than any code), by prefix doubling. About 30 bytes a position at the
    peak (57.6M positions: 1.7 GB, 2 minutes on 2 cores)."""
    n = len(canon)
    rank = np.unique(canon, return_inverse=True)[1].astype(np.int32).reshape(-1) + 1  # dense: 1..n
    order = np.argsort(rank, kind="stable")
    k = 1
    while k < depth:
        key = rank.astype(np.int64) * (n + 2)
        key[k:] += rank[:-k]
        order = np.argsort(key, kind="stable")
        key = key[order]
        new = np.empty(n, dtype=np.int32)
        new[order] = np.concatenate(([1], 1 + np.cumsum(key[1:] != key[:-1], dtype=np.int32)))
        del key
        rank = new
        k *= 2
        if rank.max() == n:  # every position already has its own rank
            break
    return order


def build_index(tok, streams, folder: str | Path, sources: list[str]) -> dict:
    """Sort ``streams`` (sequences of ``tok``'s ids, one a file; any iterable) into a library index
    in ``folder``."""
    folder = Path(folder)
    codes, files = _codes(tok, streams)
    if not files:
        raise ValueError("no tokens to index")
    if len(codes) >= 2**32:
        raise ValueError("a library index holds fewer than 2**32 tokens")
    canon = _canonical_table(tok)[codes]
    suffixes = backward_suffix_array(canon).astype(np.uint32)  # (n < 2**32, checked above)
    buckets = np.searchsorted(canon[suffixes], np.arange(tok.vocab_size + 3)).astype(np.int64)
    meta = {"version": INDEX_FORMAT, "tokenizer": tokenizer_hash(tok), "sources": sources, "files": files,
            "tokens": int(len(codes) - LONGEST - files)}
    folder.parent.mkdir(parents=True, exist_ok=True)
    # written beside, then swapped in: a reader never sees half of one index and half of another
    fresh = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    fresh.chmod(0o755)
    try:
        np.save(fresh / "tokens.npy", codes)
        np.save(fresh / "suffixes.npy", suffixes)
        np.save(fresh / "buckets.npy", buckets)
        (fresh / "index.json").write_text(json.dumps(meta, indent=2))
        if folder.exists():
            old = folder.with_name(fresh.name + "-old")
            folder.rename(old)
            fresh.rename(folder)
            shutil.rmtree(old)
        else:
            fresh.rename(folder)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return meta


class LibraryIndex:
    """A library index loaded (memory-mapped) for ``tok``; ``match`` as ``TokenCache.match``."""

    def __init__(self, folder: str | Path, tok):
        folder = Path(folder)
        try:
            self.meta = json.loads((folder / "index.json").read_text())
            # plain ndarray views of the mapped files: np.memmap's Python-level indexing cost more
            # than the lookups themselves in the binary searches of ``match``
            self._tokens = np.asarray(np.load(folder / "tokens.npy", mmap_mode="r"))
            self._suffixes = np.asarray(np.load(folder / "suffixes.npy", mmap_mode="r"))
            self._buckets = np.load(folder / "buckets.npy")
        except (OSError, ValueError, json.JSONDecodeError) as e:
            raise ValueError(f"{folder}: not a library index ({e}); rebuild it with `diffill index`") from e
        if self.meta.get("version") != INDEX_FORMAT or self.meta.get("tokenizer") != tokenizer_hash(tok):
            raise ValueError(f"{folder}: the library index was built for another tokenizer or version; "
                             "rebuild it with `diffill index`")
        if (self._tokens.dtype != np.uint16 or self._suffixes.dtype != np.uint32
                or len(self._suffixes) != len(self._tokens) or len(self._buckets) != tok.vocab_size + 3
                or not self._consistent()):
            raise ValueError(f"{folder}: the library index's arrays do not fit together; rebuild it")
        self._canon = _canonical_table(tok)
        self.folder = folder

    def _consistent(self, sample: int = 1024) -> bool:
        """Whether the buckets rise from 0 to the end of the array and an even sample of the
        suffixes points into the tokens (a damaged index fails here, not in the middle of a fill)."""
        buckets, n = self._buckets, len(self._suffixes)
        if len(buckets) == 0 or buckets[0] != 0 or buckets[-1] != n or (np.diff(buckets) < 0).any():
            return False
        picks = np.linspace(0, n - 1, min(n, sample)).astype(np.int64)
        return n == 0 or int(self._suffixes[picks].max()) < n

    def __len__(self) -> int:
        return int(self.meta["tokens"])

    def _code(self, i: int, k: int) -> int:
        return int(self._canon[self._tokens[int(self._suffixes[i]) - k]])

    def _narrow(self, lo: int, hi: int, k: int, code: int) -> tuple[int, int]:
        """The part of the range [lo, hi) whose suffixes have ``code`` as their token ``k``."""
        if hi - lo <= _SCAN:
            keys = self._canon[self._tokens[self._suffixes[lo:hi].astype(np.int64) - k]]
            return lo + int(np.searchsorted(keys, code, "left")), lo + int(np.searchsorted(keys, code, "right"))
        a, b = lo, hi
        while a < b:  # the first entry with a code >= ``code``
            mid = (a + b) // 2
            if self._code(mid, k) < code:
                a = mid + 1
            else:
                b = mid
        c, b = a, hi
        while c < b:  # the first entry with a code > ``code``
            mid = (c + b) // 2
            if self._code(mid, k) <= code:
                c = mid + 1
            else:
                b = mid
        return a, c

    def match(self, context: list[int]) -> tuple[int, Counter]:
        """The longest match of the end of ``context`` (canonical ids, at most ``LONGEST``) that
        has a continuation, and the counts of the ids after it (``END`` for a line break; over at
        most ``SAMPLE`` of its occurrences); (0, empty) when fewer than ``MIN_MATCH`` tokens match."""
        query = [t + 2 for t in reversed(context[-LONGEST:])]
        if not query or not 0 <= query[0] < len(self._buckets) - 1:
            return 0, Counter()
        ranges = [(int(self._buckets[query[0]]), int(self._buckets[query[0] + 1]))]
        for k, code in enumerate(query[1:], start=1):
            lo, hi = self._narrow(*ranges[-1], k, code)
            if lo == hi:
                break
            ranges.append((lo, hi))
        for m in range(len(ranges), MIN_MATCH - 1, -1):
            lo, hi = ranges[m - 1]
            if lo == hi:
                continue
            picks = np.arange(lo, hi) if hi - lo <= SAMPLE else np.linspace(lo, hi - 1, SAMPLE).astype(np.int64)
            after = self._tokens[self._suffixes[picks].astype(np.int64) + 1].astype(np.int64)
            after = after[after != _SEP_CODE]
            if len(after):
                values, counts = np.unique(after, return_counts=True)
                return m, Counter(dict(zip(_ids(values), counts.tolist())))
        return 0, Counter()

    def _range(self, query: list[int]) -> tuple[int, int] | None:
        """The range of suffixes whose first tokens are ``query`` (codes, the last token first)."""
        if not query or not 0 <= query[0] < len(self._buckets) - 1 or len(query) > DEPTH:
            return None
        lo, hi = int(self._buckets[query[0]]), int(self._buckets[query[0] + 1])
        for k, code in enumerate(query[1:], start=1):
            if lo == hi:
                return None
            lo, hi = self._narrow(lo, hi, k, code)
        return (lo, hi) if lo < hi else None

    def bridge(self, context: list[int], after: list[int], limit: int,
               alone: bool = True) -> tuple[list[int], int, int] | None:
        """``model.ngram.bridge``'s answer from the library."""
        return bridge(self, context, after, limit, alone)

    def _places(self, key: list[int]) -> np.ndarray | None:
        """At most ``SAMPLE`` suffixes (evenly spread) that start with ``key`` (canonical ids), where
        the index can narrow to them (``DEPTH`` tokens at most); None where it has none."""
        found = self._range([t + 2 for t in reversed(key)]) if len(key) <= DEPTH else None
        if found is None:
            return None
        lo, hi = found
        return np.arange(lo, hi) if hi - lo <= SAMPLE else np.linspace(lo, hi - 1, SAMPLE).astype(np.int64)

    def lines_between(self, key: list[int], want: list[int], limit: int) -> tuple[Counter, int]:
        """``model.ngram.LineSource.lines_between``: lines as codes."""
        picks = self._places(key)
        if picks is None:
            return Counter(), 0
        stop = len(want)
        longest = max(limit, DEPTH)  # longer lines vote too: a line that does not fit is no answer
        width = longest + 1 + stop
        window = self._suffixes[picks].astype(np.int64)[:, None] + np.arange(1, width + 1)
        window = self._tokens[np.minimum(window, len(self._tokens) - 1)].astype(np.int64)
        canon = self._canon[window].astype(np.int64) - 2
        # each place's line: up to its first line break (a stream's end, or none within reach: no line)
        stops = window[:, : longest + 1] <= _SEP_CODE
        n = stops.argmax(1)
        rows = np.arange(len(window))
        ok = stops[rows, n] & (window[rows, n] == _END_CODE) & (n > 0)
        # ... followed by the lines ``want`` holds
        after = canon[rows[:, None], n[:, None] + np.arange(stop)]
        ok &= (after == np.asarray(want, dtype=np.int64)).all(1)
        return Counter(tuple(window[r, : n[r]].tolist()) for r in np.flatnonzero(ok)), int(ok.sum())

    def lines_before(self, following: list[int], limit: int, head: list[int]) -> tuple[Counter, int]:
        """``model.ngram.LineSource.lines_before``: lines as codes (the index holds no blank lines:
        one line break comes between a line and the next lines)."""
        picks = self._places(following)
        if picks is None:
            return Counter(), 0
        width = max(limit, DEPTH) + len(head) + 2
        first = self._suffixes[picks].astype(np.int64) - len(following) + 1  # where each place's next lines start
        window = self._tokens[np.maximum(first[:, None] - np.arange(1, width + 1), 0)].astype(np.int64)  # backwards
        rows = np.arange(len(window))
        stops = window[:, 1:] <= _SEP_CODE  # the line's own start: the line break (or stream end) before it
        n = stops.argmax(1)  # the line's length
        ok = (window[:, 0] == _END_CODE) & stops[rows, n] & (n > 0)
        return Counter(tuple(window[r, 1 : 1 + n[r]][::-1].tolist()) for r in np.flatnonzero(ok)), int(ok.sum())

    def canonical_line(self, codes) -> list[int]:
        return (self._canon[np.asarray(codes, dtype=np.int64)] - 2).tolist()

    @staticmethod
    def line_ids(codes) -> list[int]:
        return _ids(np.asarray(codes, dtype=np.int64))
