"""Held-out evaluation: whole-line infill exact match and masked-token accuracy.

Cases are drawn with a fixed seed from held-out files (the corpus's held-out split, or the
files of this interpreter's standard library and site-packages that the content-hash split
holds out). From a corpus's held-out split, ``heldout_split`` leaves out the files that have a
near-twin in its training split (model.neartwins): other versions and vendored copies of files
the model was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffill.errors import DiffillError
from diffill.model.backend import DiffillBackend
from diffill.model.beam import LINE_BEAM
from diffill.model.context import Window, encode_window
from diffill.model.copying import Copying
from diffill.model.objective import noise_batch, plain_example
from diffill.model.decoders import Decoder
from diffill.model.decoding import Request, SamplerConfig
from diffill.model.tokenizer import CodeTokenizer

LINE_BUDGET = 24


def heldout_texts(corpus: str | Path | None = None, roots: list[Path] | None = None) -> list[str]:
    """Texts to draw held-out holes from: a corpus folder's held-out split, any folder of Python
    sources, or (no ``corpus``) the files of this interpreter's library that the content-hash
    split holds out (under ``roots``, default: the standard library and site-packages)."""
    from diffill.model.corpus import heldout_files, load_texts

    if corpus:
        folder = Path(corpus)
        if (folder / "manifest.json").is_file():
            texts = [f.text for f in load_texts(folder, "heldout")]
        elif folder.is_dir():
            paths = sorted(folder.rglob("*.py"))
            texts = [p.read_text(encoding="utf-8", errors="replace") for p in paths]
            binary = [p for p, t in zip(paths, texts) if "\x00" in t]
            if binary:
                raise DiffillError(f"--corpus {corpus}: {binary[0]} looks binary (it contains NUL characters)"
                                   + (f", and {len(binary) - 1} more .py files" if len(binary) > 1 else ""))
        else:
            raise DiffillError(f"--corpus {corpus}: no such folder")
    else:
        texts = [f.text for f in heldout_files(roots)]
    if not texts:
        raise DiffillError("no held-out files to draw holes from")
    return texts


@dataclass
class HeldoutSplit:
    """The held-out texts to draw holes from, and what the near-twin rule left out."""

    texts: list[str]
    files: int  # held-out files before any were left out
    lines: int  # their non-blank lines
    left_out_files: int = 0
    left_out_lines: int = 0
    rule: dict | None = None  # the near-twin rule applied (None: none was)
    left_out: list[str] = field(default_factory=list)  # paths of the files left out

    def report(self) -> dict:
        return {"heldout_files": self.files - self.left_out_files, "heldout_lines": self.lines - self.left_out_lines,
                "near_twin_files_left_out": self.left_out_files, "near_twin_lines_left_out": self.left_out_lines,
                "near_twin_rule": self.rule}


def _nonblank_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def heldout_split(corpus: str | Path | None = None, keep_near_twins: bool = False) -> HeldoutSplit:
    """``heldout_texts``, less the held-out files of a corpus that have a near-twin in its training
    split (unless ``keep_near_twins``; other sources have no training split to compare with)."""
    from diffill.model.corpus import heldout_near_twins, load_texts
    from diffill.model.neartwins import TwinRule

    if not (corpus and (Path(corpus) / "manifest.json").is_file()) or keep_near_twins:
        texts = heldout_texts(corpus)
        return HeldoutSplit(texts, len(texts), sum(map(_nonblank_lines, texts)))
    folder, rule = Path(corpus), TwinRule()
    held = load_texts(folder, "heldout")
    twins = heldout_near_twins(folder, rule)
    texts = [f.text for i, f in enumerate(held) if i not in twins]
    if not texts:
        raise DiffillError(f"every held-out file of {corpus} has a near-twin in its training split "
                           "(--keep-near-twins draws from them all)")
    return HeldoutSplit(texts, len(held), sum(_nonblank_lines(f.text) for f in held), len(twins),
                        sum(_nonblank_lines(held[i].text) for i in twins), rule.as_dict(),
                        [held[i].path for i in twins])


@dataclass
class LineCase:
    prefix: str
    suffix: str
    target: str


def _is_code_line(stripped: str) -> bool:
    return bool(stripped) and not stripped.startswith("#") and stripped not in ('"""', "'''")


def line_cases(texts: list[str], n: int, seed: int = 0) -> list[LineCase]:
    """``n`` holes, each the text of one non-blank, non-comment line after its indentation; as
    many as the texts have such lines when they have fewer than ``n``."""
    rng = np.random.default_rng(seed)
    cases: list[LineCase] = []
    order = rng.permutation(len(texts))
    lines = [t.split("\n") for t in texts]
    candidates = [[j for j, line in enumerate(ls) if _is_code_line(line.strip())] for ls in lines]
    n = min(n, sum(map(len, candidates)))
    if n == 0:
        raise DiffillError("the held-out files have no code lines to draw cases from")
    per_file = max(1, -(-n // max(1, len(texts))))
    while len(cases) < n:
        for i in order:
            text, cand = texts[i], candidates[i]
            for j in rng.choice(cand, size=min(per_file, len(cand)), replace=False) if cand else []:
                line = lines[i][j]
                indent = len(line) - len(line.lstrip())
                start = sum(len(x) + 1 for x in lines[i][:j]) + indent
                end = start + len(line.strip())
                cases.append(LineCase(text[:start], text[end:], text[start:end]))
                if len(cases) == n:
                    return cases
        per_file += 1
    return cases


def line_sampler(beam: int | None = None) -> SamplerConfig:
    """How line holes are filled: as the engine fills one-line holes (beam search, ``LINE_BEAM``
    candidates), or with ``beam`` candidates (0: threshold decoding, as the learning curve's
    points are measured)."""
    if beam is not None and beam < 0:
        raise DiffillError("beam must not be negative")
    return SamplerConfig(beam=LINE_BEAM if beam is None else beam)


def line_infill(backend, tok: CodeTokenizer, cases: list[LineCase], sampler_cfg: SamplerConfig,
                window: Window | None = None, batch: int = 32, outcomes: list[bool] | None = None,
                copy: bool = True, more=()) -> dict:
    """Exact match, one-line overrun rate and tokens per forward pass over ``cases``; each case's
    exact-match outcome is appended to ``outcomes`` when given. With ``copy``, as the engine fills
    a one-line hole: the beam mixes in continuations from the case's whole file and from ``more``
    (a workspace adapter's repository, a library index; model/ngram.py)."""
    sampler = Decoder(backend, sampler_cfg)
    window = window or backend.window  # the model's own, unless given
    exact = overrun = 0
    passes = tokens = 0
    for s in range(0, len(cases), batch):
        chunk = cases[s : s + batch]
        reqs = [Request(*encode_window(tok, c.prefix, c.suffix, window),
                        copying=Copying.for_hole(tok, c.prefix, c.suffix, more, getattr(backend, "bos_id", None))
                        if copy else None) for c in chunk]
        for c, r in zip(chunk, sampler.sample(reqs, LINE_BUDGET)):
            text = tok.decode(r.tokens)
            hit = text.strip() == c.target.strip()
            exact += hit
            overrun += "\n" in text.strip("\n")
            passes += r.forward_passes
            tokens += len(r.tokens)
            if outcomes is not None:
                outcomes.append(hit)
    n = max(1, len(cases))
    return {"line_infill_exact_match": exact / n, "line_overrun_rate": overrun / n,
            "tokens_per_forward": tokens / max(1, passes)}


def peer_line_infill(model, tok: CodeTokenizer, cases: list[LineCase]) -> dict:
    """Exact match of ``cases`` filled by a causal checkpoint's greedy fill-in-the-middle
    (``model.peer``), from its own window, and its forward passes a hole."""
    from diffill.model.peer import PeerCompleter

    completer = PeerCompleter(model, tok)
    exact = passes = 0
    for c in cases:
        fill = completer.fill(c.prefix, c.suffix, LINE_BUDGET)
        exact += fill.text.strip() == c.target.strip()
        passes += fill.forward_passes
    n = max(1, len(cases))
    return {"line_infill_exact_match": exact / n, "forward_passes": passes / n, "cases": len(cases)}


def engine_line_infill(engine, cases: list[LineCase], language: str = "python", batch: int = 32) -> dict:
    """Exact match and one-line overrun rate of ``cases`` filled through ``engine.infill_many`` as an
    editor's one-line completion is: with the syntax constraint, the latency bound and
    post-processing, which ``line_infill`` leaves out (the same canvas budget)."""
    from diffill.engine import InfillRequest

    exact = overrun = 0
    for s in range(0, len(cases), batch):
        chunk = cases[s : s + batch]
        reqs = [InfillRequest(c.prefix + c.suffix, len(c.prefix), len(c.prefix), language=language,
                              max_tokens=LINE_BUDGET, multiline=False) for c in chunk]
        for c, r in zip(chunk, engine.infill_many(reqs)):
            exact += r.text.strip() == c.target.strip()
            overrun += "\n" in r.raw.strip("\n")
    n = max(1, len(cases))
    return {"line_infill_exact_match": exact / n, "line_overrun_rate": overrun / n}


def sign_test(only_first: int, only_second: int) -> float:
    """Two-sided exact sign test (McNemar's, exact) on the discordant cases of a paired comparison:
    the chance of a split at least this uneven if either model were as likely to win each one."""
    n, k = only_first + only_second, min(only_first, only_second)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def compare_line_infill(models: list[tuple], texts: list[str], seeds: list[int],
                        cases: int = 500, sampler_cfg: SamplerConfig | None = None, copy: bool = True) -> dict:
    """The same held-out line holes (``cases`` per seed) filled by each model: exact match and
    overrun per model, and for each later model against the first, the holes only one of the two
    gets right and the sign test's p-value. ``models``: (name, model, tokenizer[, caches to copy
    from besides each hole's file])."""
    holes = [c for seed in seeds for c in line_cases(texts, cases, seed)]
    rows, outcomes = [], []
    for name, model, tok, *more in models:
        hits: list[bool] = []
        figures = line_infill(DiffillBackend(model, tok), tok, holes, sampler_cfg or line_sampler(), outcomes=hits,
                              copy=copy, more=more[0] if more else ())
        rows.append({"model": name, "exact": sum(hits), **figures})
        outcomes.append(hits)
    pairs = []
    for row, hits in zip(rows[1:], outcomes[1:]):
        only_first = sum(a and not b for a, b in zip(outcomes[0], hits))
        only_second = sum(b and not a for a, b in zip(outcomes[0], hits))
        pairs.append({"first": rows[0]["model"], "second": row["model"], "only_first": only_first,
                      "only_second": only_second, "p_value": sign_test(only_first, only_second)})
    return {"models": rows, "pairs": pairs, "cases": len(holes), "seeds": seeds}


@torch.inference_mode()
def masked_token_accuracy(model, tok: CodeTokenizer, token_stream: np.ndarray, n: int = 200,
                          length: int = 128, ratio: float = 0.5, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    correct = total = 0
    for s in range(0, n, 32):
        exs = [plain_example(token_stream, rng, length) for _ in range(min(32, n - s))]
        b = noise_batch(exs, tok, rng, t=np.full(len(exs), ratio))
        logits = model(b.input_ids, attention_mask=b.attention_mask, logits_at=b.masked).logits
        correct += int((logits.argmax(-1) == b.targets[b.masked]).sum())
        total += int(b.masked.sum())
    return correct / max(1, total)


def heldout_figures(model, tok: CodeTokenizer, texts: list[str], cases: int = 500, seed: int = 0,
                    sampler_cfg: SamplerConfig | None = None, copy: bool = True,
                    more=(), engine=None) -> dict:
    """Line infill and masked-token accuracy; with ``engine``, the line holes are filled through
    it (``engine_line_infill``) instead of by the sampler alone."""
    holes = line_cases(texts, cases, seed)
    if engine is not None:
        figures = engine_line_infill(engine, holes)
    else:
        figures = line_infill(DiffillBackend(model, tok), tok, holes, sampler_cfg or line_sampler(), copy=copy,
                              more=more)
    stream = np.asarray([i for t in texts for i in [tok.bos_id] + tok.encode(t)], dtype=np.int64)
    figures["masked_token_accuracy"] = masked_token_accuracy(model, tok, stream, seed=seed)
    figures["cases"] = len(holes)
    return figures
