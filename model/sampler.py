"""The denoising sampler: confidence-ordered parallel unmasking of an infill canvas.

    canvas = [<mask>] * L
    repeat until no <mask> is left, or cancelled, or max steps:
        logits at canvas slots; banned tokens forbidden
        conf, guess per masked slot (max prob, margin or entropy)
        <eoi> proposable at slot i only when no <mask> is left of i (the end is decided last)
        propose every masked slot with conf >= threshold, at least min_per_step, at most max_per_step
        constraint (optional): may veto proposals (their guess gets banned there) and re-mask
            committed slots (bounded)
        commit; a committed <eoi> at slot i makes every slot after i <eoi>
        committed tokens whose probability collapsed may be re-masked (bounded)
        canvas full of code and growth allowed: append more <mask> slots
    result = canvas up to the first <eoi>
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from model.backend import Backend


@dataclass
class SamplerConfig:
    threshold: float = 0.9  # commit every masked slot at least this confident
    min_per_step: int = 1
    max_per_step: int = 0  # 0: no cap
    confidence: str = "prob"  # prob | margin | entropy
    max_steps: int = 0  # 0: the canvas length (+ growth)
    grow_by: int = 0  # slots added when code fills the whole canvas; 0: never grow
    max_length: int = 256  # canvas growth stops here
    remask_below: float = 0.0  # re-mask committed tokens whose probability fell below this
    max_remask: int = 1  # times any one slot may be re-masked
    temperature: float = 0.0  # 0: greedy
    seed: int = 0
    cache: bool = False  # prefix/suffix keys and values computed once (approximate)


class Constraint(Protocol):
    """Called each step with proposed canvases; returns slots to veto and slots to re-mask."""

    def check(self, row: int, tokens: list[int], committed: list[bool]) -> tuple[set[int], set[int]]: ...


@dataclass
class StepTrace:
    step: int
    canvas: list[list[int]]
    committed_now: list[list[int]]
    threshold: float


@dataclass
class SampleResult:
    tokens: list[int]  # up to the first <eoi>
    complete: bool  # no <mask> was left
    steps: int
    forward_passes: int
    committed: int


@dataclass
class Request:
    prefix: list[int]
    suffix: list[int]


@dataclass
class Sampler:
    backend: Backend
    config: SamplerConfig = field(default_factory=SamplerConfig)

    def sample(
        self,
        requests: list[Request],
        length: int,
        constraint: Constraint | None = None,
        bans: dict[tuple[int, int], set[int]] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        on_step: Callable[[StepTrace], None] | None = None,
    ) -> list[SampleResult]:
        """Denoise one canvas of ``length`` slots per request, all in one batch."""
        cfg, be = self.config, self.backend
        mask, eoi = be.mask_id, be.eoi_id
        gen = torch.Generator().manual_seed(cfg.seed)
        b = len(requests)
        state = be.prepare([r.prefix for r in requests], [r.suffix for r in requests], length, cfg.cache)
        canvas = torch.full((b, length), mask, dtype=torch.long)
        ban = torch.zeros((b, length, 0), dtype=torch.bool)
        remasked = torch.zeros((b, length), dtype=torch.long)
        steps = passes = 0
        max_steps = cfg.max_steps or (cfg.max_length if cfg.grow_by else length) + 8
        while steps < max_steps and not cancelled():
            is_mask = canvas == mask
            if not is_mask.any():
                if not self._grow_needed(canvas, eoi, length, cfg):
                    break
                canvas, ban, remasked, state, length = self._grow(requests, canvas, ban, remasked, length)
                continue
            logits = be.logits(state, canvas)
            passes += 1
            steps += 1
            logits = self._forbid(logits, bans, ban)
            conf, guess, probs = self._confidence(logits, gen)
            # <eoi> only where no <mask> is left of the slot: the end is decided after the content
            mask_left = torch.cumsum(is_mask.long(), 1) - is_mask.long() > 0
            conf = torch.where((guess == eoi) & mask_left, torch.full_like(conf, -1.0), conf)
            conf = torch.where(is_mask, conf, torch.full_like(conf, -math.inf))
            propose = self._select(conf, is_mask)
            if constraint is not None:
                ban, remask = self._apply_constraint(constraint, canvas, guess, propose, ban, remasked)
                propose &= ~remask  # vetoed proposals drop out; remask holds re-masked slots
            new = canvas.clone()
            new[propose] = guess[propose]
            new = self._eoi_fill(new, eoi, mask)
            if cfg.remask_below > 0:
                new = self._remask(new, canvas, probs, remasked, mask, eoi)
            committed_now = [torch.nonzero((new != canvas[i]) & (new[i] != mask)).squeeze(1).tolist()
                             for i in range(b)] if on_step else []
            canvas = new
            if on_step:
                on_step(StepTrace(steps, canvas.tolist(), committed_now, cfg.threshold))
        return [self._result(row, mask, eoi, steps, passes) for row in canvas.tolist()]

    # -- helpers ---------------------------------------------------------------------------

    def _forbid(self, logits, bans, ban):
        logits = logits.clone()
        logits[..., self.backend.banned_ids] = -math.inf
        if bans:
            for (row, slot), ids in bans.items():
                if slot < logits.shape[1]:
                    logits[row, slot, list(ids)] = -math.inf
        if ban.shape[-1]:
            logits[..., : ban.shape[-1]].masked_fill_(ban, -math.inf)
        return logits

    def _confidence(self, logits, gen):
        cfg = self.config
        probs = torch.softmax(logits, -1)
        if cfg.temperature > 0:
            flat = torch.softmax(logits / cfg.temperature, -1).view(-1, logits.shape[-1])
            guess = torch.multinomial(flat, 1, generator=gen).view(logits.shape[:2])
        else:
            guess = probs.argmax(-1)
        p = probs.gather(-1, guess[..., None]).squeeze(-1)
        if cfg.confidence == "prob":
            conf = p
        elif cfg.confidence == "margin":
            top2 = probs.topk(2, -1).values
            conf = top2[..., 0] - top2[..., 1]
        elif cfg.confidence == "entropy":
            ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
            conf = torch.exp(-ent)
        else:
            raise ValueError(f"unknown confidence measure {cfg.confidence!r}")
        return conf, guess, probs

    def _select(self, conf, is_mask):
        cfg = self.config
        propose = (conf >= cfg.threshold) & is_mask
        order = conf.argsort(-1, descending=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(conf.shape[1]).expand_as(order))
        eligible = conf > -math.inf
        propose |= (rank < max(1, cfg.min_per_step)) & eligible
        if cfg.max_per_step:
            propose &= rank < cfg.max_per_step
        return propose

    def _apply_constraint(self, constraint, canvas, guess, propose, ban, remasked):
        mask = self.backend.mask_id
        remask = torch.zeros_like(propose)
        view = torch.where(propose, guess, canvas)
        for i in range(canvas.shape[0]):
            if not propose[i].any():
                continue
            veto, undo = constraint.check(i, view[i].tolist(), (canvas[i] != mask).tolist())
            for slot in veto:
                if propose[i, slot]:
                    ban = self._ban(ban, i, slot, int(guess[i, slot]))
                    remask[i, slot] = True
            for slot in undo:
                if canvas[i, slot] != mask and remasked[i, slot] < self.config.max_remask:
                    remasked[i, slot] += 1
                    canvas[i, slot] = mask
        return ban, remask

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
        is_eoi = canvas == eoi
        after = torch.cumsum(is_eoi.long(), 1) > 0
        return torch.where(after, torch.full_like(canvas, eoi), canvas)

    def _remask(self, new, old, probs, remasked, mask, eoi):
        """Committed code tokens the model now finds improbable go back to <mask> (bounded)."""
        was = (old != mask) & (old != eoi)
        p_old = probs.gather(-1, old.clamp_min(0)[..., None]).squeeze(-1)
        drop = was & (p_old < self.config.remask_below) & (remasked < self.config.max_remask)
        remasked += drop.long()
        return torch.where(drop, torch.full_like(new, mask), new)

    def _grow_needed(self, canvas, eoi, length, cfg):
        return bool(cfg.grow_by and length < cfg.max_length and (canvas != eoi).all(1).any())

    def _grow(self, requests, canvas, ban, remasked, length):
        """Append <mask> slots to every row whose code used the whole canvas."""
        cfg, be = self.config, self.backend
        extra = min(cfg.grow_by, cfg.max_length - length)
        full = (canvas != be.eoi_id).all(1, keepdim=True)
        pad = torch.where(full, be.mask_id, be.eoi_id).expand(-1, extra)
        canvas = torch.cat([canvas, pad], 1)
        ban = torch.cat([ban, torch.zeros((ban.shape[0], extra, ban.shape[2]), dtype=torch.bool)], 1)
        remasked = torch.cat([remasked, torch.zeros((remasked.shape[0], extra), dtype=torch.long)], 1)
        length += extra
        state = be.prepare([r.prefix for r in requests], [r.suffix for r in requests], length, cfg.cache)
        return canvas, ban, remasked, state, length

    @staticmethod
    def _result(row, mask, eoi, steps, passes):
        end = row.index(eoi) if eoi in row else len(row)
        body = row[:end]
        complete = mask not in body
        if not complete:
            body = body[: body.index(mask)]
        return SampleResult(body, complete, steps, passes, sum(1 for t in row if t != mask))


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - t0) * 1000.0
