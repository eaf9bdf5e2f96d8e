"""An LRU cache of infills with forwarding, as Tabby does: typing the first characters of a
shown suggestion reuses it without a model call.

An entry is keyed by the text before the cursor's line, the text after the cursor, and whatever
else changes the answer (language, settings). Within that key it remembers the cursor line's text
up to the cursor (``line``) and the infills (the infill, then the beam search's runners-up), each
with what the server keeps about it (its confidence). A later request on the same line whose text
before the cursor is ``line + typed`` gets the rest of each infill that ``typed`` starts, in their
order.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hole:
    """A cursor in a document, split the way the cache needs it."""

    before_line: str  # text up to the start of the cursor's line
    line: str  # the cursor's line up to the cursor
    after: str  # text after the cursor

    @classmethod
    def at(cls, text: str, offset: int) -> Hole:
        start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
        return cls(text[:start], text[start:offset], text[offset:])


def _fingerprint(s: str) -> tuple[int, int]:
    return len(s), hash(s)


class InfillCache:
    def __init__(self, capacity: int = 256, lines_per_key: int = 8):
        self.capacity = capacity
        self.lines_per_key = lines_per_key
        self._entries: OrderedDict[tuple, list[tuple[str, tuple[tuple[str, Any], ...]]]] = OrderedDict()
        self._lock = threading.Lock()  # the engine thread stores results while the event loop reads
        self.hits = 0
        self.misses = 0

    def _key(self, hole: Hole, extra: Hashable) -> tuple:
        return _fingerprint(hole.before_line), _fingerprint(hole.after), extra

    def put(self, hole: Hole, extra: Hashable, infills: Sequence[str], notes: Sequence[Any] | None = None) -> None:
        """Remember ``infills`` for this hole, each with its note (``notes``, in order; None without)."""
        infills = tuple((t, n) for t, n in zip(infills, notes if notes is not None else [None] * len(infills)) if t)
        if not infills:
            return
        key = self._key(hole, extra)
        with self._lock:
            found = self._entries.pop(key, [])
            found = [(line, texts) for line, texts in found if line != hole.line][: self.lines_per_key - 1]
            self._entries[key] = [(hole.line, infills), *found]
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def get(self, hole: Hole, extra: Hashable) -> list[str] | None:
        """The infills for this hole: an exact hit, or the rest of each suggestion the user typed into."""
        found = self.lookup(hole, extra)
        return None if found is None else [t for t, _ in found]

    def lookup(self, hole: Hole, extra: Hashable) -> list[tuple[str, Any]] | None:
        """As ``get``, each infill with its note."""
        key = self._key(hole, extra)
        with self._lock:
            for line, texts in self._entries.get(key, ()):
                if hole.line.startswith(line):
                    typed = hole.line[len(line) :]
                    rest = [(t[len(typed) :], n) for t, n in texts if len(typed) < len(t) and t.startswith(typed)]
                    if rest:
                        self._entries.move_to_end(key)
                        self.hits += 1
                        return rest
            self.misses += 1
            return None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
