"""``diffill bench passes --model DIR [--device cpu|cuda|auto]``: what one request costs a
model of a given shape, for shape-only checkpoints (``diffill init-model``) whose fills mean nothing.

It fills the rest of a line in the middle of a source file twice (the first request, with the
tokenizer's tables built on the way, and the same request again), then times the two kinds of
forward pass alone: the whole window (prefix + canvas + suffix) and the canvas against the cached
context (``cache=True``). Prints one JSON object.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


SOURCE = Path(__file__).resolve().parents[1] / "postprocess.py"  # a file of a few hundred lines
CANVAS = 16  # a one-line hole's budget


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000.0, 1)


def measure(model: str, device: str = "auto", threads: int = 2, repeats: int = 2) -> dict:
    import torch

    from diffill.engine import Engine, EngineConfig, InfillRequest
    from diffill.model.context import encode_window

    t0 = time.perf_counter()
    engine = Engine(EngineConfig(model=model, device=device, threads=threads))
    out: dict = {"model": model, "backend": engine.config.backend, "dtype": engine.dtype, "threads": threads,
                 "device": str(next(engine.model.parameters()).device), "load_ms": _ms(t0),
                 "parameters": sum(p.numel() for p in engine.model.parameters())}
    text = SOURCE.read_text()
    hole = text.index("    return ", len(text) // 2) + len("    return ")
    text = text[:hole] + text[text.index("\n", hole):]
    req = InfillRequest(text, hole, hole, language="python")
    for name in ("first_request", "repeat"):
        t = time.perf_counter()
        r = engine.infill(req)
        out[name] = {"ms": _ms(t), "forward_passes": r.forward_passes, "tokens": r.tokens}
    pre, suf = encode_window(engine.tok, text[:hole], text[hole:], engine.window)
    out["window_tokens"] = len(pre) + CANVAS + len(suf)
    canvas = torch.full((1, CANVAS), engine.tok.mask_id)
    full, part = [], []
    for _ in range(repeats):
        state = engine.backend.prepare([pre], [suf], CANVAS, cache=True)
        t = time.perf_counter()
        engine.backend.logits(state, canvas)
        full.append(_ms(t))
        t = time.perf_counter()
        engine.backend.logits(state, canvas)
        part.append(_ms(t))
    out["full_pass_ms"], out["canvas_pass_ms"] = full, part
    return out


def run(args) -> int:
    print(json.dumps(measure(args.model, args.device, args.threads, args.repeats)))
    return 0
