"""The autoregressive peer's training rows and loss: fill-in-the-middle as StarCoder and SantaCoder do it.

PSM: ``prefix <suf> suffix <mid> middle <eoi>``; SPM: ``<suf> suffix <mid> prefix middle <eoi>``.
The sentinels are tokens the shipped tokenizer already has, so the peer keeps the diffusion model's
vocabulary and embedding: a causal model never reads ``<mask>``, so ``<mask>`` is ``<suf>`` where
it comes first in a row and ``<mid>`` where it comes second; ``<eoi>`` ends the middle. StarCoder's
leading ``<pre>`` is left out: the prefix is read left to right as any plain text is, and a PSM row
with an empty prefix is then the same sequence as an SPM one, as in StarCoder's joint layout.

The holes are the diffusion objective's (``model.objective.draw_hole``: the same middle mix and
context window); the loss is next-token cross-entropy on every position but padding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from diffill.model.objective import SHAPE_QUANTUM, Batch, Example, ObjectiveConfig, draw_hole, quantized_selection
from diffill.model.tokenizer import CodeTokenizer


def suffix_sentinel(tok: CodeTokenizer) -> int:
    return tok.mask_id


def middle_sentinel(tok: CodeTokenizer) -> int:
    return tok.mask_id


def psm_prompt(tok: CodeTokenizer, prefix: list[int], suffix: list[int]) -> list[int]:
    """The PSM row up to where the middle begins (what the completer feeds the model)."""
    return prefix + [suffix_sentinel(tok)] + suffix + [middle_sentinel(tok)]


def fim_row(tok: CodeTokenizer, prefix: list[int], middle: list[int], suffix: list[int], spm: bool) -> list[int]:
    """A whole training row: the prompt, the middle and its ``<eoi>``."""
    if spm:
        head = [suffix_sentinel(tok)] + suffix + [middle_sentinel(tok)] + prefix
    else:
        head = psm_prompt(tok, prefix, suffix)
    return head + middle + [tok.eoi_id]


def causal_example(text: str, tok: CodeTokenizer, rng: np.random.Generator, cfg: ObjectiveConfig) -> Example | None:
    """A FIM row from one of the diffusion objective's holes in ``text`` (one file): SPM with
    probability ``cfg.spm_fraction``, else PSM. Every position but the last is trained."""
    hole = draw_hole(text, tok, rng, cfg)
    if hole is None:
        return None
    ids = fim_row(tok, hole.prefix, hole.middle, hole.suffix, spm=bool(rng.random() < cfg.spm_fraction))
    return Example(ids, [True] * len(ids))


def causal_batch(examples: list[Example], tok: CodeTokenizer) -> Batch:
    """Pad the rows; the target at position i is token i + 1, so every position but a row's last
    and its padding counts (``masked``), each once (weight 1)."""
    width = -(-max(len(e.ids) for e in examples) // SHAPE_QUANTUM) * SHAPE_QUANTUM
    b = len(examples)
    inputs = np.full((b, width), tok.pad_id, dtype=np.int64)
    targets = np.full((b, width), tok.pad_id, dtype=np.int64)
    attn = np.zeros((b, width), dtype=np.int64)
    trained = np.zeros((b, width), dtype=bool)
    for i, e in enumerate(examples):
        n = len(e.ids)
        inputs[i, :n] = e.ids
        targets[i, : n - 1] = e.ids[1:]
        attn[i, :n] = 1
        trained[i, : n - 1] = True
    return Batch(input_ids=torch.from_numpy(inputs), targets=torch.from_numpy(targets),
                 attention_mask=torch.from_numpy(attn), masked=torch.from_numpy(trained),
                 weights=torch.ones((b, width)), n_eligible=float(trained.sum()))


def causal_loss(model, batch: Batch) -> tuple[torch.Tensor, dict]:
    """Mean next-token cross-entropy over the trained positions."""
    sel = quantized_selection(batch)
    logits = model(batch.input_ids, attention_mask=batch.attention_mask, logits_at=sel).logits
    targets, real = batch.targets[sel], batch.masked[sel]
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    loss = (ce * real).sum() / max(1, batch.n_eligible)
    with torch.no_grad():
        acc = (logits.argmax(-1)[real] == targets[real]).float().mean().item()
    return loss, {"ce": ce[real].mean().item(), "next_acc": acc, "trained": int(real.sum())}
