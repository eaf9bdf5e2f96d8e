"""Variable-length denoising (DreamOn): the canvas grows and shrinks while it is denoised.

DreamOn's published generation starts from a short canvas of masks between prefix and suffix. A
masked slot committed as ``<|expand|>`` becomes two masked slots; one committed as
``<|endoftext|>`` (its delete state) is removed, and so is every masked slot right of the first
such slot; ``<|expand|>`` is forbidden once the canvas holds ``max_length`` slots or ``max_length``
expansions have been made. The fill is the canvas once no mask is left.

    canvas = [<mask>] * initial
    repeat until no <mask> is left, or cancelled, or max steps:
        logits at the masked slots (the context recomputed whenever the length changed)
        <|expand|> forbidden at max_length or with no expansion left; a guessed stop token is a delete
        propose as threshold decoding does (threshold, order, copying; the constraint judges the
            content guesses, with expand and delete guesses shown as empty)
        commit; expand -> two <mask>; delete -> removed, with every <mask> right of the first delete
    result = canvas (up to the first <mask> when cancelled)

DreamOn's own loop commits one slot a step, by entropy; here the engine's threshold rule commits
every confident slot, so one step may expand, delete and commit content together. Rows are
denoised one at a time (their canvases differ in length). The context cache keeps the suffix's
keys and values at its old positions, so a length change recomputes the context. Beam search
keeps a fixed canvas (``model.beam``; the backend bans ``<|expand|>`` there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from diffill.model.decoding import (EXTRA_STEPS, Bans, Constraint, Request, SampleResult, StepTrace, forbid,
                                    stop_table)
from diffill.model.sampler import Sampler

INITIAL = 4  # DreamOn's quickstart canvas (its evaluation starts from 4 to 64 slots, up to 64)


@dataclass
class VariableLength:
    initial: int = INITIAL  # masked slots the canvas starts with (at most the budget)

    def __post_init__(self) -> None:
        if self.initial < 1:
            raise ValueError("a variable-length canvas starts with at least one slot")


@dataclass
class VariableLengthSampler(Sampler):
    """Threshold decoding on a canvas that a backend with ``expand_id`` and ``delete_id`` resizes;
    the budget ``length`` given to ``sample`` is the canvas's maximum length."""

    settings: VariableLength = field(default_factory=VariableLength)

    def __post_init__(self) -> None:
        if self.experiment.grow_by or self.experiment.remask_below:
            raise ValueError("grow_by and remask_below act on a fixed canvas; a variable-length one grows by "
                             "<|expand|>")

    @torch.inference_mode()
    def sample(self, requests: list[Request], length: int, constraint: Constraint | None = None,
               bans: Bans | None = None, cancelled: Callable[[], bool] = lambda: False,
               on_step: Callable[[StepTrace], None] | None = None) -> list[SampleResult]:
        """Denoise each request's canvas, from ``settings.initial`` slots up to ``length``."""
        if length < 1:
            raise ValueError("the canvas needs at least one slot")
        if (self.config.beam or 0) > 1:
            raise ValueError("a beam is searched by model.beam (model.decoders.Decoder picks the decoder)")
        gen = torch.Generator().manual_seed(self.experiment.seed)
        start = min(self.settings.initial, length)
        canvases = [[self.backend.mask_id] * start for _ in requests]  # every row's, for step traces
        return [self._row(i, r, length, canvases, constraint, bans, cancelled, on_step, gen)
                for i, r in enumerate(requests)]

    def _row(self, row, r, length, canvases, constraint, bans, cancelled, on_step, gen) -> SampleResult:
        cfg, exp, be = self.config, self.experiment, self.backend
        mask, expand, delete = be.mask_id, be.expand_id, be.delete_id
        banned = [t for t in be.banned_ids if t != expand]
        n = len(canvases[row])
        canvas = torch.full((1, n), mask, dtype=torch.long)
        committed_conf = torch.ones((1, n))
        ban = torch.zeros((1, n, 0), dtype=torch.bool)
        remasked = torch.zeros((1, n), dtype=torch.long)
        expansions = length  # DreamOn's expansion budget: the maximum length
        state = be.prepare([r.prefix], [r.suffix], n, cfg.cache, exp.cache_refresh)
        one = _OneRow(constraint, row) if constraint is not None else None
        copying = exp.order == "left_to_right" and r.copying is not None
        stops, seen, slots, logits = None, None, None, None
        steps = passes = 0
        stopped = False
        # each step commits a slot, or expands one (at most ``length`` times); vetoes cost extra steps
        max_steps = cfg.max_steps or n + 2 * length + EXTRA_STEPS
        while steps < max_steps:
            if cancelled():
                stopped = True
                break
            is_mask = canvas == mask
            if not is_mask.any():
                break
            if seen is None or not torch.equal(canvas, seen):
                slots = torch.nonzero(is_mask[0]).T
                logits = be.logits(state, canvas, slots)
                seen = canvas.clone()
                passes += 1
                if cfg.max_repeats:
                    ban = self._ban_loops(canvas, is_mask, ban)
            steps += 1
            threshold = self._thresholds([r], [passes])
            places = {(row, s): (0, k) for k, s in enumerate(slots[0].tolist())}
            lg = forbid(logits.clone(), banned, bans, places if bans else {})
            if ban.shape[-1]:
                picked = ban.gather(1, slots[..., None].expand(-1, -1, ban.shape[-1]))
                lg[..., : ban.shape[-1]].masked_fill_(picked, -math.inf)
            if n >= length or expansions == 0:
                lg[..., expand] = -math.inf
            wait, sure = self._copy([r], lg, slots, canvas, is_mask) if copying else (None, None)
            conf, guess, _ = self._confidence(lg, slots, canvas, gen)
            for (_, slot), token in (sure or {}).items():
                guess[0, slot], conf[0, slot] = token, 1.0
            if stops is None and r.stops:
                stops = stop_table([r], lg.shape[-1])
            if stops is not None:  # a stop token guessed (a line break in a one-line hole) ends the fill there
                guess = torch.where(stops.gather(1, guess) & is_mask, torch.full_like(guess, delete), guess)
            conf = torch.where(is_mask, conf, torch.full_like(conf, -math.inf))
            propose = self._select(conf, is_mask, threshold)
            if wait is not None:
                propose &= ~wait
            special = ((guess == expand) | (guess == delete)) & is_mask
            if one is not None:  # content guesses only: an expand or delete shows as an empty slot
                content = torch.where(special, torch.full_like(guess, mask), guess)
                ban, drop = self._apply_constraint(one, canvas, content, propose & ~special, ban, remasked)
                propose &= ~drop
            new = torch.where(propose, guess, canvas)
            committed_conf = torch.where(propose, conf.clamp(0.0, 1.0), committed_conf)
            src, made = _resized(new[0].tolist(), propose[0].tolist(), mask, expand, delete, expansions, length)
            expansions -= made
            canvas, committed_conf, ban, remasked = _take(src, new, mask, committed_conf, ban, remasked)
            canvases[row] = canvas[0].tolist()
            if on_step:
                fresh = [j for j, s in enumerate(src) if s >= 0 and propose[0, s] and canvases[row][j] != mask]
                on_step(StepTrace(steps, [list(c) for c in canvases],
                                  [fresh if i == row else [] for i in range(len(canvases))], float(threshold.min())))
            if canvas.shape[1] != n:  # the suffix moved: its cached keys and values are at old positions
                n = canvas.shape[1]
                if n:
                    state = be.prepare([r.prefix], [r.suffix], n, cfg.cache, exp.cache_refresh)
                seen = None
        body = canvas[0].tolist()
        complete = mask not in body
        if not complete:
            body = body[: body.index(mask)]
        out = SampleResult(body, complete, steps, passes, sum(1 for t in canvas[0].tolist() if t != mask), stopped)
        out.token_logps = committed_conf[0].clamp_min(1e-6).log().tolist()[: len(body)]
        return out


@dataclass
class _OneRow:
    """The constraint of batch row ``row``, asked as the only row of a one-row sampler."""

    constraint: Constraint
    row: int

    def check(self, row: int, tokens: list[int], committed: list[bool], proposed: list[bool]):
        return self.constraint.check(self.row, tokens, committed, proposed)

    def accepts(self, row: int, tokens: list[int]) -> bool:
        return self.constraint.accepts(self.row, tokens)


def _resized(tokens: list[int], proposed: list[bool], mask: int, expand: int, delete: int, budget: int,
             length: int) -> tuple[list[int], int]:
    """The canvas after a step's commits, as the old slot each new slot comes from (-1: a new
    <mask>), and the expansions made: a committed delete goes, with every <mask> right of the first
    one; a committed expand becomes two masks while ``budget`` and ``length`` allow, else one."""
    deleted = {k for k, (t, p) in enumerate(zip(tokens, proposed)) if p and t == delete}
    first = min(deleted, default=len(tokens))
    kept = [k for k, t in enumerate(tokens) if k not in deleted and not (k > first and t == mask)]
    room = min(budget, length - len(kept))
    src: list[int] = []
    made = 0
    for k in kept:
        if proposed[k] and tokens[k] == expand:
            src += [-1, -1] if made < room else [-1]
            made += made < room
        else:
            src.append(k)
    return src, made


def _take(src, new, mask, committed_conf, ban, remasked):
    """Row 0 of each tensor rebuilt slot by slot from ``src`` (``_resized``): new masks fresh."""
    index = torch.tensor([max(s, 0) for s in src], dtype=torch.long)
    fresh = torch.tensor([s < 0 for s in src], dtype=torch.bool)[None]
    canvas = torch.where(fresh, torch.full((1, len(src)), mask, dtype=torch.long), new[:, index])
    conf = torch.where(fresh, torch.ones((1, len(src))), committed_conf[:, index])
    ban = ban[:, index] & ~fresh[..., None]
    remasked = torch.where(fresh, torch.zeros_like(remasked[:, index]), remasked[:, index])
    return canvas, conf, ban, remasked
