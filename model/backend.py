"""Backends: the one small interface the sampler talks to.

A backend turns (prefix ids, canvas ids, suffix ids) rows into logits at canvas slots. It says
which id is the mask and the end of infill, and whether its model's logits are shifted by one
(Dream and DiffuCoder: ``logits[:, i]`` predicts token ``i + 1``); the backend undoes the shift,
so the sampler always receives the logits *of* each canvas slot.

* ``DiffillBackend``: the project's own network, exact or with the context cache.
* ``MaskedLMBackend``: any transformers masked-LM checkpoint in a local folder (BERT-like
  ``AutoModelForMaskedLM``, or Dream/LLaDA-style remote code when the user passes
  ``trust_remote_code``).
* ``DiffusionGemmaBackend``: transformers' DiffusionGemma (block diffusion, uniform noise).

``model.foreign.load_backend`` builds the backend of another model's folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import torch

from diffill.model.context import Window, window_of
from diffill.model.context_reuse import ContextReuse, Encoded
from diffill.model.layers import with_room
from diffill.model.tokenizer import CodeTokenizer

log = logging.getLogger(__name__)

# dream, dreamon, llada, open_dcoder: the project's own implementations of those families (model/families)
BACKENDS = ("diffill", "masked_lm", "diffusion_gemma", "dream", "dreamon", "llada", "open_dcoder")


class Backend(Protocol):
    mask_id: int
    eoi_id: int
    banned_ids: list[int]  # never generated (pad, mask, bos)
    shifted: bool  # the model's logits are shifted by one (the backend undoes it)
    window: Window  # the prefix and suffix token budgets the model reads

    def prepare(self, prefixes: list[list[int]], suffixes: list[list[int]], length: int,
                cache: bool = False, refresh: int = 0) -> object:
        """State for one batch of canvases of ``length`` slots. ``cache``: compute the context
        once and reuse it (approximate); ``refresh``: recompute it every that many calls."""
        ...

    def logits(self, state: object, canvas: torch.Tensor, slots: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) canvas ids -> float logits (B, L, V), or (B, K, V) at canvas slots ``slots`` (B, K)."""
        ...


@dataclass
class Layout:
    input_ids: torch.Tensor  # (B, T) prefix + canvas + suffix, right-padded
    attention_mask: torch.Tensor | None  # (B, T); None when no row is padded
    canvas_index: torch.Tensor  # (B, L) positions whose logits belong to the canvas slots
    cache: bool = False
    refresh: int = 0
    calls: int = 0
    context: list | None = None  # per-layer cached keys/values of prefix + suffix
    context_index: torch.Tensor | None = None  # (B, C) positions of the context
    context_mask: torch.Tensor | None = None  # (B, C); None when no row is padded
    rope: tuple | None = None  # cos/sin of the canvas positions
    # per layer, the context's keys and values and room for the canvas's (layers.with_room); the
    # context above is a view of it where it is set
    room: list | None = None
    reuse: ContextReuse | None = None  # contexts kept across requests (one row only)
    window: tuple[list[int], list[int]] | None = None  # the row's prefix and suffix ids, for ``reuse``

    def take(self, rows: torch.Tensor) -> Layout:
        """The state of rows ``rows`` (a LongTensor of row indices, repeats allowed): how beam
        search copies a row's computed context to each of its candidates, and drops finished ones."""
        def pick(t):
            return None if t is None else t.index_select(0, rows.to(t.device))

        out = Layout(pick(self.input_ids), pick(self.attention_mask), pick(self.canvas_index),
                     self.cache, self.refresh, self.calls)
        if self.room is not None:
            out.room = [tuple(pick(t) for t in kv) for kv in self.room]
            out.context = _context_of(out.room, self.context_index.shape[1])
        else:
            out.context = None if self.context is None else [tuple(pick(t) for t in kv) for kv in self.context]
        out.context_index, out.context_mask = pick(self.context_index), pick(self.context_mask)
        out.rope = None if self.rope is None else tuple(pick(t) for t in self.rope)
        return out


def layout_rows(prefixes, suffixes, length, mask_id, pad_id, shifted: bool = False, multiple: int = 1) -> Layout:
    """Rows of prefix + canvas + suffix, right-padded to the longest, and that width rounded up
    to ``multiple`` (so the network sees few distinct shapes)."""
    rows = [p + [mask_id] * length + s for p, s in zip(prefixes, suffixes)]
    width = -(-max(len(r) for r in rows) // multiple) * multiple
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    index = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (r, p) in enumerate(zip(rows, prefixes)):
        if shifted and not p:
            raise ValueError("a backend with shifted logits needs at least one prefix token")
        ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
        index[i] = torch.arange(len(p), len(p) + length) - (1 if shifted else 0)
    return Layout(ids, None if bool(attn.all()) else attn, index)


def _context_of(room: list, length: int) -> list:
    """The context part (the first ``length`` positions) of ``Layout.room``, as views."""
    return [(k[:, :, :length], v[:, :, :length]) for k, v in room]


def _canvas_positions(lay: Layout, shifted: bool) -> torch.Tensor:
    return lay.canvas_index + (1 if shifted else 0)


def _pick(index: torch.Tensor, slots: torch.Tensor | None) -> torch.Tensor:
    return index if slots is None else index.gather(1, slots)


class DiffillBackend:
    """The project's own network (``model.network.DiffillForMaskedLM``).

    Exact path: the whole row (prefix + canvas + suffix) through the network every step.
    Cached path (Fast-dLLM dual cache): the first call runs the whole row once, keeps every
    layer's keys and values of the prefix and suffix, and returns that pass's (exact) logits;
    later calls run only the canvas through the layers against that cache. The context's
    states then stay those computed with the canvas as it was (all masks), which is the
    approximation; ``refresh`` recomputes them every that many calls.

    With ``reuse`` (cached path, one row), the context of an earlier request whose window differs
    only near the cursor is completed rather than encoded whole (``model.context_reuse``).
    """

    shifted = False
    # bfloat16 on CPU: oneDNN keeps kernels per input shape, so a long-running process that sees
    # every row width grows (600 one-line holes through the engine, step-9800 model: 374 -> 592 MB);
    # widths rounded up to this multiple keep it flat (374 -> 432 MB; p50 47.7 -> 48.0 ms).
    # float32: no rounding
    BF16_WIDTH_MULTIPLE = 32

    def __init__(self, model, tokenizer: CodeTokenizer, reuse: ContextReuse | None = None):
        self.model = model.eval()
        self.reuse = reuse
        self.width_multiple = self.BF16_WIDTH_MULTIPLE if model.dtype == torch.bfloat16 else 1
        self.tok = tokenizer
        self.mask_id = tokenizer.mask_id
        self.eoi_id = tokenizer.eoi_id
        self.bos_id = tokenizer.bos_id
        self.banned_ids = [tokenizer.pad_id, tokenizer.mask_id, tokenizer.bos_id]

    @property
    def window(self) -> Window:
        """The window the served weights were trained with (an adapter may widen the base's)."""
        return window_of(self.model.config)

    def prepare(self, prefixes, suffixes, length, cache=False, refresh=0) -> Layout:
        lay = layout_rows(prefixes, suffixes, length, self.mask_id, self.tok.pad_id, multiple=self.width_multiple)
        lay.cache, lay.refresh = cache, refresh
        device = self.model.device
        if device.type != "cpu":  # the sampler keeps its tensors on the CPU; the state lives by the model
            lay.input_ids, lay.canvas_index = lay.input_ids.to(device), lay.canvas_index.to(device)
            lay.attention_mask = None if lay.attention_mask is None else lay.attention_mask.to(device)
        if cache:
            keep = torch.ones_like(lay.input_ids, dtype=torch.bool)
            if lay.attention_mask is not None:
                keep &= lay.attention_mask.bool()
            keep.scatter_(1, lay.canvas_index, False)
            counts = keep.sum(1)
            n = int(counts.max())
            order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept positions first, in order
            lay.context_index = order[:, :n]
            cmask = torch.arange(n, device=device)[None] < counts[:, None]
            lay.context_mask = None if bool(cmask.all()) else cmask.long()
            from diffill.model.layers import rope_cos_sin

            cos_sin = rope_cos_sin(lay.canvas_index, self.model.head_dim, self.model.config.rope_theta)
            lay.rope = tuple(t.to(self.model.dtype) for t in cos_sin)  # as the layers apply it
            if self.reuse is not None and len(prefixes) == 1:
                lay.reuse, lay.window = self.reuse, (list(prefixes[0]), list(suffixes[0]))
        return lay

    @torch.inference_mode()
    def logits(self, state: Layout, canvas: torch.Tensor, slots: torch.Tensor | None = None) -> torch.Tensor:
        state.calls += 1
        device = state.input_ids.device
        if device.type != "cpu":
            canvas, slots = canvas.to(device), None if slots is None else slots.to(device)
        at = _pick(state.canvas_index, slots)
        if state.cache and state.context is not None and not (state.refresh and (state.calls - 1) % state.refresh == 0):
            if state.room is None:  # a context built on a kept one (_reuse_context)
                n = state.context[0][0].shape[2]
                state.room = with_room(state.context, torch.arange(n, device=device)[None], canvas.shape[1])
            return self.model.forward_canvas(canvas, state.canvas_index, state.context, state.context_mask,
                                             logits_at=slots, rope=state.rope, room=state.room).float().cpu()
        ids = state.input_ids.scatter(1, state.canvas_index, canvas)
        if not state.cache:
            return self.model(ids, attention_mask=state.attention_mask, logits_at=at).logits.float().cpu()
        # a request's first pass over an all-mask canvas is what a later request may build on
        reusable = state.reuse is not None and state.calls == 1 and bool((canvas == self.mask_id).all())
        if reusable and (logits := self._reuse_context(state, canvas, slots)) is not None:
            return logits
        positions = torch.arange(ids.shape[1], device=device)[None].expand_as(ids)
        kv, logits = self.model.encode_context(ids, positions, state.attention_mask, logits_at=at)
        state.room = with_room(kv, state.context_index, canvas.shape[1])
        state.context = _context_of(state.room, state.context_index.shape[1])
        if reusable:
            state.reuse.keep(Encoded(*state.window, canvas.shape[1], state.context))
        return logits.float().cpu()

    def _reuse_context(self, state: Layout, canvas: torch.Tensor, slots: torch.Tensor | None) -> torch.Tensor | None:
        """The first pass built on a kept context (``model.context_reuse``): only the changed
        tokens and the canvas run through the network. None where no kept context fits."""
        prefix, suffix = state.window
        length = canvas.shape[1]
        plan = state.reuse.plan(prefix, suffix, length)
        if plan is None:
            return None
        device = canvas.device
        reused = plan.reused(self.model.config.rope_theta)
        block = torch.tensor([plan.block(canvas[0].tolist())], dtype=torch.long, device=device)
        positions = torch.arange(plan.block_start, plan.block_start + block.shape[1], device=device)[None]
        at = (torch.arange(length, device=device)[None] if slots is None else slots) + len(plan.added_prefix)
        kv, logits = self.model.extend_context(block, positions, reused, logits_at=at)
        state.context, state.room = plan.context(reused, kv), None
        state.reuse.keep(Encoded(prefix, suffix, length, state.context, plan.base.reuses + (not plan.exact)),
                         plan.base)
        return logits.float().cpu()


class ForeignTokenizer(CodeTokenizer):
    """A transformers tokenizer of another model, with the ids the engine needs named explicitly."""

    def __init__(self, hf, mask_id: int, eoi_id: int, pad_id: int | None = None, bos_id: int | None = None):
        self._hf = hf
        self.backend = hf.backend_tokenizer
        self.mask_id, self.eoi_id = mask_id, eoi_id
        self.pad_id = pad_id if pad_id is not None else eoi_id
        self.bos_id = bos_id if bos_id is not None else self.pad_id
        self.vocab_size = len(hf)
        self.special_ids = frozenset(i for i in (self.pad_id, self.mask_id, self.eoi_id, self.bos_id) if i is not None)


class MaskedLMBackend:
    """A transformers masked-LM checkpoint: BERT-like, or Dream/LLaDA-style remote code.

    The model is called on the whole row every step (``model(input_ids, attention_mask).logits``);
    these models bring no canvas cache, so ``cache`` is ignored. ``shifted``: Dream and DiffuCoder
    predict token ``i + 1`` at position ``i``; LLaDA and BERT do not.
    """

    window = Window()

    def __init__(self, model, tokenizer: ForeignTokenizer, shifted: bool = False):
        self.model = model.eval()
        self.tok = tokenizer
        self.shifted = shifted
        self.mask_id, self.eoi_id = tokenizer.mask_id, tokenizer.eoi_id
        self.banned_ids = sorted({tokenizer.mask_id, tokenizer.pad_id} - {tokenizer.eoi_id})

    def prepare(self, prefixes, suffixes, length, cache=False, refresh=0) -> Layout:
        return layout_rows(prefixes, suffixes, length, self.mask_id, self.tok.pad_id, self.shifted)

    @torch.inference_mode()
    def logits(self, state: Layout, canvas: torch.Tensor, slots: torch.Tensor | None = None) -> torch.Tensor:
        ids = state.input_ids.scatter(1, _canvas_positions(state, self.shifted), canvas)
        device = self.model.device
        attn = None if state.attention_mask is None else state.attention_mask.to(device)
        out = self.model(input_ids=ids.to(device), attention_mask=attn).logits
        at = _pick(state.canvas_index, slots).to(device)
        return out.gather(1, at[..., None].expand(-1, -1, out.shape[-1])).float().cpu()


@dataclass
class _GemmaState:
    prompts: list[list[int]]
    cache: bool
    noise: torch.Tensor  # (B, L) the uniform-noise token each masked slot is shown as
    past: list | None = None

    def take(self, rows: torch.Tensor) -> _GemmaState:
        """The state of rows ``rows`` (repeats allowed), as ``Layout.take``; the prompts' caches
        are shared, since the decoder only reads them."""
        idx = rows.tolist()
        return _GemmaState([self.prompts[i] for i in idx], self.cache, self.noise.index_select(0, rows),
                           None if self.past is None else [self.past[i] for i in idx])


class DiffusionGemmaBackend:
    """transformers' DiffusionGemma (``DiffusionGemmaForBlockDiffusion``).

    A block-diffusion model: a causal encoder reads the prompt into a KV cache and a
    bidirectional decoder refines a canvas that continues the prompt. Its noise is uniform
    (random tokens), not a mask: masked slots are shown to it as fixed random tokens (seeded,
    so runs repeat). It has no notion of a suffix, so the prompt is the prefix only. With
    ``cache`` the prompt is encoded once per request (exact for this model, whose decoder only
    reads the encoder's cache); without it, every step re-encodes the prompt. Rows run one
    at a time (prompts of different lengths would need left padding in the encoder).
    """

    shifted = False
    window = Window()

    def __init__(self, model, tokenizer: ForeignTokenizer, seed: int = 0):
        self.model = model.eval()
        self.tok = tokenizer
        self.mask_id, self.eoi_id = tokenizer.mask_id, tokenizer.eoi_id
        self.banned_ids = sorted({tokenizer.mask_id, tokenizer.pad_id} - {tokenizer.eoi_id})
        self.vocab_size = model.config.text_config.vocab_size
        self.seed = seed
        # ids the tokenizer does not know are never proposed (model.families.serving.FamilyTokenizer)
        allowed = getattr(tokenizer, "allowed", None)
        self._blocked = None if allowed is None else ~allowed()

    def prepare(self, prefixes, suffixes, length, cache=False, refresh=0) -> _GemmaState:
        gen = torch.Generator().manual_seed(self.seed)
        noise = torch.randint(0, self.vocab_size, (len(prefixes), length), generator=gen)
        prompts = [p if p else [self.tok.bos_id] for p in prefixes]
        return _GemmaState(prompts, cache, noise)

    @torch.inference_mode()
    def logits(self, state: _GemmaState, canvas: torch.Tensor, slots: torch.Tensor | None = None) -> torch.Tensor:
        device = self.model.device
        shown = torch.where(canvas == self.mask_id, state.noise[:, : canvas.shape[1]], canvas).to(device)
        if state.past is None:
            state.past = [None] * len(state.prompts)
        rows = []
        for i, prompt in enumerate(state.prompts):
            if state.cache and state.past[i] is not None:
                out = self.model(past_key_values=state.past[i], decoder_input_ids=shown[i : i + 1])
            else:
                out = self.model(input_ids=torch.tensor([prompt], device=device), decoder_input_ids=shown[i : i + 1])
                if state.cache:
                    state.past[i] = out.past_key_values
            rows.append(out.logits[0])
        out = torch.stack(rows).float().cpu()
        if self._blocked is not None and self._blocked.shape[0] == out.shape[-1]:
            out = out.masked_fill(self._blocked, -1e9)
        if slots is not None:
            out = out.gather(1, slots[..., None].expand(-1, -1, out.shape[-1]))
        return out
