"""Backends: the one small interface the sampler talks to.

A backend turns (prefix ids, canvas ids, suffix ids) rows into logits at the canvas slots. It
says which id is the mask and the end of infill, and whether its logits are shifted by one
(Dream and DiffuCoder: ``logits[:, i]`` predicts token ``i + 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


class Backend(Protocol):
    mask_id: int
    eoi_id: int
    banned_ids: list[int]  # never generated (pad, mask, bos)

    def prepare(self, prefixes: list[list[int]], suffixes: list[list[int]], length: int,
                cache: bool) -> object: ...

    def logits(self, state: object, canvas: torch.Tensor) -> torch.Tensor:
        """(B, L) canvas ids -> (B, L, V) float logits at the canvas slots."""
        ...


@dataclass
class Layout:
    input_ids: torch.Tensor  # (B, T) prefix + canvas + suffix, right-padded
    attention_mask: torch.Tensor  # (B, T)
    canvas_index: torch.Tensor  # (B, L) positions of canvas slots
    context: list | None = None  # per-layer cached keys/values of prefix + suffix
    context_mask: torch.Tensor | None = None


def layout_rows(prefixes, suffixes, length, mask_id, pad_id, shifted: bool = False) -> Layout:
    rows = [p + [mask_id] * length + s for p, s in zip(prefixes, suffixes)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    index = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (r, p) in enumerate(zip(rows, prefixes)):
        ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
        index[i] = torch.arange(len(p), len(p) + length) - (1 if shifted else 0)
    return Layout(ids, attn, index)


class DiffillBackend:
    """The project's own network (``model.network.DiffillForMaskedLM``)."""

    def __init__(self, model, tokenizer):
        self.model = model.eval()
        self.tok = tokenizer
        self.mask_id = tokenizer.mask_id
        self.eoi_id = tokenizer.eoi_id
        self.banned_ids = [tokenizer.pad_id, tokenizer.mask_id, tokenizer.bos_id]

    def prepare(self, prefixes, suffixes, length, cache=False) -> Layout:
        lay = layout_rows(prefixes, suffixes, length, self.mask_id, self.tok.pad_id)
        if cache:
            kv = self.model.encode_context(
                lay.input_ids,
                torch.arange(lay.input_ids.shape[1])[None].expand_as(lay.input_ids),
                lay.attention_mask,
            )
            # keep the context positions only: every position but the canvas slots
            keep = lay.attention_mask.bool().clone()
            keep.scatter_(1, lay.canvas_index, False)
            n = int(keep.sum(1).max())
            idx = torch.zeros((keep.shape[0], n), dtype=torch.long)
            cmask = torch.zeros((keep.shape[0], n), dtype=torch.long)
            for i in range(keep.shape[0]):
                pos = torch.nonzero(keep[i]).squeeze(1)
                idx[i, : len(pos)] = pos
                cmask[i, : len(pos)] = 1
            g = idx[:, None, :, None]
            lay.context = [
                tuple(t.gather(2, g.expand(-1, t.shape[1], -1, t.shape[3])) for t in layer_kv)
                for layer_kv in kv
            ]
            lay.context_mask = cmask
        return lay

    @torch.inference_mode()
    def logits(self, state: Layout, canvas: torch.Tensor) -> torch.Tensor:
        if state.context is not None:
            return self.model.forward_canvas(canvas, state.canvas_index, state.context, state.context_mask).float()
        ids = state.input_ids.scatter(1, state.canvas_index, canvas)
        return self.model(ids, attention_mask=state.attention_mask, logits_at=state.canvas_index).logits.float()
