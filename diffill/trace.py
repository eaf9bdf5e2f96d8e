"""``--trace``: the canvas after each denoising step, so people can watch the code appear.

Each step prints a header (step, the confidence threshold, how many slots were committed and how
many masks are left; under beam search, the beam's width) and the canvas: ``░`` for each masked slot, the committed text, and the
slots committed in this step highlighted (bold green) when the output is a colour terminal.
Slots after the end of the infill (``<eoi>``) are not shown.
"""

from __future__ import annotations

import os
from typing import TextIO

from diffill.model.decoding import StepTrace
from diffill.model.tokenizer import CodeTokenizer

MASK_GLYPH = "\u2591"  # a light shade block stands for <mask>
FRESH, RESET = "\x1b[1;32m", "\x1b[0m"


def colour_wanted(out: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set or TERM is dumb."""
    isatty = getattr(out, "isatty", lambda: False)
    return bool(isatty()) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


class TracePrinter:
    def __init__(self, tok: CodeTokenizer, out: TextIO, colour: bool | None = None, row: int = 0):
        self.tok, self.out, self.row = tok, out, row
        self.colour = colour if colour is not None else colour_wanted(out)

    def render(self, trace: StepTrace, row: int | None = None) -> str:
        """The canvas of one row as text. Runs of tokens are decoded together, so characters
        that span several byte-level tokens come out whole."""
        row = self.row if row is None else row
        fresh = set(trace.committed_now[row]) if trace.committed_now else set()
        parts: list[str] = []
        run: list[int] = []
        run_fresh = False

        def flush() -> None:
            if run:
                text = self.tok.decode(run)
                parts.append(f"{FRESH}{text}{RESET}" if self.colour and run_fresh else text)
                run.clear()

        for slot, t in enumerate(trace.canvas[row]):
            if t == self.tok.eoi_id:
                break
            if t == self.tok.mask_id:
                flush()
                parts.append(MASK_GLYPH)
                continue
            is_fresh = slot in fresh
            if run and is_fresh != run_fresh:
                flush()
            run_fresh = is_fresh
            run.append(t)
        flush()
        return "".join(parts)

    def header(self, trace: StepTrace, row: int | None = None) -> str:
        row = self.row if row is None else row
        canvas = trace.canvas[row]
        masks = sum(1 for t in canvas if t == self.tok.mask_id)
        new = len(trace.committed_now[row]) if trace.committed_now else 0
        if trace.beam:
            return f"step {trace.step:>3}  beam of {trace.beam}, the likeliest  {masks} masked"
        return f"step {trace.step:>3}  threshold {trace.threshold:.2f}  +{new} committed  {masks} masked"

    def __call__(self, trace: StepTrace) -> None:
        self.out.write(f"{self.header(trace)}\n{self.render(trace)}\n")
        self.out.flush()
