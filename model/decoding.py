"""What every decoder of an infill canvas shares: its settings, requests and results, the bans
and stop tokens it honours, and the constraint it asks.

Threshold decoding (``model.sampler``) and beam search (``model.beam``) both build on this module
and not on each other; ``model.decoders`` picks one for a ``SamplerConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch

from diffill.model.copying import Copying
from diffill.model.lead import Lead

CONFIDENCE_MEASURES = ("prob", "margin", "entropy")
EXTRA_STEPS = 8  # steps past the canvas length a fill may take (vetoed proposals cost steps)


@dataclass
class SamplerConfig:
    """How the engine decodes a canvas. Settings only experiments change are threshold decoding's
    ``model.sampler.Experiment``."""

    # commit every masked slot at least this confident (measured: docs/decoding.md)
    threshold: float = 0.9
    min_per_step: int = 1  # commit at least this many (the most confident) per step
    max_per_step: int = 0  # 0: no cap; 1: one token per step (the slow baseline)
    confidence: str = "prob"  # prob | margin | entropy
    max_steps: int = 0  # 0: the canvas length (+ growth) + EXTRA_STEPS
    max_remask: int = 1  # times any one slot may be re-masked
    # prefix/suffix keys and values computed once (approximate; False: the exact path; docs/decoding.md)
    cache: bool = True
    # a unit of 1-4 tokens repeated back to back this many times may not start again at the next
    # slot (greedy decoding of a small model falls into loops: `_to_to_to_to...`); 0: no limit
    max_repeats: int = 3
    # > 1: left-to-right beam search with this many candidates a hole (model.beam); 0 or 1: off.
    # None: the engine decides per hole (EngineConfig.single_line_beam for one-line holes, else
    # off); a sampler used on its own treats None as off
    beam: int | None = None

    def __post_init__(self) -> None:
        if self.confidence not in CONFIDENCE_MEASURES:
            raise ValueError(f"unknown confidence measure {self.confidence!r} (choose from {CONFIDENCE_MEASURES})")
        if self.min_per_step < 1 or self.max_per_step < 0 or (self.max_per_step and self.max_per_step < self.min_per_step):
            raise ValueError("need 1 <= min_per_step <= max_per_step (or max_per_step 0: no cap)")
        if min(self.max_remask, self.max_steps, self.max_repeats) < 0:
            raise ValueError("max_remask, max_steps and max_repeats must not be negative")
        if self.beam is not None and self.beam < 0:
            raise ValueError("beam must not be negative")


class Constraint(Protocol):
    """Called each step, per row with proposals, with the canvas view: committed tokens, else the
    current guess (the text the canvas would become), which slots are committed and which are
    proposed for commit. Returns three sets of slots: ``hold`` (proposals not committed this
    step), ``ban`` (proposals not committed, their guess banned at the slot) and ``remask``
    (committed slots back to <mask>, their token banned there; at most ``max_remask`` times a slot)."""

    def check(self, row: int, tokens: list[int], committed: list[bool],
              proposed: list[bool]) -> tuple[set[int], set[int], set[int]]: ...

    def accepts(self, row: int, tokens: list[int]) -> bool:
        """Whether the whole fill ``tokens`` (up to <eoi>) is valid as the user would get it,
        post-processed (beam search judges finished fills so)."""
        ...


@dataclass
class StepTrace:
    step: int
    canvas: list[list[int]]
    committed_now: list[list[int]]
    threshold: float
    beam: int = 0  # beam search: candidates per hole (the canvas shows each hole's likeliest)


@dataclass
class SampleResult:
    tokens: list[int]  # up to the first <eoi> (and the first <mask> when incomplete)
    complete: bool  # no <mask> was left
    steps: int  # steps while this row had a <mask> left
    forward_passes: int  # forward passes while this row had a <mask> left
    committed: int
    cancelled: bool = False
    alternatives: list[list[int]] = field(default_factory=list)  # beam search: the runners-up, best first
    # the evidence a fill's confidence is estimated from (diffill.confidence). Beam search: the
    # fill's log-probability (None when it was not scored: a line bridge, a fill completed at the
    # finish_after bound), the runners-up's, each scored token's log-probability (and the end's)
    # and share of it that the token caches gave; a line bridge's places agreeing and counted.
    # Threshold decoding: each token's confidence when it was committed, as a log
    score: float | None = None
    alternative_scores: list[float] = field(default_factory=list)
    token_logps: list[float] = field(default_factory=list)
    copied: list[float] = field(default_factory=list)
    bridge: tuple[int, int] | None = None
    alternative_evidence: list[tuple[list[float], list[float]]] = field(default_factory=list)  # (logps, copied)


@dataclass
class Request:
    prefix: list[int]
    suffix: list[int]
    stops: frozenset[int] = frozenset()  # tokens that end the fill where guessed, like <eoi>
    # a latency bound: once this row has had this many forward passes, each step commits its guess
    # at every masked slot it can (threshold 0; <eoi> rules and max_per_step still hold); 0: never
    finish_after: int = 0
    # what the fill may copy from (model.copying): continuations of its left context mixed into the
    # model's guesses (each beam candidate's next token; in threshold decoding, left to right, the
    # leftmost masked slot's) and lines that bridge the hole
    copying: Copying | None = None
    # text the fill must start with (model.lead: the typed part of the word at the cursor); honoured
    # by beam search
    lead: Lead | None = None


Bans = dict[tuple[int, int], set[int]]  # (row, slot) -> token ids never committed there


def stop_table(requests: list[Request], vocab: int) -> torch.Tensor:
    """(B, V): which tokens end each row's fill."""
    table = torch.zeros((len(requests), vocab), dtype=torch.bool)
    for i, r in enumerate(requests):
        ids = sorted(t for t in r.stops if 0 <= t < vocab)
        if ids:
            table[i, ids] = True
    return table


def forbid(logits: torch.Tensor, banned_ids, bans: Bans | None, places: dict) -> torch.Tensor:
    """``logits`` (in place) with the backend's ``banned_ids`` forbidden everywhere and each
    request's ``bans`` where they apply: ``places`` maps a (row, slot) key of ``bans`` to the index
    of ``logits`` that holds that slot's scores (one row, or a range of a beam's candidates)."""
    logits[..., banned_ids] = -math.inf
    for key, at in places.items():
        ids = (bans or {}).get(key)
        if ids:
            logits[at][..., sorted(ids)] = -math.inf
    return logits
