"""A hole's copying: the code it may copy from, behind one object that the decoders ask.

Built once a request from its sources, as token caches (``model.ngram``): the document around the
hole first, then the editor's other open documents, the workspace or a workspace adapter's
repository, and the library index (``model.library_index``). Threshold decoding and beam search
ask it what follows a fill, whether that is certain, and which line bridges the hole; the engine
asks it for the line of a blank line between two lines.
"""

from __future__ import annotations

from collections.abc import Sequence

from diffill.model.ngram import (END, HALF, Bridged, bridged_line, continuation, hole_caches, mix, prefix_context,
                                 sure_run, weight)


class Copying:
    """The sources one hole copies from (``sources[0]``: the document around it); ``bos``: the
    token that starts a prompt, which is no part of the code before the hole."""

    def __init__(self, sources: Sequence, bos: int | None = None):
        self.sources = tuple(sources)
        self.bos = bos

    @classmethod
    def for_hole(cls, tok, prefix: str, suffix: str, more: Sequence, bos: int | None) -> Copying:
        """The document around a hole (``prefix``, ``suffix``), then ``more`` (None entries skipped);
        ``bos``: the decoding backend's."""
        return cls(hole_caches(tok, prefix, suffix, more), bos)

    def __bool__(self) -> bool:
        return bool(self.sources)

    def _context(self, prefix: list[int], fill: Sequence[int] = ()) -> list[int]:
        return prefix_context(prefix, self.bos) + list(fill)

    def continuation(self, prefix: list[int], fill: Sequence[int] = ()) -> tuple[dict[int, float], float]:
        """What follows the prompt ``prefix`` and the ``fill`` so far in the sources, and the weight
        to mix it with (``model.ngram.continuation``)."""
        return continuation(self.sources, self._context(prefix, fill))

    @staticmethod
    def certain(dist: dict[int, float], lam: float) -> bool:
        """Whether a continuation leaves no doubt: one token, not a line break, after a match of at
        least ``HALF`` tokens."""
        return len(dist) == 1 and END not in dist and lam >= weight(HALF)

    def sure_run(self, prefix: list[int], fill: Sequence[int], limit: int) -> tuple[list[int], bool]:
        """The tokens the sources continue ``fill`` with while certain, and whether a line break
        ended them (``model.ngram.sure_run``)."""
        return sure_run(self.sources, self._context(prefix, fill), limit)

    def line(self, prefix: list[int], suffix: list[int], limit: int, alone: bool = True) -> Bridged | None:
        """The line the sources have between the hole's lines (``model.ngram.bridged_line``)."""
        return bridged_line(self.sources, self._context(prefix), suffix, limit, alone)

    @staticmethod
    def mix(logp, dist: dict[int, float], lam: float, end: int | None):
        """``logp`` mixed with a continuation (``model.ngram.mix``)."""
        return mix(logp, dist, lam, end)
