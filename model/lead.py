"""A fill that must start with given text: the typed part of the word a cursor is in.

A cursor inside a word (``result = proc|``) leaves a prefix that ends in a token the file never
has there: ``proc``, where the file's own tokens have ``process``. The model sees a word cut short
and the token caches (model/ngram.py) find no place with that token. So the engine moves such a
hole's start back to the word's start and asks the beam (model/beam.py) for fills that start with
the typed part: at each slot, until the typed part is covered, only tokens whose text agrees with
what is left of it (``pro``, ``process``, ``processing``; not `` process`` or ``prank``). The
engine then takes the typed part off the fill. This is what language-model completers call token
healing.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the language server reads ``typed_word`` without loading torch
    import torch

# the identifier characters just before a cursor (a word being typed)
_WORD_TAIL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")


def typed_word(text: str, at: int) -> str:
    """The part of a word typed before offset ``at`` of ``text`` (identifier characters back to
    the word's start); "" when ``at`` is not right after one, or the word goes on after ``at``."""
    if at < len(text) and _WORD_CHAR.match(text[at]):
        return ""
    line_start = text.rfind("\n", 0, at) + 1
    found = _WORD_TAIL.search(text, line_start, at)
    return found.group() if found else ""


class Spellings:
    """A vocabulary's token texts (id -> text, "" for special tokens), sorted once so that the
    tokens starting with a text are one range of them."""

    def __init__(self, texts: list[str]):
        self.texts = texts
        order = sorted((t, i) for i, t in enumerate(texts) if t)
        self._sorted = [t for t, _ in order]
        self._ids = [i for _, i in order]
        self._by_text: dict[str, list[int]] = {}
        for t, i in order:
            self._by_text.setdefault(t, []).append(i)

    @classmethod
    def of(cls, tok) -> Spellings:
        """``tok``'s spellings (built once per tokenizer)."""
        found = tok.__dict__.get("_spellings")
        if found is None:
            found = tok._spellings = cls(tok.token_texts())
        return found

    def agreeing(self, left: str) -> list[int]:
        """The tokens whose text starts with ``left`` or is a start of it."""
        lo, hi = bisect_left(self._sorted, left), bisect_left(self._sorted, left + "\U0010ffff")
        return self._ids[lo:hi] + [i for k in range(1, len(left)) for i in self._by_text.get(left[:k], ())]


class Lead:
    """The text a fill must start with, over a tokenizer's ``Spellings``."""

    def __init__(self, text: str, spellings: Spellings):
        if not text:
            raise ValueError("a lead needs some text")
        self.text = text
        self._spellings = spellings
        self._texts = spellings.texts
        self._allowed: dict[tuple[str, int], torch.Tensor] = {}

    def left(self, tokens: list[int]) -> str:
        """What of the text is still to come after ``tokens`` ("" once they cover it)."""
        done = 0
        for t in tokens:
            done += len(self._texts[t]) if 0 <= t < len(self._texts) else 0
            if done >= len(self.text):
                return ""
        return self.text[done:]

    def starts(self, tokens: list[int]) -> bool:
        """Whether ``tokens``' text starts with the lead."""
        return "".join(self._texts[t] for t in tokens if 0 <= t < len(self._texts)).startswith(self.text)

    def allowed(self, left: str, size: int) -> torch.Tensor:
        """Which of ``size`` token ids may come next when ``left`` is still to come: those whose
        (non-empty) text starts with it or is a start of it."""
        import torch

        key = (left, size)
        mask = self._allowed.get(key)
        if mask is None:
            mask = torch.zeros(size, dtype=torch.bool)
            mask[[i for i in self._spellings.agreeing(left) if i < size]] = True
            self._allowed[key] = mask
        return mask
