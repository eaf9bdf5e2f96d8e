"""Masked-diffusion training objective (MDLM / LLaDA), with plain and infill sequences.

Per sequence: t ~ U(eps, 1); each eligible position is masked with probability t
(p_mask = t); the loss is cross-entropy on masked positions weighted by 1/t, normalised by the
number of eligible positions. Plain sequences make every token eligible. Infill sequences make
only the canvas eligible: the canvas holds the middle's tokens followed by <eoi> padding.
Optionally (``hide_eoi``, ``ordered_fraction``) canvases are noised the way the sampler sees
them: no <eoi> visible while content is masked, and a share masked left to right. With
``context_mask_rate`` r > 0 an infill sequence's prefix and suffix are noised too, each token masked
with probability r * t and weighted 1/t (MDLM's weight for a position whose schedule masks it at
rate r * t), so each counts r times as much as a canvas slot in expectation.

``kind = "causal"`` trains the autoregressive peer instead (``model.fim``): the same holes
(``draw_hole``), laid out as fill-in-the-middle rows, with next-token loss everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from diffill.grammar.spans import python_spans
from diffill.model.context import Window, encode_window
from diffill.model.tokenizer import CodeTokenizer

EPS = 0.02  # floor of t: caps the 1/t weight at 50 (canvases are short, so tiny t is all noise)
CANVAS_BUDGETS = (16, 24, 32, 64)
MAX_CANVAS = 80
SHAPE_QUANTUM = 32  # pad widths and logit counts to multiples: few distinct shapes, bounded memory


@dataclass
class Example:
    ids: list[int]  # targets: prefix + canvas (middle + <eoi>...) + suffix
    eligible: list[bool]  # positions the loss may mask
    canvas: bool = False  # an infill sequence: the eligible positions are its canvas


@dataclass
class MiddleMix:
    """Probabilities of each kind of infill middle."""

    line: float = 0.40  # a whole line after its indentation
    line_rest: float = 0.20  # the rest of a line from a random point
    lines: float = 0.15  # one to a few whole lines
    node: float = 0.20  # a tree-sitter node
    chars: float = 0.05  # a random character span

    def kinds(self) -> tuple[list[str], np.ndarray]:
        names = ["line", "line_rest", "lines", "node", "chars"]
        p = np.array([getattr(self, n) for n in names], dtype=float)
        return names, p / p.sum()


KINDS = ("diffusion", "causal")


@dataclass
class ObjectiveConfig:
    # "diffusion": masked diffusion (this module); "causal": next-token loss on fill-in-the-middle
    # rows (model.fim), for a network with ``causal`` set
    kind: str = "diffusion"
    spm_fraction: float = 0.5  # causal: share of infill rows laid out suffix first (SPM)
    window: Window = field(default_factory=Window)
    plain_fraction: float = 0.5  # dense signal: every token of a plain window is eligible
    plain_length: int = 128
    max_eoi_pad: int = 16
    mix: MiddleMix = field(default_factory=MiddleMix)
    # Canvas noise matched to what the sampler sees. The sampler never shows an <eoi> while
    # content is still masked on its left, so with ``hide_eoi`` a canvas whose content has any
    # masked token has all its <eoi> padding masked too (no peeking at the length). A share
    # ``ordered_fraction`` of canvases is masked from a random cut to the end instead of at
    # random: the states of left-to-right decoding, which confidence order mostly follows.
    hide_eoi: bool = False
    ordered_fraction: float = 0.0
    # Loss on the context too: an infill sequence's prefix and suffix tokens are masked with
    # probability context_mask_rate * t (0: the context is never masked, only the canvas is learned).
    context_mask_rate: float = 0.0
    # Read the prefix and suffix from the whole file rather than from the excerpt the middle is
    # picked in: a window wider than the excerpt would otherwise stop at the excerpt's edges (and
    # begin with <bos> there, as if at the start of the file).
    window_from_file: bool = False


def _line_bounds(text: str, pos: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return start, len(text) if end < 0 else end


def _content_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of the non-blank content of each line, after indentation."""
    out, pos = [], 0
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped:
            start = pos + len(line) - len(stripped)
            out.append((start, pos + len(line.rstrip())))
        pos += len(line) + 1
    return out


def pick_middle(text: str, kind: str, rng: np.random.Generator) -> tuple[int, int] | None:
    """Character span (start, end) of a middle of ``kind`` in ``text``, or None."""
    lines = _content_lines(text)
    if not lines:
        return None
    if kind == "line":
        s, e = lines[rng.integers(len(lines))]
        return (_line_bounds(text, s)[0], e) if rng.random() < 0.15 else (s, e)
    if kind == "line_rest":
        s, e = lines[rng.integers(len(lines))]
        return (int(rng.integers(s, e)), e) if e - s > 1 else (s, e)
    if kind == "lines":
        i = int(rng.integers(len(lines)))
        j = min(len(lines) - 1, i + int(rng.integers(1, 4)))
        s = _line_bounds(text, lines[i][0])[0] if rng.random() < 0.25 else lines[i][0]
        return s, lines[j][1]
    if kind == "node":
        spans = python_spans(text)
        if not spans:
            return None
        sp = spans[rng.integers(len(spans))]
        return sp.start, sp.end
    start = int(rng.integers(0, max(1, len(text) - 1)))
    return start, min(len(text), start + int(rng.integers(1, 80)))


def canvas_size(n_middle: int, rng: np.random.Generator, max_pad: int) -> int:
    """Canvas slots for a middle of ``n_middle`` tokens: an inference budget, or middle + k."""
    budgets = [b for b in CANVAS_BUDGETS if b >= n_middle]
    if budgets and rng.random() < 0.6:
        return int(rng.choice(budgets))
    return n_middle + int(rng.integers(0, max_pad + 1))


@dataclass
class Hole:
    prefix: list[int]  # the window's prefix and suffix tokens, as inference reads them
    middle: list[int]
    suffix: list[int]


def infill_example(text: str, tok: CodeTokenizer, rng: np.random.Generator, cfg: ObjectiveConfig,
                   kind: str | None = None, excerpt_chars: int = 3000) -> Example | None:
    """An infill sequence from a random excerpt of ``text`` (one file)."""
    hole = draw_hole(text, tok, rng, cfg, kind, excerpt_chars)
    if hole is None:
        return None
    prefix, middle, suffix = hole.prefix, hole.middle, hole.suffix
    slots = min(MAX_CANVAS, canvas_size(len(middle), rng, cfg.max_eoi_pad))
    canvas = middle + [tok.eoi_id] * (slots - len(middle))
    ids = prefix + canvas + suffix
    eligible = [False] * len(prefix) + [True] * len(canvas) + [False] * len(suffix)
    return Example(ids, eligible, canvas=True)


def draw_hole(text: str, tok: CodeTokenizer, rng: np.random.Generator, cfg: ObjectiveConfig,
              kind: str | None = None, excerpt_chars: int = 3000) -> Hole | None:
    """A middle of the mix's kinds in a random excerpt of ``text`` (one file), with its window."""
    whole, a = text, 0
    if len(text) > excerpt_chars:  # parse and split a window, not a whole large file
        a = int(rng.integers(0, len(text) - excerpt_chars))
        a = text.rfind("\n", 0, a) + 1
        text = text[a : a + excerpt_chars]
    if kind is None:
        names, p = cfg.mix.kinds()
        kind = names[rng.choice(len(names), p=p)]
    span = pick_middle(text, kind, rng)
    if span is None or span[1] <= span[0]:
        return None
    start, end = span
    middle = tok.encode(text[start:end])
    if not middle or len(middle) > MAX_CANVAS:
        return None
    if cfg.window_from_file:
        prefix, suffix = encode_window(tok, whole[: a + start], whole[a + end :], cfg.window)
    else:
        prefix, suffix = encode_window(tok, text[:start], text[end:], cfg.window)
    return Hole(prefix, middle, suffix)


def plain_example(tokens: np.ndarray, rng: np.random.Generator, length: int) -> Example:
    start = int(rng.integers(0, max(1, len(tokens) - length)))
    ids = tokens[start : start + length].astype(np.int64).tolist()
    return Example(ids, [True] * len(ids))


def stratified_t(n: int, rng: np.random.Generator) -> np.ndarray:
    """t ~ U(eps, 1) per sequence, stratified over the batch (MDLM's low-discrepancy sampler):
    one uniform offset, then evenly spaced, so every batch covers the whole range of t."""
    u = (rng.random() + np.arange(n) / n) % 1.0
    return EPS + (1.0 - EPS) * rng.permutation(u)


@dataclass
class Batch:
    input_ids: torch.Tensor  # noised: masked positions hold <mask>
    targets: torch.Tensor
    attention_mask: torch.Tensor
    masked: torch.Tensor  # bool: positions whose loss counts
    weights: torch.Tensor  # (B, T): 1 / the chance each position was masked (1/t, unless a canvas mode says otherwise)
    n_eligible: float  # eligible positions, context positions counted context_mask_rate each
    context: torch.Tensor | None = None  # bool: the infill context positions that may be masked

    def to(self, device) -> Batch:
        return Batch(self.input_ids.to(device), self.targets.to(device), self.attention_mask.to(device),
                     self.masked.to(device), self.weights.to(device), self.n_eligible,
                     None if self.context is None else self.context.to(device))


def noise_batch(examples: list[Example], tok: CodeTokenizer, rng: np.random.Generator,
                t: np.ndarray | None = None, objective: ObjectiveConfig | None = None) -> Batch:
    """Pad, then mask each eligible position with probability t (one t per sequence). No position
    is forced: a sequence that draws no mask adds nothing, which keeps the 1/t estimate unbiased.
    The ``objective``'s ``hide_eoi`` and ``ordered_fraction`` change how infill canvases are
    masked; each masked position is then weighted by 1 / its probability of being
    masked, so every eligible position still counts once in expectation. The ``objective``'s
    ``context_mask_rate`` r then masks infill context tokens (not <bos>) with probability r * t,
    weighted 1/t; its draws come after all the others, so the rest of the batch is the same
    whatever r is, and with r = 0 nothing is drawn."""
    width = -(-max(len(e.ids) for e in examples) // SHAPE_QUANTUM) * SHAPE_QUANTUM
    b = len(examples)
    targets = np.full((b, width), tok.pad_id, dtype=np.int64)
    eligible = np.zeros((b, width), dtype=bool)
    attn = np.zeros((b, width), dtype=np.int64)
    for i, e in enumerate(examples):
        targets[i, : len(e.ids)] = e.ids
        eligible[i, : len(e.ids)] = e.eligible
        attn[i, : len(e.ids)] = 1
    if t is None:
        t = stratified_t(b, rng)
    masked = eligible & (rng.random((b, width)) < t[:, None])
    weights = np.repeat((1.0 / t)[:, None], width, axis=1)
    if objective is not None and (objective.hide_eoi or objective.ordered_fraction > 0):
        for i, e in enumerate(examples):
            if e.canvas:
                _mask_canvas(i, targets, eligible, masked, weights, float(t[i]), tok.eoi_id, rng,
                             objective.hide_eoi, objective.ordered_fraction)
    n_eligible, context = float(eligible.sum()), None
    rate = objective.context_mask_rate if objective is not None else 0.0
    if rate > 0:
        rows = np.array([e.canvas for e in examples])
        context = rows[:, None] & (attn == 1) & ~eligible & (targets != tok.bos_id)
        masked = masked | (context & (rng.random((b, width)) < rate * t[:, None]))  # weights: 1/t already
        n_eligible += rate * float(context.sum())
    inputs = np.where(masked, tok.mask_id, targets)
    return Batch(
        input_ids=torch.from_numpy(inputs),
        targets=torch.from_numpy(targets),
        attention_mask=torch.from_numpy(attn),
        masked=torch.from_numpy(masked),
        weights=torch.from_numpy(weights.astype(np.float32)),
        n_eligible=n_eligible,
        context=None if context is None else torch.from_numpy(context),
    )


def _mask_canvas(i: int, targets: np.ndarray, eligible: np.ndarray, masked: np.ndarray,
                 weights: np.ndarray, t: float, eoi: int, rng: np.random.Generator,
                 hide_eoi: bool, ordered_fraction: float) -> None:
    """Re-mask row ``i``'s canvas (content tokens, then <eoi> padding) in place."""
    slots = np.nonzero(eligible[i])[0]
    is_pad = targets[i, slots] == eoi
    pads, content = slots[is_pad], slots[~is_pad]
    n_content = len(content)
    if rng.random() < ordered_fraction:
        # the first ``cut`` content tokens visible, everything after them masked; ``cut`` uniform
        # on 0..n_content, so a slot's chance of being masked depends on its place
        cut = int(rng.integers(0, n_content + 1))
        masked[i, slots] = np.arange(len(slots)) >= cut
        p = np.minimum(1.0, (np.arange(len(slots)) + 1) / (n_content + 1))
        weights[i, slots] = 1.0 / p
        return
    if hide_eoi and len(pads):
        if masked[i, content].any():
            masked[i, pads] = True
        p_any = 1.0 - (1.0 - t) ** n_content  # chance some content is masked
        weights[i, pads] = 1.0 / (p_any + (1.0 - p_any) * t)


def quantized_selection(batch: Batch, quantum: int = 4 * SHAPE_QUANTUM) -> torch.Tensor:
    """The masked positions plus a few unmasked ones, so the number of logit rows is a multiple
    of ``quantum`` (CPU kernels cache one plan per shape; arbitrary counts grow memory)."""
    sel = batch.masked.clone()
    need = (-int(sel.sum())) % quantum
    if need:
        spare = torch.nonzero((~sel).view(-1)).squeeze(1)[:need]
        sel.view(-1)[spare] = True
    return sel


def diffusion_loss(model, batch: Batch) -> tuple[torch.Tensor, dict]:
    """sum over masked positions of CE / t, divided by the number of eligible positions."""
    sel = quantized_selection(batch)
    logits = model(batch.input_ids, attention_mask=batch.attention_mask, logits_at=sel).logits
    targets = batch.targets[sel]
    weights = (batch.weights * batch.masked)[sel]  # padding rows weigh nothing
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    loss = (ce * weights).sum() / max(1, batch.n_eligible)
    with torch.no_grad():
        real = batch.masked[sel]
        stats = {}
        if batch.context is not None:  # canvas and plain figures apart from the context's
            in_context = batch.context[sel] & real
            stats = {"context_ce": ce[in_context].mean().item() if in_context.any() else 0.0,
                     "context_masked": int(in_context.sum())}
            real = real & ~batch.context[sel]
        acc = (logits.argmax(-1)[real] == targets[real]).float().mean().item()
    return loss, {"ce": ce[real].mean().item(), "masked_acc": acc, "masked": int(real.sum()), **stats}
