"""The denoising sampler: parallel unmasking of an infill canvas, by confidence.

Two orders (``Experiment.order``): ``left_to_right`` (the default, measured) commits the leftmost masked slot and the
confident run after it; ``confidence`` commits the most confident slots anywhere.

    canvas = [<mask>] * L
    repeat until no <mask> is left, or cancelled, or max steps:
        logits at the masked canvas slots (reused when the last step changed nothing); banned tokens forbidden
            (and, at the first masked slot, the start of one more back-to-back copy of a short unit
            already repeated max_repeats times)
        conf, guess per masked slot (max prob, margin or entropy)
        a guess among the request's stop tokens (a newline, in a one-line hole) is an <eoi>
        <eoi> proposable at slot i only when no <mask> is left of i (the end is decided last)
        propose every masked slot with conf >= threshold, at least min_per_step, at most max_per_step
            (threshold 0 for a row past its request's finish_after forward passes: it ends now)
        a confident <eoi> right after the last proposed content closes the fill in the same step
        constraint (optional): may veto proposals (their guess gets banned there) and re-mask
            committed slots (bounded)
        commit; a committed <eoi> at slot i makes every slot after i <eoi>
        committed tokens whose probability collapsed may be re-masked (bounded)
        canvas full of code and growth allowed: append more <mask> slots
    result = canvas up to the first <eoi>

With ``beam`` > 1 the canvas is beam-searched left to right instead (``model.beam``; the engine's
default for one-line holes): ``model.decoders.Decoder`` picks one or the other.

Defaults were chosen with ``diffill bench speed`` on the base model (see SamplerConfig).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from diffill.model.backend import Backend
from diffill.model.ngram import END
from diffill.model.decoding import (EXTRA_STEPS, Bans, Constraint, Request, SampleResult, SamplerConfig, StepTrace,
                                    forbid, stop_table)

__all__ = ["Bans", "Constraint", "Experiment", "Request", "SampleResult", "Sampler", "SamplerConfig", "StepTrace"]

ORDERS = ("confidence", "left_to_right")
LOOP_UNITS = 4  # the longest unit of tokens whose back-to-back repeats are banned (max_repeats)


@dataclass
class Experiment:
    """Threshold decoding's settings that only experiments change (docs/decoding.md measures them);
    the engine decodes with the defaults."""

    # left_to_right: the leftmost masked slot, then on while confident; confidence: the most
    # confident slots anywhere
    order: str = "left_to_right"
    grow_by: int = 0  # slots added when code fills the whole canvas; 0: never grow
    max_length: int = 256  # canvas growth stops here
    remask_below: float = 0.0  # re-mask committed tokens whose probability fell below this; 0: off
    temperature: float = 0.0  # 0: greedy
    seed: int = 0
    cache_refresh: int = 0  # with the context cache: recompute the context every this many steps; 0: never

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"unknown decoding order {self.order!r} (choose from {ORDERS})")
        if min(self.grow_by, self.cache_refresh) < 0:
            raise ValueError("grow_by and cache_refresh must not be negative")
        if self.temperature < 0:
            raise ValueError("temperature must not be negative")


@dataclass
class Sampler:
    backend: Backend
    config: SamplerConfig = field(default_factory=SamplerConfig)
    experiment: Experiment = field(default_factory=Experiment)

    @torch.inference_mode()
    def sample(
        self,
        requests: list[Request],
        length: int,
        constraint: Constraint | None = None,
        bans: Bans | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        on_step: Callable[[StepTrace], None] | None = None,
    ) -> list[SampleResult]:
        """Denoise one canvas of ``length`` slots per request, all rows in one forward pass a step.

        ``bans`` is read at every step, so a caller (an ``on_step`` callback, a constraint) may add
        to it while sampling. ``cancelled`` is checked before every step; a cancelled batch
        returns at once, each row with its committed text up to the first <mask>."""
        if not requests:
            return []
        if length < 1:
            raise ValueError("the canvas needs at least one slot")
        cfg, exp, be = self.config, self.experiment, self.backend
        if (cfg.beam or 0) > 1:
            raise ValueError("a beam is searched by model.beam (model.decoders.Decoder picks the decoder)")
        mask, eoi = be.mask_id, be.eoi_id
        gen = torch.Generator().manual_seed(exp.seed)
        b = len(requests)
        state = be.prepare([r.prefix for r in requests], [r.suffix for r in requests], length,
                           cfg.cache, exp.cache_refresh)
        canvas = torch.full((b, length), mask, dtype=torch.long)
        committed_conf = torch.ones((b, length))  # each slot's confidence when it was committed
        ban = torch.zeros((b, length, 0), dtype=torch.bool)
        remasked = torch.zeros((b, length), dtype=torch.long)
        stops = None  # (B, V) stop tokens of each row, built at the first step when any row has some
        has_stops = any(r.stops for r in requests)
        copying = exp.order == "left_to_right" and any(r.copying for r in requests)
        seen = None  # the canvas the current logits were computed for
        steps = passes = 0
        # per row: the steps and forward passes taken while it still had a <mask> (a row that is
        # done early in a batch is not charged with the passes the other rows go on to need)
        row_steps, row_passes = [0] * b, [0] * b
        stopped = False
        max_steps = cfg.max_steps or (max(exp.max_length, length) if exp.grow_by else length) + EXTRA_STEPS
        while steps < max_steps:
            if cancelled():
                stopped = True
                break
            is_mask = canvas == mask
            if not is_mask.any():
                if not self._grow_needed(canvas, eoi, length):
                    break
                canvas, ban, remasked, state, length = self._grow(requests, canvas, ban, remasked, length)
                committed_conf = torch.cat([committed_conf, torch.ones((b, length - committed_conf.shape[1]))], 1)
                continue
            if seen is None or not torch.equal(canvas, seen):
                # a step that changed nothing (its proposals vetoed) leaves the same canvas, so the
                # same logits: they are reused, with the new bans applied, at no forward pass
                slots = self._slots(canvas, is_mask, eoi)
                logits = be.logits(state, canvas, slots)
                seen = canvas.clone()  # the constraint may re-mask slots of canvas in place
                passes += 1
                if cfg.max_repeats:  # bans persist: an unchanged canvas needs no new ones
                    ban = self._ban_loops(canvas, is_mask, ban)
            steps += 1
            for i in torch.nonzero(is_mask.any(1)).squeeze(1).tolist():
                row_steps[i], row_passes[i] = steps, passes
            threshold = self._thresholds(requests, row_passes)
            logits = self._forbid(logits, slots, bans, ban)
            wait, sure = self._copy(requests, logits, slots, canvas, is_mask) if copying else (None, None)
            conf, guess, p_old = self._confidence(logits, slots, canvas, gen)
            if sure:  # slots the caches continue without doubt: certain guesses, committed at once
                for (i, slot), token in sure.items():
                    guess[i, slot], conf[i, slot] = token, 1.0
            if stops is None and has_stops:
                stops = stop_table(requests, logits.shape[-1])
            if stops is not None:  # a stop token guessed at a masked slot is the end of the fill
                guess = torch.where(stops.gather(1, guess) & is_mask, torch.full_like(guess, eoi), guess)
            # <eoi> only where no <mask> is left of the slot: the end is decided after the content
            is_end = (guess == eoi) & is_mask
            end_conf = conf
            conf = torch.where(is_end & self._open_left(is_mask), torch.full_like(conf, -1.0), conf)
            conf = torch.where(is_mask, conf, torch.full_like(conf, -math.inf))
            propose = self._close(self._select(conf, is_mask, threshold), end_conf, is_end, is_mask, threshold)
            if wait is not None:  # a row that copies commits its leftmost slot alone
                propose &= ~wait
            if constraint is not None:
                ban, remask = self._apply_constraint(constraint, canvas, guess, propose, ban, remasked)
                propose &= ~remask  # vetoed proposals drop out; remask holds re-masked slots
            # an <eoi> is never committed with a <mask> left of it (a veto or re-mask may leave one)
            propose &= ~(is_end & self._open_left((canvas == mask) & ~propose))
            new = torch.where(propose, guess, canvas)
            committed_conf = torch.where(propose, end_conf.clamp(0.0, 1.0), committed_conf)
            new = self._eoi_fill(new, eoi, mask)
            if exp.remask_below > 0:
                new = self._remask(new, canvas, p_old, remasked, mask, eoi)
            if on_step:
                fresh = (new != canvas) & (new != mask)
                on_step(StepTrace(steps, new.tolist(), [torch.nonzero(f).squeeze(1).tolist() for f in fresh],
                                  float(threshold.min())))
            canvas = new
        results = [self._result(row, mask, eoi, n_steps, n_passes, stopped)
                   for row, n_steps, n_passes in zip(canvas.tolist(), row_steps, row_passes)]
        for r, conf in zip(results, committed_conf.clamp_min(1e-6).log().tolist()):
            r.token_logps = conf[: len(r.tokens)]
        return results

    # -- helpers ---------------------------------------------------------------------------

    def _copy(self, requests, logits, slots, canvas, is_mask):
        """Mix each row's copying (``model.copying``) into its logits at its leftmost masked slot,
        where everything to the left is committed. Returns (wait, sure): (B, L), the slots that must
        wait this step (those right of what the caches spoke for: the model guessed them without the
        copied tokens); and {(row, slot): token} for the run of masked slots from the leftmost one
        that the caches continue without doubt (``sure_run``), which need no forward pass."""
        wait = torch.zeros(canvas.shape, dtype=torch.bool)
        sure: dict[tuple[int, int], int] = {}
        for i, r in enumerate(requests):
            if not r.copying or not is_mask[i].any():
                continue
            first = int(is_mask[i].nonzero()[0])
            k = int((slots[i] == first).nonzero()[0])
            fill = canvas[i, :first].tolist()
            dist, lam = r.copying.continuation(r.prefix, fill)
            if r.copying.certain(dist, lam):  # sure: a run, no pass needed
                masked_run = int(torch.cumprod(is_mask[i, first:].long(), 0).sum())
                run, _ = r.copying.sure_run(r.prefix, fill, masked_run)
                taken = self._allowed(logits[i], slots[i], first, run)
                if taken:
                    sure.update({(i, first + n): token for n, token in enumerate(run[:taken])})
                    wait[i, first + taken :] = True
                    continue
            # a line break ends a one-line hole; in a longer fill it is the model's to place (copied
            # code changes depth)
            end = self.backend.eoi_id if r.stops else None
            if dist and (end is not None or set(dist) != {END}):
                logits[i, k] = r.copying.mix(torch.log_softmax(logits[i, k], -1), dist, lam, end)
                wait[i, first + 1 :] = True
        return wait, sure

    @staticmethod
    def _allowed(logits, slots, first: int, run: list[int]) -> int:
        """How many of ``run``'s tokens, for the slots from ``first`` on, are neither banned nor
        vetoed there (their logits, ``_forbid`` applied, are not -inf): a sure run stops at the
        first that is, so that a veto is never proposed again."""
        for n, token in enumerate(run):
            k = (slots == first + n).nonzero()
            if not len(k) or logits[int(k[0]), token] == -math.inf:
                return n
        return len(run)

    def _slots(self, canvas, is_mask, eoi):
        """(B, K) canvas slots that need logits: masked ones (and committed code when re-masking is
        on), each row padded by repeating its first such slot."""
        need = is_mask
        if self.experiment.remask_below > 0:
            need = need | (canvas != eoi)
        if need.shape[0] == 1:
            return torch.nonzero(need[0]).T
        k = int(need.sum(1).max())
        order = torch.argsort((~need).to(torch.int8), dim=1, stable=True)[:, :k]  # needed slots first
        count = need.sum(1, keepdim=True)
        pad = torch.arange(k)[None] >= count
        return torch.where(pad, order[:, :1], order)

    def _forbid(self, logits, slots, bans, ban):
        """Logits with the backend's banned tokens, the request's ``bans`` and the loops' and the
        constraint's (``ban``) forbidden at their slots."""
        places = {(i, slot): (i, k) for i, row in enumerate(slots.tolist()) for k, slot in enumerate(row)}
        logits = forbid(logits, self.backend.banned_ids, bans, places if bans else {})
        if ban.shape[-1]:
            picked = ban.gather(1, slots[..., None].expand(-1, -1, ban.shape[-1]))
            logits[..., : ban.shape[-1]].masked_fill_(picked, -math.inf)
        return logits

    def _confidence(self, logits, slots, canvas, gen):
        """conf and guess at every canvas slot (B, L), from logits at ``slots`` (B, K); and the
        current probability of each committed token (1 where not computed)."""
        cfg, exp = self.config, self.experiment
        probs = torch.softmax(logits, -1)
        if exp.temperature > 0:
            flat = torch.softmax(logits / exp.temperature, -1).view(-1, logits.shape[-1])
            guess = torch.multinomial(flat, 1, generator=gen).view(logits.shape[:2])
        else:
            guess = probs.argmax(-1)
        if cfg.confidence == "prob":
            conf = probs.gather(-1, guess[..., None]).squeeze(-1)
        elif cfg.confidence == "margin":
            top2 = probs.topk(2, -1).values
            conf = top2[..., 0] - top2[..., 1]
        else:  # entropy: exp(-H) is 1 for a certain slot and 1/V for a uniform one
            ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
            conf = torch.exp(-ent)
        full_conf = torch.full(canvas.shape, -math.inf).scatter(1, slots, conf)
        full_guess = canvas.scatter(1, slots, guess)
        p_old = None
        if exp.remask_below > 0:
            old = canvas.gather(1, slots)
            p_old = torch.ones(canvas.shape).scatter(1, slots, probs.gather(-1, old[..., None]).squeeze(-1))
        return full_conf, full_guess, p_old

    def _thresholds(self, requests, row_passes):
        """(B, 1): each row's confidence threshold this step (0 once it is past its finish_after)."""
        return torch.tensor([[0.0 if r.finish_after and n >= r.finish_after else self.config.threshold]
                             for r, n in zip(requests, row_passes)])

    def _select(self, conf, is_mask, threshold):
        cfg = self.config
        eligible = conf >= 0  # masked, and not an <eoi> with a <mask> on its left (conf -1)
        if self.experiment.order == "left_to_right":
            # masked slots by position: the first min_per_step of them, then on while confident
            rank = torch.cumsum(is_mask.long(), 1) - 1
            take = eligible & ((conf >= threshold) | (rank < max(1, cfg.min_per_step)))
            propose = torch.cumprod(torch.where(is_mask, take, True).long(), 1).bool() & is_mask
        else:
            propose = (conf >= threshold) & is_mask
            order = torch.argsort(conf, dim=-1, descending=True, stable=True)
            rank = torch.empty_like(order)
            rank.scatter_(1, order, torch.arange(conf.shape[1]).expand_as(order))
        propose |= (rank < max(1, cfg.min_per_step)) & eligible
        if cfg.max_per_step:
            propose &= rank < cfg.max_per_step
        return propose

    def _ban_loops(self, canvas, is_mask, ban):
        """At each row's first masked slot (all committed on its left): when the committed tokens
        end in ``max_repeats`` back-to-back copies of a unit of 1-4 tokens, the unit's first token
        is banned there, so the loop cannot go on."""
        n = self.config.max_repeats
        firsts = torch.where(is_mask.any(1), is_mask.long().argmax(1), -1).tolist()
        for i, (row, first) in enumerate(zip(canvas.tolist(), firsts)):
            if first <= 0:
                continue
            done = row[:first]
            for p in range(1, LOOP_UNITS + 1):
                unit = done[-p:]
                if len(done) >= p * n and done[-p * n :] == unit * n:
                    ban = self._ban(ban, i, first, unit[0])
        return ban

    @staticmethod
    def _open_left(open_slots):
        """(B, L): whether any open slot lies left of each slot."""
        return torch.cumsum(open_slots.long(), 1) - open_slots.long() > 0

    def _close(self, propose, conf, is_end, is_mask, threshold):
        """The end of the fill in the step that commits its last content: a confident <eoi> guess
        at slot i joins the proposals when every masked slot left of i is proposed too, so no
        forward pass is spent on the end alone (the <eoi> still never has a <mask> on its left)."""
        cfg = self.config
        end = is_end & ~propose & (conf >= threshold) & ~self._open_left(is_mask & ~propose)
        if cfg.max_per_step:
            end &= propose.sum(1, keepdim=True) < cfg.max_per_step
        return propose | end

    def _apply_constraint(self, constraint, canvas, guess, propose, ban, remasked):
        """Ask the constraint about each row's view; returns the grown ban tensor and the
        proposals to drop. Re-masked slots are written into ``canvas``."""
        mask = self.backend.mask_id
        is_mask = canvas == mask
        drop = torch.zeros_like(propose)
        view = torch.where(is_mask, guess, canvas)
        for i in range(canvas.shape[0]):
            if not propose[i].any():
                continue
            hold, banned, undo = constraint.check(i, view[i].tolist(), (~is_mask[i]).tolist(),
                                                  propose[i].tolist())
            for slot in hold:
                drop[i, slot] |= bool(propose[i, slot])
            for slot in banned:
                if propose[i, slot]:
                    ban = self._ban(ban, i, slot, int(guess[i, slot]))
                    drop[i, slot] = True
            for slot in undo:
                if not is_mask[i, slot] and remasked[i, slot] < self.config.max_remask:
                    remasked[i, slot] += 1
                    ban = self._ban(ban, i, slot, int(canvas[i, slot]))
                    canvas[i, slot] = mask
        return ban, drop

    @staticmethod
    def _ban(ban, row, slot, token):
        if token >= ban.shape[-1]:
            grown = torch.zeros((*ban.shape[:2], token + 1), dtype=torch.bool)
            grown[..., : ban.shape[-1]] = ban
            ban = grown
        ban[row, slot, token] = True
        return ban

    @staticmethod
    def _eoi_fill(canvas, eoi, mask):
        """<eoi> monotonicity: every slot after a committed <eoi> is <eoi>."""
        after = torch.cumsum((canvas == eoi).long(), 1) > 0
        return torch.where(after, torch.full_like(canvas, eoi), canvas)

    def _remask(self, new, old, p_old, remasked, mask, eoi):
        """Committed code tokens the model now finds improbable go back to <mask> (bounded)."""
        was = (old != mask) & (old != eoi) & (new == old)
        drop = was & (p_old < self.experiment.remask_below) & (remasked < self.config.max_remask)
        remasked += drop.long()
        return torch.where(drop, torch.full_like(new, mask), new)

    def _grow_needed(self, canvas, eoi, length):
        exp = self.experiment
        return bool(exp.grow_by and length < exp.max_length and (canvas != eoi).all(1).any())

    def _grow(self, requests, canvas, ban, remasked, length):
        """Append <mask> slots to every row whose code used the whole canvas (others get <eoi>)."""
        cfg, exp, be = self.config, self.experiment, self.backend
        extra = min(exp.grow_by, exp.max_length - length)
        full = (canvas != be.eoi_id).all(1, keepdim=True)
        pad = torch.where(full, be.mask_id, be.eoi_id).expand(-1, extra)
        canvas = torch.cat([canvas, pad], 1)
        ban = torch.cat([ban, torch.zeros((ban.shape[0], extra, ban.shape[2]), dtype=torch.bool)], 1)
        remasked = torch.cat([remasked, torch.zeros((remasked.shape[0], extra), dtype=torch.long)], 1)
        length += extra
        state = be.prepare([r.prefix for r in requests], [r.suffix for r in requests], length,
                           cfg.cache, exp.cache_refresh)
        return canvas, ban, remasked, state, length

    @staticmethod
    def _result(row, mask, eoi, steps, passes, cancelled):
        end = row.index(eoi) if eoi in row else len(row)
        body = row[:end]
        complete = mask not in body
        if not complete:
            body = body[: body.index(mask)]
        return SampleResult(body, complete, steps, passes, sum(1 for t in row if t != mask), cancelled)
