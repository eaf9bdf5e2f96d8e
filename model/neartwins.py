"""Near-twin files: other versions and vendored copies of one file, found by shared lines.

Two files are near-twins when either

- the Jaccard similarity of their sets of line shingles (``shingle_lines`` consecutive stripped,
  non-blank lines, hashed) is at least ``jaccard``, or
- they have the same file name and the file tested shares more than ``same_name_share`` of its
  distinct stripped, non-blank lines with the other.

Candidates come from an inverted index of hashes with prefix filtering: a file that must share at
least m of a set's n hashes shares at least one of any n - m + 1 of them, so only the rarest
n - m + 1 are looked up; every candidate is then checked exactly. No pair is missed.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import asdict, dataclass

import numpy as np

NAME_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier folding a file name's hash into a line's


@dataclass(frozen=True)
class TwinRule:
    shingle_lines: int = 3
    jaccard: float = 0.5
    same_name_share: float = 0.5

    def as_dict(self) -> dict:
        return asdict(self)


def _hash64(text: str) -> int:
    """Python's own string hash (64 bits, fast). It is salted per process, so hashes are only
    compared within one process; results (which files are twins) do not depend on the salt."""
    return hash(text) & 0xFFFF_FFFF_FFFF_FFFF


def line_hashes(text: str) -> np.ndarray:
    """A 64-bit hash of each stripped, non-blank line of ``text``, in order."""
    return np.array([hash(s) for s in map(str.strip, text.splitlines()) if s], dtype=np.int64).view(np.uint64)


def shingles(lines: np.ndarray, k: int) -> np.ndarray:
    """The distinct hashes of every run of ``k`` consecutive lines (of all the lines when there are
    fewer than ``k``), sorted."""
    if len(lines) == 0:
        return lines
    k = min(k, len(lines))
    n = len(lines) - k + 1
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as a hash should
        h = np.zeros(n, dtype=np.uint64)
        for j in range(k):
            h = h * np.uint64(1_000_003) + lines[j : j + n]
    return np.unique(h)


@dataclass
class _Signature:
    shingles: np.ndarray  # sorted distinct shingle hashes
    lines: np.ndarray  # sorted distinct line hashes
    name: str


def signature(path: str, text: str, rule: TwinRule) -> _Signature:
    lines = line_hashes(text)
    return _Signature(shingles(lines, rule.shingle_lines), np.unique(lines), posixpath.basename(path))


def _name_keyed(sig: _Signature) -> np.ndarray:
    """Line hashes keyed by the file name, so that postings only hold files of that name."""
    with np.errstate(over="ignore"):
        return np.unique(sig.lines * NAME_MIX + np.uint64(_hash64(sig.name)))


class _Postings:
    """Sorted (hash, file) pairs: the files holding a hash, and how many do."""

    def __init__(self, sets: list[np.ndarray]):
        owners = np.repeat(np.arange(len(sets), dtype=np.int64), [len(s) for s in sets])
        keys = np.concatenate(sets) if sets else np.zeros(0, dtype=np.uint64)
        order = np.argsort(keys, kind="stable")
        self.keys, self.owners = keys[order], owners[order]

    def candidates(self, query: np.ndarray, min_overlap: int) -> np.ndarray:
        """The files that may share ``min_overlap`` of ``query``'s hashes (a superset of them)."""
        if len(query) == 0 or min_overlap > len(query):
            return np.zeros(0, dtype=np.int64)
        lo = np.searchsorted(self.keys, query, side="left")
        hi = np.searchsorted(self.keys, query, side="right")
        probe = np.argsort(hi - lo, kind="stable")[: len(query) - max(1, min_overlap) + 1]
        found = [self.owners[lo[i] : hi[i]] for i in probe if hi[i] > lo[i]]
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)


def _overlap(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.intersect1d(a, b, assume_unique=True).size)


class TwinIndex:
    """Near-twin look-ups against a fixed list of files (``(path, text)`` pairs)."""

    def __init__(self, files: list[tuple[str, str]], rule: TwinRule = TwinRule()):
        self.rule = rule
        self.sigs = [signature(p, t, rule) for p, t in files]
        self._shingles = _Postings([s.shingles for s in self.sigs])
        self._named = _Postings([_name_keyed(s) for s in self.sigs])

    def twin_of(self, sig: _Signature, among: np.ndarray | None = None) -> int | None:
        """The index of a file that ``sig``'s file is a near-twin of (restricted to the files that
        ``among``, a boolean mask, allows), or None."""
        r = self.rule
        a = sig.shingles
        if len(a):
            # J = I / (|A| + |B| - I) >= j needs I >= j * |A| (at best B lies inside A)
            for c in self._shingles.candidates(a, math.ceil(r.jaccard * len(a))):
                if among is not None and not among[c]:
                    continue
                b = self.sigs[c].shingles
                inter = _overlap(a, b)
                if inter >= r.jaccard * (len(a) + len(b) - inter):
                    return int(c)
        if len(sig.lines):
            need = math.floor(r.same_name_share * len(sig.lines)) + 1  # more than that share
            for c in self._named.candidates(_name_keyed(sig), need):
                if among is not None and not among[c]:
                    continue
                other = self.sigs[c]
                if other.name == sig.name and _overlap(sig.lines, other.lines) >= need:
                    return int(c)
        return None


def twins_against(files: list[tuple[str, str]], reference: list[tuple[str, str]],
                  rule: TwinRule = TwinRule()) -> dict[int, int]:
    """{index in ``files``: index of its near-twin in ``reference``} for the files that have one."""
    index = TwinIndex(reference, rule)
    found = {}
    for i, (path, text) in enumerate(files):
        twin = index.twin_of(signature(path, text, rule))
        if twin is not None:
            found[i] = twin
    return found


def twins_within(files: list[tuple[str, str]], rule: TwinRule = TwinRule()) -> dict[int, int]:
    """{index: index of the earlier kept file it is a near-twin of} for the files to drop; the
    first file of each family is kept."""
    index = TwinIndex(files, rule)
    kept = np.zeros(len(files), dtype=bool)
    dropped = {}
    for i, sig in enumerate(index.sigs):
        twin = index.twin_of(sig, among=kept)
        if twin is None:
            kept[i] = True
        else:
            dropped[i] = twin
    return dropped
