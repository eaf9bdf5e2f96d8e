"""Left-to-right beam search over an infill canvas (``SamplerConfig.beam`` > 1).

Threshold decoding commits, at each slot, the model's single best guess. A small model's best
first token is often not the start of its most probable line, so this keeps ``beam`` candidate
fills per hole, each a batch row sharing the hole's context (computed once, then copied):

    candidates = [empty fill], score 0
    for slot t = 0, 1, ...:
        one forward pass over every candidate's canvas (slot t onwards still <mask>)
        ending here: score + log p(<eoi> or a stop token at t) -> a finished fill, kept when the
            syntax constraint finds no new error in it (a fill is only judged once it is whole)
            and it does not stop inside a character;
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

import torch

from diffill.model.decoding import Bans, Constraint, Request, SampleResult, SamplerConfig, StepTrace, forbid, stop_table

# candidates a one-line hole is searched with, by default (the engine, eval heldout, adapt)
LINE_BEAM = 4

# a fill's evidence: each token's log-probability (and the end's, when it was scored), and each
# token's share of its probability that the token caches gave
Evidence = tuple[list[float], list[float]]


class _Hole:
    """One request's search: its finished fills (score, tokens, each token's log-probability and
    the end's), best first."""

    def __init__(self, keep: int):
        self.keep = keep
        self.finished: list[tuple[float, list[int], Evidence]] = []
        self.done = False
        self.steps = self.passes = 0
        self.tokens: list[int] | None = None  # the answer, when the finish_after bound completed one
        self.evidence: Evidence = ([], [])  # ... its searched part's
        self.bridge: tuple[int, int] | None = None  # a line bridge's answer: places agreeing, places counted

    def worth(self, score: float) -> bool:
        return len(self.finished) < self.keep or score > self.finished[-1][0]

    def add(self, score: float, tokens: list[int], evidence: Evidence) -> None:
        self.finished.append((score, tokens, evidence))
        self.finished.sort(key=lambda f: -f[0])
        del self.finished[self.keep :]

    def best(self) -> float:
        return self.finished[0][0] if self.finished else -math.inf


def beam_search(backend, cfg: SamplerConfig, requests: list[Request], length: int,
                constraint: Constraint | None = None, bans: Bans | None = None,
                cancelled: Callable[[], bool] = lambda: False,
                on_step: Callable[[StepTrace], None] | None = None) -> list[SampleResult]:
    """Search one canvas of ``length`` slots per request (see the module docstring); ``bans`` and
    ``cancelled`` as for ``Sampler.sample``, ``on_step`` sees each hole's best candidate."""
    k, be = cfg.beam, backend
    mask, eoi = be.mask_id, be.eoi_id
    holes = [_Hole(k) for _ in requests]
    # requests still searching, in the order of their rows; holes a library bridges need no search
    active = [i for i, r in enumerate(requests) if not _bridge(holes[i], r, i, be, constraint, length)]
    state = be.prepare([requests[i].prefix for i in active], [requests[i].suffix for i in active], length,
                       cfg.cache) if active else None
    if active and not hasattr(state, "take"):
        raise ValueError("beam search needs a backend whose state can be copied per candidate")
    width = 1  # rows per active request: 1 at the first step, then k
    canvas = torch.full((len(active), 1, length), mask, dtype=torch.long)
    score = torch.zeros((len(active), 1))
    # per candidate and slot: its token's log-probability, and the share of that probability the
    # token caches gave (model.ngram; the evidence of a copy)
    token_lp = torch.zeros((len(active), 1, length))
    copied = torch.zeros((len(active), 1, length))
    ends = None
    stopped = False
    for t in range(length if active else 0):
        if cancelled():
            stopped = True
            break
        slots = torch.full((len(active) * width, 1), t, dtype=torch.long)
        logits = be.logits(state, canvas.view(-1, length), slots)[:, 0, :]
        if ends is None:  # (requests, V): each request's stop tokens, and <eoi>
            ends = stop_table(requests, logits.shape[-1])
            ends[:, eoi] = True
        places = {(i, t): slice(j * width, (j + 1) * width) for j, i in enumerate(active)}
        logp = torch.log_softmax(forbid(logits, be.banned_ids, bans, places), -1).view(len(active), width, -1)
        logp, mixed = _mix_cache(logp, requests, active, canvas, t, eoi)
        logp = _lead(logp, requests, active, canvas, t)
        end_mask = ends[active][:, None, :]
        end_score = score + torch.logsumexp(logp.masked_fill(~end_mask, -math.inf), -1)
        if t == 0:  # the empty fill only where the model's first guess is the end, as greedy decoding
            end_score = end_score.masked_fill(~end_mask.gather(2, logp.argmax(-1, keepdim=True))[..., 0], -math.inf)
        go = (score[..., None] + logp).masked_fill(end_mask, -math.inf).view(len(active), -1)
        top = go.topk(k, -1)
        src, tok = top.indices // logp.shape[-1], top.indices % logp.shape[-1]
        for j, i in enumerate(active):
            holes[i].steps += 1
            holes[i].passes += 1
            for c in torch.argsort(end_score[j], descending=True).tolist():
                s = float(end_score[j, c])
                if s == -math.inf or not holes[i].worth(s):
                    break
                fill = canvas[j, c, :t].tolist()
                if _whole(be, fill) and _valid(constraint, i, fill):
                    holes[i].add(s, fill, (token_lp[j, c, :t].tolist() + [s - float(score[j, c])],
                                           copied[j, c, :t].tolist()))
        canvas = canvas.gather(1, src[:, :, None].expand(-1, -1, length)).clone()
        canvas[:, :, t] = tok
        token_lp = token_lp.gather(1, src[:, :, None].expand(-1, -1, length)).clone()
        token_lp[:, :, t] = top.values - score.gather(1, src)
        copied = copied.gather(1, src[:, :, None].expand(-1, -1, length)).clone()
        copied[:, :, t] = _copied_share(mixed, src, tok, top.values - score.gather(1, src))
        score = top.values
        for j, i in enumerate(active):
            hole, request = holes[i], requests[i]
            if t == length - 1:  # a canvas full of code is a finished fill too
                for c in range(k):
                    s = float(score[j, c])
                    if s > -math.inf and hole.worth(s) and _valid(constraint, i, canvas[j, c].tolist()):
                        hole.add(s, canvas[j, c].tolist(), (token_lp[j, c].tolist(), copied[j, c].tolist()))
            open_best = float(score[j].max())
            bound = bool(request.finish_after) and hole.passes >= request.finish_after
            if t == length - 1 or open_best == -math.inf or (hole.finished and hole.best() >= open_best):
                hole.done = True
            elif bound:  # an open candidate is still the likeliest: completed by its own guesses
                fill = _copy_rest(request, canvas[j, 0, : t + 1].tolist(), length)
                if fill is None:
                    rest = be.logits(state.take(torch.tensor([j * width])), canvas[j, :1],
                                     torch.arange(t + 1, length)[None])[0]
                    fill = _complete(canvas[j, 0, : t + 1].tolist(), rest, be, bans, i, t + 1, ends[i])
                if not hole.finished or _valid(constraint, i, fill):
                    hole.tokens = fill  # else the best finished fill, which the constraint passed
                    hole.evidence = (token_lp[j, 0, : t + 1].tolist(), copied[j, 0, : t + 1].tolist())
                hole.passes += 1
                hole.done = True
        if on_step:
            on_step(StepTrace(t + 1, _view(holes, active, canvas, length, eoi),
                              [[t] if i in active else [] for i in range(len(requests))], 0.0, k))
        keep = [j for j, i in enumerate(active) if not holes[i].done]
        if len(keep) < len(active) or width == 1:  # drop finished holes; give each of the others k rows
            state = state.take(torch.tensor([j * width for j in keep for _ in range(k)], dtype=torch.long))
            canvas, score, token_lp, copied = canvas[keep], score[keep], token_lp[keep], copied[keep]
            active = [active[j] for j in keep]
        width = k
        if not active:
            break
    results = []
    for i, hole in enumerate(holes):
        found = hole.finished
        tokens, complete, best = hole.tokens, True, None
        if tokens is None and hole.done:
            best, found = (found[0], found[1:]) if found else (None, [])
        elif tokens is None:  # cancelled: the best finished fill, unless an open candidate is likelier
            j = active.index(i)
            if hole.finished and hole.best() >= float(score[j].max()):
                best, found = found[0], found[1:]
            else:
                row = canvas[j, 0].tolist()
                tokens, complete = row[: row.index(mask)] if mask in row else row, False
        evidence = best[2] if best is not None else hole.evidence
        results.append(SampleResult(best[1] if best is not None else tokens, complete, hole.steps, hole.passes,
                                    len(best[1] if best is not None else tokens), stopped, [f[1] for f in found],
                                    score=best[0] if best is not None else None, token_logps=evidence[0],
                                    copied=evidence[1], alternative_scores=[f[0] for f in found],
                                    bridge=hole.bridge, alternative_evidence=[f[2] for f in found]))
    return results


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


def _bridge(hole: _Hole, request, row: int, be, constraint, length: int) -> bool:
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
