"""The autoregressive peer's completer: greedy fill-in-the-middle with a causal checkpoint.

The prompt is the PSM row (``model.fim``) of the prefix and suffix windows the diffusion model
reads (``model.context``, the budgets of the checkpoint's config), so both models see the same
context. Decoding is greedy on a KV cache: one forward pass for the prompt, then one per token,
until ``<eoi>``, the end of the line (a one-line hole) or the token budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from diffill.model.context import Window, encode_window, window_of
from diffill.model.fim import psm_prompt
from diffill.model.tokenizer import CodeTokenizer


@dataclass
class PeerFill:
    text: str
    tokens: list[int]  # the middle's tokens, without the one that stopped it
    forward_passes: int


class PeerCompleter:
    """Fills holes with a causal network (``config.causal``) and its tokenizer."""

    def __init__(self, model, tok: CodeTokenizer, window: Window | None = None):
        if not getattr(model.config, "causal", False):
            raise ValueError("the peer completer needs a causal checkpoint (config.json: \"causal\": true)")
        self.model, self.tok = model, tok
        self.window = window or window_of(model.config)
        # never part of a middle: padding, the sentinels and <bos>
        self.banned = torch.tensor(sorted({tok.pad_id, tok.mask_id, tok.bos_id}),
                                   device=model.embed_tokens.weight.device)

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> PeerCompleter:
        from diffill.model.loading import load_network

        model, tok = load_network(path, dtype=dtype)
        model.fuse_projections()  # as the engine serves the diffusion model, so latencies compare
        return cls(model, tok)

    def prompt(self, prefix: str, suffix: str) -> list[int]:
        return psm_prompt(self.tok, *encode_window(self.tok, prefix, suffix, self.window))

    def fill(self, prefix: str, suffix: str, budget: int, one_line: bool = True) -> PeerFill:
        tokens, passes = self.generate(self.prompt(prefix, suffix), budget, one_line)
        text = self.tok.decode(tokens)
        if one_line:
            text = text.split("\n", 1)[0]
        return PeerFill(text, tokens, passes)

    @torch.inference_mode()
    def generate(self, prompt: list[int], budget: int, one_line: bool = True,
                 cached: bool = True) -> tuple[list[int], int]:
        """Greedy middle tokens after ``prompt`` and the forward passes spent; ``cached=False``
        runs the whole row every step (the reference the cache must match)."""
        device = self.model.embed_tokens.weight.device
        row = torch.tensor([prompt], device=device)
        out: list[int] = []
        past, passes = None, 0
        while len(out) < budget:
            if cached:
                logits, past = self.model.forward_causal(row if past is None else row[:, -1:], past)
            else:
                logits = self.model(row).logits[:, -1]
            passes += 1
            token = int(logits[0].float().index_fill(0, self.banned, float("-inf")).argmax())
            if self._ends(token, one_line):
                break
            out.append(token)
            if one_line and "\n" in self.tok.token_text(token):
                break
            row = torch.cat([row, torch.tensor([[token]], device=device)], dim=1)
        return out, passes

    def _ends(self, token: int, one_line: bool) -> bool:
        return token == self.tok.eoi_id or (one_line and token in self.tok.line_break_ids())
