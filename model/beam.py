"""Left-to-right beam search over an infill canvas (``SamplerConfig.beam`` > 1).

Threshold decoding commits, at each slot, the model's single best guess. A small model's best
first token is often not the start of its most probable line, so this keeps ``beam`` candidate
fills per hole, each a batch row sharing the hole's context (computed once, then copied):

    candidates = [empty fill], score 0
    for slot t = 0, 1, ...:
        one forward pass over every candidate's canvas (slot t onwards still <mask>)
        ending here: score + log p(<eoi> or a stop token at t) -> a finished fill, kept when it
            does not stop inside a character and the syntax constraint finds no new error in it
            (judged only once whole, and only when it could still rank);
            the empty fill (t = 0) only where the model's first guess is the end
        going on: the ``beam`` best (candidate + token) by score + log p(token at t)
        done when the best finished fill scores at least as high as every open candidate
        (scores only fall as a fill grows, so no open one can still win), or the canvas is full
result = the best finished fill; ``SampleResult.alternatives``: the runners-up, best first

Step-26200 model, 500 held-out lines (seed 0): exact match 0.052 by threshold decoding, 0.076
with a beam of 4, 0.074 with 8. Scores are log probabilities, not normalised for length: in an
offline version of this search, score / (n + 1) ** a lowered exact match (a = 0.6: 0.070, 1.0:
0.066); there a fifth of the answers were the empty fill (one likely end outscores a whole line of
less likely tokens), hence the rule above, which left exact match as it was.

A request's ``finish_after`` bound ends the search: the best open candidate, completed by its own
guesses in one more pass, when it is likelier than every finished fill and the constraint passes
it; else the best finished fill.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from diffill.model.decoding import Bans, Constraint, Request, SampleResult, SamplerConfig, StepTrace, forbid, stop_table

# candidates a one-line hole is searched with, by default (the engine, eval heldout, adapt)
LINE_BEAM = 4

# a fill's evidence: each token's log-probability (and the end's, when it was scored), and each
# token's share of its probability that the token caches gave
Evidence = tuple[list[float], list[float]]


class _Found:
    """One request's search: its finished fills (score, tokens, each token's log-probability and
    the end's), best first. A fill that ends is only offered; the constraint judges it when the
    search needs to know whether it passes (``judge``), so a fill that never ranks is never parsed."""

    def __init__(self, keep: int, valid: Callable[[list[int]], bool]):
        self.keep, self.valid = keep, valid
        self.finished: list[tuple[float, list[int], Evidence]] = []  # passed, best first
        self._order: list[int] = []  # each finished fill's place among the offers: ties go to the earlier
        self.pending: list[tuple[float, int, list[int], Evidence]] = []  # offered, not yet judged
        self.offers = 0
        self.done = False
        self.steps = self.passes = 0
        self.tokens: list[int] | None = None  # the answer, when the finish_after bound completed one
        self.evidence: Evidence = ([], [])  # ... its searched part's
        self.bridge: tuple[int, int] | None = None  # a line bridge's answer: places agreeing, places counted

    def worth(self, score: float) -> bool:
        return len(self.finished) < self.keep or score > self.finished[-1][0]

    def offer(self, score: float, tokens: list[int], evidence: Evidence) -> None:
        self.pending.append((score, self.offers, tokens, evidence))
        self.offers += 1

    def judge(self, floor: float = -math.inf, first: bool = False) -> None:
        """Judge the offered fills scoring at least ``floor``, best first, while they can still
        rank; with ``first``, only until one passes. What is kept is what judging every fill as it
        was offered would keep: the ``keep`` best that pass."""
        if first and self.finished and self.finished[0][0] >= floor:
            return
        self.pending.sort(key=lambda p: (-p[0], p[1]))
        for n, (score, order, tokens, evidence) in enumerate(self.pending):
            if score < floor:
                del self.pending[:n]
                return
            if not self.worth(score):
                break  # neither this fill nor a later one can rank
            if self.valid(tokens):
                at = sum(1 for f, o in zip(self.finished, self._order) if (-f[0], o) < (-score, order))
                self.finished.insert(at, (score, tokens, evidence))
                self._order.insert(at, order)
                del self.finished[self.keep :], self._order[self.keep :]
                if first:
                    del self.pending[: n + 1]
                    return
        self.pending.clear()

    def best(self) -> float:
        return self.finished[0][0] if self.finished else -math.inf


@dataclass
class _Beams:
    """The open candidates of the requests still searching: (requests, candidates, ...) tensors."""

    canvas: torch.Tensor  # their canvases (<mask> from the next slot on)
    score: torch.Tensor  # their log-probabilities
    # per slot: each token's log-probability, and the share of that probability the copying gave
    # (model.copying; the evidence of a copy)
    token_lp: torch.Tensor
    copied: torch.Tensor

    @classmethod
    def empty(cls, holes: int, length: int, mask: int) -> _Beams:
        return cls(torch.full((holes, 1, length), mask, dtype=torch.long), torch.zeros((holes, 1)),
                   torch.zeros((holes, 1, length)), torch.zeros((holes, 1, length)))

    def advance(self, t: int, src, tok, values, mixed: dict) -> None:
        """Each request's candidates become its ``src`` candidates, each followed at slot ``t`` by
        its ``tok`` (scores ``values``)."""
        at = src[:, :, None].expand(-1, -1, self.canvas.shape[-1])
        gained = values - self.score.gather(1, src)
        self.canvas = self.canvas.gather(1, at).clone()
        self.canvas[:, :, t] = tok
        self.token_lp = self.token_lp.gather(1, at).clone()
        self.token_lp[:, :, t] = gained
        self.copied = self.copied.gather(1, at).clone()
        self.copied[:, :, t] = _copied_share(mixed, src, tok, gained)
        self.score = values

    def keep(self, rows: list[int]) -> None:
        self.canvas, self.score = self.canvas[rows], self.score[rows]
        self.token_lp, self.copied = self.token_lp[rows], self.copied[rows]

    def evidence(self, j: int, c: int, upto: int | None = None) -> Evidence:
        return self.token_lp[j, c, :upto].tolist(), self.copied[j, c, :upto].tolist()


class _Search:
    """A beam search over one canvas of ``length`` slots per request (``beam_search``)."""

    def __init__(self, backend, cfg: SamplerConfig, requests: list[Request], length: int,
                 constraint: Constraint | None, bans: Bans | None):
        self.be, self.k, self.requests, self.length = backend, cfg.beam, requests, length
        self.constraint, self.bans = constraint, bans
        self.holes = [_Found(self.k, lambda fill, i=i: _valid(constraint, i, fill)) for i in range(len(requests))]
        # requests still searching, in the order of their rows; holes a library bridges need no search
        self.active = [i for i, r in enumerate(requests)
                       if not _bridge(self.holes[i], r, i, backend, constraint, length)]
        self.state = backend.prepare([requests[i].prefix for i in self.active],
                                     [requests[i].suffix for i in self.active], length,
                                     cfg.cache) if self.active else None
        if self.active and not hasattr(self.state, "take"):
            raise ValueError("beam search needs a backend whose state can be copied per candidate")
        self.width = 1  # rows per active request: 1 at the first step, then k
        self.beams = _Beams.empty(len(self.active), length, backend.mask_id)
        self.ends: torch.Tensor | None = None  # (requests, V): each request's stop tokens, and <eoi>

    def run(self, cancelled: Callable[[], bool], on_step: Callable[[StepTrace], None] | None) -> list[SampleResult]:
        stopped = False
        for t in range(self.length if self.active else 0):
            if cancelled():
                stopped = True
                break
            self.step(t)
            if on_step:
                for hole in self.holes:
                    hole.judge()
                on_step(StepTrace(t + 1, _view(self.holes, self.active, self.beams.canvas, self.length,
                                               self.be.eoi_id),
                                  [[t] if i in self.active else [] for i in range(len(self.requests))], 0.0, self.k))
            self.narrow()
            if not self.active:
                break
        return [self.result(i, stopped) for i in range(len(self.requests))]

    def step(self, t: int) -> None:
        """One forward pass over every open candidate: the fills ending at slot ``t`` are judged,
        the ``k`` best going on are kept."""
        be, active, beams, width = self.be, self.active, self.beams, self.width
        slots = torch.full((len(active) * width, 1), t, dtype=torch.long)
        logits = be.logits(self.state, beams.canvas.view(-1, self.length), slots)[:, 0, :]
        if self.ends is None:
            self.ends = stop_table(self.requests, logits.shape[-1])
            self.ends[:, be.eoi_id] = True
        places = {(i, t): slice(j * width, (j + 1) * width) for j, i in enumerate(active)}
        logp = torch.log_softmax(forbid(logits, be.banned_ids, self.bans, places), -1).view(len(active), width, -1)
        logp, mixed = _mix_cache(logp, self.requests, active, beams.canvas, t, be.eoi_id)
        logp = _lead(logp, self.requests, active, beams.canvas, t)
        end_mask = self.ends[active][:, None, :]
        end_score = beams.score + torch.logsumexp(logp.masked_fill(~end_mask, -math.inf), -1)
        if t == 0:  # the empty fill only where the model's first guess is the end, as greedy decoding
            end_score = end_score.masked_fill(~end_mask.gather(2, logp.argmax(-1, keepdim=True))[..., 0], -math.inf)
        go = (beams.score[..., None] + logp).masked_fill(end_mask, -math.inf).view(len(active), -1)
        top = go.topk(self.k, -1)
        for j, i in enumerate(active):
            self.holes[i].steps += 1
            self.holes[i].passes += 1
            self.collect_ends(j, i, end_score[j], t)
        beams.advance(t, top.indices // logp.shape[-1], top.indices % logp.shape[-1], top.values, mixed)
        for j, i in enumerate(active):
            self.settle(j, i, t)

    def collect_ends(self, j: int, i: int, end_score: torch.Tensor, t: int) -> None:
        """Request ``i``'s candidates (row ``j``) that end at slot ``t``, likeliest first, among
        its finished fills while they rank there (whole characters, passed by the constraint)."""
        hole, beams = self.holes[i], self.beams
        for c in torch.argsort(end_score, descending=True).tolist():
            s = float(end_score[c])
            if s == -math.inf or not hole.worth(s):
                break
            fill = beams.canvas[j, c, :t].tolist()
            if _whole(self.be, fill):
                lps, copied = beams.evidence(j, c, t)
                hole.offer(s, fill, (lps + [s - float(beams.score[j, c])], copied))

    def settle(self, j: int, i: int, t: int) -> None:
        """Whether request ``i`` is done after slot ``t``: its canvas is full, no open candidate can
        beat its best finished fill, or its pass bound completes the likeliest open one."""
        hole, request, beams = self.holes[i], self.requests[i], self.beams
        last = t == self.length - 1
        if last:  # a canvas full of code is a finished fill too
            for c in range(self.k):
                s = float(beams.score[j, c])
                if s > -math.inf and hole.worth(s):
                    hole.offer(s, beams.canvas[j, c].tolist(), beams.evidence(j, c))
        open_best = float(beams.score[j].max())
        if not last and open_best > -math.inf:
            hole.judge(open_best, first=True)  # is a fill that passes at least as likely as every open one?
        if last or open_best == -math.inf or (hole.finished and hole.best() >= open_best):
            hole.done = True
        elif request.finish_after and hole.passes >= request.finish_after:
            self.complete(j, i, t)

    def complete(self, j: int, i: int, t: int) -> None:
        """The bound is reached while an open candidate is still the likeliest: it is completed by
        its copying, else by its own guesses in one more pass."""
        hole, beams = self.holes[i], self.beams
        head = beams.canvas[j, 0, : t + 1].tolist()
        fill = _copy_rest(self.requests[i], head, self.length)
        if fill is None:
            rest = self.be.logits(self.state.take(torch.tensor([j * self.width])), beams.canvas[j, :1],
                                  torch.arange(t + 1, self.length)[None])[0]
            fill = _complete(head, rest, self.be, self.bans, i, t + 1, self.ends[i])
        hole.judge()
        if not hole.finished or _valid(self.constraint, i, fill):
            hole.tokens = fill  # else the best finished fill, which the constraint passed
            hole.evidence = beams.evidence(j, 0, t + 1)
        hole.passes += 1
        hole.done = True

    def narrow(self) -> None:
        """Drop the finished requests' rows; give each of the others ``k`` rows."""
        keep = [j for j, i in enumerate(self.active) if not self.holes[i].done]
        if len(keep) < len(self.active) or self.width == 1:
            self.state = self.state.take(torch.tensor([j * self.width for j in keep for _ in range(self.k)],
                                                      dtype=torch.long))
            self.beams.keep(keep)
            self.active = [self.active[j] for j in keep]
        self.width = self.k

    def result(self, i: int, stopped: bool) -> SampleResult:
        """Request ``i``'s answer: its best finished fill and the runners-up; cancelled, the best
        open candidate where it is likelier."""
        hole = self.holes[i]
        hole.judge()
        found = hole.finished
        tokens, complete, best = hole.tokens, True, None
        if tokens is None and hole.done:
            best, found = (found[0], found[1:]) if found else (None, [])
            tokens = [] if best is None else None  # no fill the constraint passes: the empty one
        elif tokens is None:  # cancelled: the best finished fill, unless an open candidate is likelier
            j = self.active.index(i)
            if hole.finished and hole.best() >= float(self.beams.score[j].max()):
                best, found = found[0], found[1:]
            else:
                row = self.beams.canvas[j, 0].tolist()
                mask = self.be.mask_id
                tokens, complete = row[: row.index(mask)] if mask in row else row, False
        evidence = best[2] if best is not None else hole.evidence
        return SampleResult(best[1] if best is not None else tokens, complete, hole.steps, hole.passes,
                            len(best[1] if best is not None else tokens), stopped, [f[1] for f in found],
                            score=best[0] if best is not None else None, token_logps=evidence[0],
                            copied=evidence[1], alternative_scores=[f[0] for f in found],
                            bridge=hole.bridge, alternative_evidence=[f[2] for f in found])


def beam_search(backend, cfg: SamplerConfig, requests: list[Request], length: int,
                constraint: Constraint | None = None, bans: Bans | None = None,
                cancelled: Callable[[], bool] = lambda: False,
                on_step: Callable[[StepTrace], None] | None = None) -> list[SampleResult]:
    """Search one canvas of ``length`` slots per request (see the module docstring); ``bans`` and
    ``cancelled`` as for ``Sampler.sample``, ``on_step`` sees each hole's best candidate."""
    return _Search(backend, cfg, requests, length, constraint, bans).run(cancelled, on_step)


def _mix_cache(logp, requests, active, canvas, t, eoi) -> tuple[torch.Tensor, dict]:
    """Each candidate's next-token log-probabilities mixed with what follows the hole's prefix and
    the candidate so far where its request copies from (``model.copying``); a line break there is
    the hole's end. Also {(row, candidate): (the continuation's distribution, its weight)} where mixed."""
    mixed = {}
    for j, i in enumerate(active):
        copying = requests[i].copying
        if not copying:
            continue
        for c in range(logp.shape[1]):
            dist, lam = copying.continuation(requests[i].prefix, canvas[j, c, :t].tolist())
            if dist:
                logp[j, c] = copying.mix(logp[j, c], dist, lam, eoi)
                mixed[j, c] = dist, lam
    return logp, mixed


def _copied_share(mixed: dict, src, tok, logp) -> torch.Tensor:
    """(rows, candidates): the share of each chosen token's (mixed) probability that its
    candidate's token caches gave (``_mix_cache``); 0 where they were not mixed in."""
    out = torch.zeros(src.shape)
    for (j, c), (dist, lam) in mixed.items():
        for n in (src[j] == c).nonzero().flatten().tolist():
            p = dist.get(int(tok[j, n]), 0.0) * lam
            if p:
                out[j, n] = min(1.0, p / max(math.exp(float(logp[j, n])), 1e-12))
    return out


def _lead(logp, requests, active, canvas, t) -> torch.Tensor:
    """Each candidate's next-token log-probabilities with the tokens that disagree with what is
    left of its request's lead (``model.lead``) forbidden, ends included, until the lead is covered."""
    for j, i in enumerate(active):
        lead = requests[i].lead
        if lead is None:
            continue
        for c in range(logp.shape[1]):
            left = lead.left(canvas[j, c, :t].tolist())
            if left:
                logp[j, c] = logp[j, c].masked_fill(~lead.allowed(left, logp.shape[-1]), -math.inf)
    return logp


def _bridge(hole: _Found, request, row: int, be, constraint, length: int) -> bool:
    """Finish ``hole`` with the line its request's copying bridges (``Copying.line``), when there
    is one and the constraint passes it."""
    if not request.copying:
        return False
    found = request.copying.line(request.prefix, request.suffix, length)
    fill = found.line if found is not None else None
    if not fill or not _whole(be, fill) or not _valid(constraint, row, fill):
        return False
    if request.lead is not None and not request.lead.starts(fill):
        return False
    hole.tokens, hole.done, hole.bridge = fill, True, found.agreement
    return True


def _copy_rest(request, head: list[int], length: int) -> list[int] | None:
    """``head`` continued by its request's copying alone, while it is sure of the next token
    (``Copying.sure_run``), up to a line break; None when it is not sure that far or the line
    does not end within ``length``."""
    if not request.copying:
        return None
    run, ended = request.copying.sure_run(request.prefix, head, length - len(head))
    return head + run if ended else None


def _whole(be, fill: list[int]) -> bool:
    """Whether the fill ends on a character boundary: byte-level tokens can stop inside a
    character's UTF-8 bytes, which would decode to U+FFFD."""
    tok = getattr(be, "tok", None)
    return tok is None or not tok.decode(fill[-4:]).endswith("\ufffd")


def _valid(constraint, row: int, fill: list[int]) -> bool:
    """Whether the constraint accepts the whole ``fill`` (``Constraint.accepts``)."""
    return constraint is None or constraint.accepts(row, fill)


def _complete(head: list[int], logits, be, bans, row: int, first: int, ends) -> list[int]:
    """``head`` followed by the argmax guesses at the slots from ``first`` on, up to the first end."""
    forbid(logits, be.banned_ids, bans, {(row, first + n): n for n in range(logits.shape[0])})
    out = list(head)
    for guess in logits.argmax(-1).tolist():
        if ends[guess]:
            break
        out.append(guess)
    return out


def _view(holes, active, canvas, length, eoi) -> list[list[int]]:
    """Per request: its best open candidate's canvas, or its answer padded with <eoi>."""
    rows = []
    where = {i: j for j, i in enumerate(active)}
    for i, hole in enumerate(holes):
        if i in where and not hole.done:
            rows.append(canvas[where[i], 0].tolist())
        else:
            fill = hole.tokens if hole.tokens is not None else (hole.finished[0][1] if hole.finished else [])
            rows.append(fill + [eoi] * (length - len(fill)))
    return rows
