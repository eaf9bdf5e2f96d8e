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

from model.ngram import END, LONGEST, SEP

VERSION = 1
DEPTH = 64  # suffixes are sorted on this many tokens: more than LONGEST
SAMPLE = 4096  # continuations counted per match at most (evenly spread over its occurrences)
_SCAN = 2048  # ranges at most this long are narrowed with one vectorised search
_END_CODE, _SEP_CODE = END + 2, SEP + 2


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


def _codes(tok, streams) -> np.ndarray:
    """Streams of ids as one uint16 array of codes, ``LONGEST`` stream ends before the first, one
    after each stream."""
    line_breaks = np.fromiter(tok.line_break_ids(), dtype=np.int64)
    parts = [np.full(LONGEST, _SEP_CODE, dtype=np.uint16)]
    for ids in streams:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids):
            codes = ids + 2
            codes[np.isin(ids, line_breaks)] = _END_CODE
            parts.append(np.append(codes, _SEP_CODE).astype(np.uint16))
    return np.concatenate(parts)


def _canonical_table(tok) -> np.ndarray:
    """Code -> the code as matched (a token's unspaced form), as ``TokenCache.canonical`` does."""
    table = np.arange(tok.vocab_size + 2, dtype=np.uint16)
    for spaced, unspaced in tok.unspaced_ids().items():
        table[spaced + 2] = unspaced + 2
    return table


def backward_suffix_array(canon: np.ndarray, depth: int = DEPTH) -> np.ndarray:
    """Positions ``j`` sorted on ``canon[j], canon[j - 1], ...`` (the first ``depth`` of them;
    before position 0, lower than any code), by prefix doubling."""
    n = len(canon)
    rank = np.unique(canon, return_inverse=True)[1].astype(np.int64).reshape(-1) + 1  # dense: 1..n
    order = np.argsort(rank, kind="stable")
    k = 1
    while k < depth:
        before = np.zeros(n, dtype=np.int64)
        before[k:] = rank[:-k]
        key = rank * (n + 2) + before
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        new = np.empty(n, dtype=np.int64)
        new[order] = np.concatenate(([1], 1 + np.cumsum(sorted_key[1:] != sorted_key[:-1])))
        rank = new
        k *= 2
        if rank.max() == n:  # every position already has its own rank
            break
    return order


def build_index(tok, streams, folder: str | Path, sources: list[str], files: int) -> dict:
    """Sort ``streams`` (sequences of ``tok``'s ids, one a file) into a library index in ``folder``."""
    folder = Path(folder)
    codes = _codes(tok, streams)
    if len(codes) >= 2**32:
        raise ValueError("a library index holds fewer than 2**32 tokens")
    canon = _canonical_table(tok)[codes]
    suffixes = backward_suffix_array(canon).astype(np.uint32)
    buckets = np.searchsorted(canon[suffixes], np.arange(len(_canonical_table(tok)) + 1)).astype(np.int64)
    meta = {"version": VERSION, "tokenizer": tokenizer_hash(tok), "sources": sources, "files": files,
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
            self._tokens = np.load(folder / "tokens.npy", mmap_mode="r")
            self._suffixes = np.load(folder / "suffixes.npy", mmap_mode="r")
            self._buckets = np.load(folder / "buckets.npy")
        except (OSError, ValueError, json.JSONDecodeError) as e:
            raise ValueError(f"{folder}: not a library index ({e}); rebuild it with `diffill index`") from e
        if self.meta.get("version") != VERSION or self.meta.get("tokenizer") != tokenizer_hash(tok):
            raise ValueError(f"{folder}: the library index was built for another tokenizer or version; "
                             "rebuild it with `diffill index`")
        if (self._tokens.dtype != np.uint16 or self._suffixes.dtype != np.uint32
                or len(self._suffixes) != len(self._tokens) or len(self._buckets) != tok.vocab_size + 3):
            raise ValueError(f"{folder}: the library index's arrays do not fit together; rebuild it")
        self._canon = _canonical_table(tok)
        self.folder = folder

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
        most ``SAMPLE`` of its occurrences); (0, empty) when no token matches."""
        query = [t + 2 for t in reversed(context[-LONGEST:])]
        if not query or not 0 <= query[0] < len(self._buckets) - 1:
            return 0, Counter()
        ranges = [(int(self._buckets[query[0]]), int(self._buckets[query[0] + 1]))]
        for k, code in enumerate(query[1:], start=1):
            lo, hi = self._narrow(*ranges[-1], k, code)
            if lo == hi:
                break
            ranges.append((lo, hi))
        for m in range(len(ranges), 0, -1):
            lo, hi = ranges[m - 1]
            if lo == hi:
                continue
            picks = np.arange(lo, hi) if hi - lo <= SAMPLE else np.linspace(lo, hi - 1, SAMPLE).astype(np.int64)
            after = self._tokens[self._suffixes[picks].astype(np.int64) + 1].astype(np.int64)
            after = after[after != _SEP_CODE]
            if len(after):
                values, counts = np.unique(after, return_counts=True)
                return m, Counter({int(v) - 2: int(c) for v, c in zip(values, counts)})
        return 0, Counter()
