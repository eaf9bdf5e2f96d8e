"""Context reused across requests while the user types (as llama.cpp's cache reuse).

The backend keeps, for the last few requests, the context it encoded: prefix and suffix token ids,
the canvas length, and each layer's keys and values of the prefix and suffix (``Encoded``). A new
request whose window equals one of them except a short span at the cursor (the end of the prefix,
the start of the suffix), and perhaps whole lines dropped at the window's start, is planned here
(``Plan``): the unchanged tokens' keys and values are taken from the cache and only the changed
tokens, together with the canvas, run through the network, attending to them.

Positions: the layout stays the one the model was trained with (prefix from 0, the suffix after
the canvas), and reused keys whose position moved are re-rotated by the difference, since RoPE
rotations compose: R(p + d) k = R(d) R(p) k (``rotate_keys``).

Under bidirectional attention this is approximate: a reused token's keys and values were computed
beside the old tokens, not the new ones. The staleness is bounded: a plan changes at most
``ReuseConfig.max_changed`` tokens, and after ``max_reuses`` reuses that changed something the
context is encoded afresh. A window that did not change reuses its exact context.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from diffill.model.layers import KV, apply_rope, rope_cos_sin


@dataclass(frozen=True)
class ReuseConfig:
    # tokens removed plus tokens added (and canvas slots added or removed) above which a window is
    # encoded afresh
    max_changed: int = 8
    # reuses that changed tokens, in a row, after which the next window is encoded afresh
    max_reuses: int = 3
    entries: int = 4  # encoded contexts kept (about one per document being typed in)
    # kept tokens recomputed at each side of the cursor whose neighbour changed: the old window's
    # last prefix token and first suffix token sat beside the canvas, and their kept states say so
    # (after a fill is inserted, a stale one can turn "the line is done" into more of the line)
    boundary: int = 1


@dataclass
class Encoded:
    """A request's encoded context: keys already rotated at their layout positions (prefix at
    0.., suffix after the ``length`` canvas slots)."""

    prefix: list[int]
    suffix: list[int]
    length: int  # canvas slots between them
    kv: list[KV]  # per layer: (1, heads, len(prefix) + len(suffix), head_dim), prefix then suffix
    reuses: int = 0  # reuses that changed tokens since the context was last encoded whole


@dataclass
class Plan:
    """How a new window is built from ``base``: new prefix = old prefix[drop : drop + keep_prefix]
    + ``added_prefix``; new suffix = ``added_suffix`` + old suffix[len - keep_suffix :]."""

    base: Encoded
    drop: int
    keep_prefix: int
    added_prefix: list[int]
    keep_suffix: int
    added_suffix: list[int]
    length: int
    changed: int

    @property
    def exact(self) -> bool:
        """Nothing changed: the reused context is what encoding the window afresh gives."""
        return self.changed == 0

    @property
    def block_start(self) -> int:
        """The layout position of the first token computed (added prefix, canvas, added suffix)."""
        return self.keep_prefix

    def block(self, canvas: Sequence[int]) -> list[int]:
        """The tokens run through the network: the added prefix, the canvas, the added suffix."""
        return [*self.added_prefix, *canvas, *self.added_suffix]

    def reused(self, rope_theta: float) -> list[KV]:
        """Per layer, the kept prefix's and kept suffix's keys and values at their new positions."""
        base = self.base
        n_old = len(base.prefix)
        suffix_from = n_old + len(base.suffix) - self.keep_suffix  # in the cached rows
        old_at = n_old + base.length + len(base.suffix) - self.keep_suffix  # old layout position
        new_at = self.keep_prefix + len(self.added_prefix) + self.length + len(self.added_suffix)
        out = []
        for k, v in base.kv:
            pk, pv = k[:, :, self.drop : self.drop + self.keep_prefix], v[:, :, self.drop : self.drop + self.keep_prefix]
            sk, sv = k[:, :, suffix_from:], v[:, :, suffix_from:]
            out.append((torch.cat([rotate_keys(pk, -self.drop, rope_theta), rotate_keys(sk, new_at - old_at, rope_theta)], 2),
                        torch.cat([pv, sv], 2)))
        return out

    def context(self, reused: list[KV], block: list[KV]) -> list[KV]:
        """The new window's whole context (prefix then suffix, as ``Encoded.kv``) from the reused
        part and the computed block's keys and values (whose canvas slots are left out)."""
        a, c = len(self.added_prefix), len(self.added_prefix) + self.length
        out = []
        for (rk, rv), (bk, bv) in zip(reused, block):
            out.append(tuple(torch.cat([r[:, :, : self.keep_prefix], b[:, :, :a], b[:, :, c:], r[:, :, self.keep_prefix :]], 2)
                             for r, b in ((rk, bk), (rv, bv))))
        return out


def rotate_keys(keys: torch.Tensor, delta: int, rope_theta: float) -> torch.Tensor:
    """Keys (B, heads, T, head_dim) rotated by RoPE at ``p`` as if rotated at ``p + delta``."""
    if delta == 0 or keys.shape[2] == 0:
        return keys
    at = torch.full((1, keys.shape[2]), delta, dtype=torch.long, device=keys.device)
    cos, sin = rope_cos_sin(at, keys.shape[-1], rope_theta)
    return apply_rope(keys.float(), cos, sin).to(keys.dtype)


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _prefix_alignment(old: list[int], new: list[int]) -> tuple[int, int, int]:
    """(drop, keep, changed): new[:keep] == old[drop : drop + keep], chosen for the fewest tokens
    removed from ``old`` plus added to ``new``."""
    keep = _common(old, new)
    best = (0, keep, (len(old) - keep) + (len(new) - keep))
    if new:
        for j in range(1, len(old)):
            if old[j] == new[0] and j < best[2]:
                keep = _common(old[j:], new)
                changed = j + (len(old) - j - keep) + (len(new) - keep)
                if changed < best[2]:
                    best = (j, keep, changed)
    return best


def plan_reuse(base: Encoded, prefix: list[int], suffix: list[int], length: int, boundary: int = 0) -> Plan:
    """The plan that builds window (``prefix``, ``suffix``, ``length``) on ``base``: the prefix's
    start aligned (lines dropped at the window's start), its end and the suffix's start computed,
    with ``boundary`` more kept tokens on each side where the tokens beside the canvas changed."""
    drop, keep_prefix, changed = _prefix_alignment(base.prefix, prefix)
    keep_suffix = _common(base.suffix[::-1], suffix[::-1])
    changed += (len(base.suffix) - keep_suffix) + (len(suffix) - keep_suffix) + abs(length - base.length)
    if keep_prefix < len(prefix) or drop + keep_prefix < len(base.prefix):
        keep_prefix = max(0, keep_prefix - boundary)
    if keep_suffix < len(suffix) or keep_suffix < len(base.suffix):
        keep_suffix = max(0, keep_suffix - boundary)
    return Plan(base, drop, keep_prefix, prefix[keep_prefix:], keep_suffix,
                suffix[: len(suffix) - keep_suffix], length, changed)


@dataclass
class ContextReuse:
    """The encoded contexts of the last requests, newest last, and how often each path was taken."""

    config: ReuseConfig = field(default_factory=ReuseConfig)
    entries: list[Encoded] = field(default_factory=list)
    encoded: int = 0  # windows encoded whole
    reused: int = 0  # windows built on a kept context, tokens changed
    unchanged: int = 0  # windows equal to a kept one

    def plan(self, prefix: list[int], suffix: list[int], length: int) -> Plan | None:
        """The cheapest plan within the staleness bounds, or None (encode the window whole)."""
        plans = [plan_reuse(e, prefix, suffix, length, self.config.boundary) for e in self.entries]
        allowed = [p for p in plans if p.exact or (p.changed <= self.config.max_changed
                                                   and p.base.reuses < self.config.max_reuses)]
        return min(allowed, key=lambda p: p.changed, default=None)

    def keep(self, encoded: Encoded, replaces: Encoded | None = None) -> None:
        """Keep ``encoded`` as the newest entry (in place of the entry it was built on)."""
        if replaces is None:
            self.encoded += 1
        elif encoded.reuses > replaces.reuses:
            self.reused += 1
        else:
            self.unchanged += 1
        others = [e for e in self.entries if e is not replaces]
        room = self.config.entries - 1
        kept = others[max(0, len(others) - room) :] if room > 0 else []
        self.entries = [*kept, encoded] if self.config.entries > 0 else []

    def clear(self) -> None:
        """Forget every kept context (the weights changed)."""
        self.entries = []

    def counts(self) -> dict[str, int]:
        return {"encoded": self.encoded, "reused": self.reused, "unchanged": self.unchanged}
