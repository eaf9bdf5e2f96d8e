"""``--trace``: the canvas after each denoising step, so people can watch the code appear."""

from __future__ import annotations

import os
from typing import TextIO

from model.sampler import StepTrace
from model.tokenizer import CodeTokenizer

MASK_GLYPH = "\u2591"  # a light shade block stands for <mask>


class TracePrinter:
    def __init__(self, tok: CodeTokenizer, out: TextIO, colour: bool | None = None):
        self.tok, self.out = tok, out
        self.colour = colour if colour is not None else (out.isatty() and not os.environ.get("NO_COLOR"))

    def render(self, trace: StepTrace, row: int = 0) -> str:
        parts = []
        fresh = set(trace.committed_now[row]) if trace.committed_now else set()
        for slot, t in enumerate(trace.canvas[row]):
            if t == self.tok.mask_id:
                parts.append(MASK_GLYPH)
            elif t == self.tok.eoi_id:
                continue
            else:
                s = self.tok.decode([t])
                parts.append(f"\x1b[1;32m{s}\x1b[0m" if self.colour and slot in fresh else s)
        return "".join(parts)

    def __call__(self, trace: StepTrace) -> None:
        head = f"step {trace.step:>3}  threshold {trace.threshold:.2f}  +{len(trace.committed_now[0]) if trace.committed_now else 0}"
        self.out.write(f"{head}\n{self.render(trace)}\n")
        self.out.flush()
