"""Training rows for a LoRA adapter on an open diffusion code model (``model.families``).

Each row is laid out as the family's backend lays out an infill at inference
(``FamilyBackend.rows``: its lead and tail tokens around prefix + canvas + suffix, its mask and
end-of-infill tokens), and the loss is read where that backend reads a slot's logits (one position
to the left for a shifted family such as Dream). The middles, the canvas noise and the ``1/t``
weighting are the project's objective (``model.objective``); a batch's canvases share one length,
its longest, the shorter ones padded with more end-of-infill targets as a fill's unused slots are.
Only infill rows are drawn: plain sequences would not use the family's infill layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from diffill.adapters.training import AdaptConfig, TrainingFile
from diffill.model.objective import Example, infill_example, noise_batch


@dataclass
class CanvasBatch:
    input_ids: torch.Tensor  # (B, T) the family's rows, masked canvas slots holding its mask token
    attention_mask: torch.Tensor | None  # (B, T); None when no row is padded
    canvas_index: torch.Tensor  # (B, L) where each canvas slot's logits are
    targets: torch.Tensor  # (B, L) the slots' tokens: the middle, then end-of-infill tokens
    masked: torch.Tensor  # (B, L) bool: the slots whose loss counts
    weights: torch.Tensor  # (B, L) 1 / the chance each slot was masked
    n_eligible: float  # canvas slots in the batch

    def to(self, device) -> CanvasBatch:
        return CanvasBatch(self.input_ids.to(device),
                           None if self.attention_mask is None else self.attention_mask.to(device),
                           self.canvas_index.to(device), self.targets.to(device), self.masked.to(device),
                           self.weights.to(device), self.n_eligible)


class FamilySpanData:
    """Batches of infill rows in ``backend``'s layout, a pure function of (seed, step); files
    weighted by sqrt(size), middles by the objective's mix (no tree-sitter node middles for files
    without a grammar)."""

    def __init__(self, files: list[TrainingFile], backend, cfg: AdaptConfig):
        if not files:
            raise ValueError("no training files")
        self.files, self.backend, self.tok = files, backend, backend.tok
        self.cfg = replace(cfg, objective=replace(cfg.objective, window=cfg.window or backend.window))
        sizes = np.sqrt(np.array([max(1, len(f.text)) for f in files], dtype=float))
        self.weights = sizes / sizes.sum()
        names, p = self.cfg.objective.mix.kinds()
        self.kinds = names
        self.p_syntax = p
        no_node = np.where(np.array(names) == "node", 0.0, p)
        self.p_plain_text = no_node / no_node.sum()

    def _examples(self, rng: np.random.Generator) -> list[Example]:
        out: list[Example] = []
        for _ in range(50 * self.cfg.batch_size):
            f = self.files[rng.choice(len(self.files), p=self.weights)]
            p = self.p_syntax if f.syntax_spans else self.p_plain_text
            ex = infill_example(f.text, self.tok, rng, self.cfg.objective, kind=self.kinds[rng.choice(len(p), p=p)])
            if ex is not None:
                out.append(ex)
                if len(out) == self.cfg.batch_size:
                    return out
        raise ValueError("the training files give no infill middles (too short?)")

    def batch(self, step: int) -> CanvasBatch:
        rng = np.random.default_rng([self.cfg.seed, step])
        examples = self._examples(rng)
        prefixes, canvases, suffixes = [], [], []
        for e in examples:
            a = e.eligible.index(True)
            b = a + sum(e.eligible)
            prefixes.append(e.ids[:a])
            canvases.append(e.ids[a:b])
            suffixes.append(e.ids[b:])
        length = max(len(c) for c in canvases)
        eoi = self.tok.eoi_id
        canvases = [c + [eoi] * (length - len(c)) for c in canvases]
        noised = noise_batch([Example(c, [True] * length, canvas=True) for c in canvases], self.tok, rng,
                             objective=self.cfg.objective)
        lay = self.backend.rows(prefixes, suffixes, length)
        slots = lay.canvas_index + (1 if self.backend.shifted else 0)
        ids = lay.input_ids.scatter(1, slots, noised.input_ids[:, :length])
        return CanvasBatch(ids, lay.attention_mask, lay.canvas_index, noised.targets[:, :length],
                           noised.masked[:, :length], noised.weights[:, :length], float(len(examples) * length))


def canvas_loss(model, batch: CanvasBatch) -> tuple[torch.Tensor, dict]:
    """sum over masked canvas slots of CE / t, divided by the number of canvas slots; the logits of
    a slot are read where the family's backend reads them (``canvas_index``)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, logits_at=batch.canvas_index).logits
    ce = F.cross_entropy(logits.float().flatten(0, 1), batch.targets.flatten(), reduction="none").view_as(batch.targets)
    loss = (ce * batch.weights * batch.masked).sum() / max(1.0, batch.n_eligible)
    with torch.no_grad():
        real = batch.masked
        acc = (logits.argmax(-1)[real] == batch.targets[real]).float().mean().item() if real.any() else 0.0
        mean_ce = ce[real].mean().item() if real.any() else 0.0
    return loss, {"ce": mean_ce, "masked_acc": acc, "masked": int(real.sum())}
