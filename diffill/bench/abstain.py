"""``diffill bench abstain [--repo DIR] [--corpus DIR] [--cases N] [--json]``: how often a shown
fill is exactly right (precision) against how often one is shown (coverage), as the confidence
threshold rises, and how well the confidence is calibrated (expected calibration error, 10 bins).

Holes are one-line holes as an editor sends them (``diffill.bench.speed.line_holes``): ``line``,
the cursor after a code line's indentation with the rest of the line gone; ``mid_line``, the
cursor at a word boundary inside the line. With ``--repo DIR`` they are drawn from the
repository's own files, and the engine copies from its other files as a language server's
workspace index does (the hole's file left out); otherwise from held-out files (``--corpus``: its
held-out split or a folder of .py files, as ``bench speed``). A fill is exact when it equals the
rest of the line, trailing blanks aside.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffill.bench.speed import Hole, _normal, line_holes
from diffill.confidence import Signals, curve, expected_calibration_error
from diffill.errors import DiffillError
from diffill.loading import engine_config_from

log = logging.getLogger(__name__)

KINDS = ("line", "mid_line")
BATCH = 8  # holes an engine call fills together


@dataclass
class Filled:
    """One hole's fill and runners-up: (confidence, exact, signals) each."""

    hole: Hole
    fill: tuple[float, bool, Signals | None]
    alternatives: list[tuple[float, bool, Signals | None]]
    calibrated: bool


def repo_texts(folder: str) -> tuple[list[str], list[str]]:
    """The repository's Python files (as ``diffill adapt`` collects them): their texts and paths."""
    from diffill.adapters.sources import collect_sources

    root = Path(folder)
    if not root.is_dir():
        raise DiffillError(f"--repo {folder}: no such folder")
    found = [f for f in collect_sources(folder).files if f.path.endswith(".py")]
    if not found:
        raise DiffillError(f"--repo {folder}: no Python files")
    return [f.text for f in found], [str((root / f.path).resolve()) for f in found]


def draw(texts: list[str], n: int, tok, seed: int, kind: str) -> list[Hole]:
    """``n`` holes of ``kind`` (``line`` or ``mid_line``), as ``bench speed`` draws them."""
    holes = line_holes(texts, n, lambda s: len(tok.encode(s)), np.random.default_rng(seed), kind)
    if len(holes) < n:
        log.warning("only %d %s holes (asked for %d)", len(holes), kind, n)
    return holes


def fill(engine, holes: list[Hole], paths: list[str] | None = None,
         neighbors: dict[int, tuple[str, ...]] | None = None) -> list[Filled]:
    """Each hole filled through the engine as an editor's one-line request (``paths``: each text's
    file, which a workspace index leaves out; ``neighbors``: documents to copy from, by text)."""
    from diffill.engine import InfillRequest

    out: list[Filled] = []
    for s in range(0, len(holes), BATCH):
        chunk = holes[s : s + BATCH]
        reqs = [InfillRequest(h.text, h.at, h.at, language="python", multiline=False,
                              path=paths[h.source] if paths else None,
                              neighbors=(neighbors or {}).get(h.source, ())) for h in chunk]
        for h, r in zip(chunk, engine.infill_many(reqs)):
            want = _normal(h.target)
            alts = [(c, _normal(a) == want, sig)
                    for a, c, sig in zip(r.alternatives, r.alternative_confidences, r.alternative_signals)]
            out.append(Filled(h, (r.confidence, bool(r.text.strip()) and _normal(r.text) == want, r.signals),
                              alts, r.confidence_calibrated))
        log.info("%d of %d holes", len(out), len(holes))
    return out


def figures(filled: list[Filled], threshold: float) -> dict:
    """The curve, the calibration error and the figures at ``threshold``, over the holes' fills."""
    points = [f.fill[:2] for f in filled]
    shown = [y for c, y in points if c >= threshold]
    return {"threshold": threshold, "cases": len(points),
            "precision": round(sum(shown) / len(shown), 4) if shown else None,
            "coverage": round(len(shown) / max(1, len(points)), 4),
            "exact": round(sum(y for _, y in points) / max(1, len(points)), 4),  # everything shown
            "ece": round(expected_calibration_error(points), 4),
            "mean_confidence": round(sum(c for c, _ in points) / max(1, len(points)), 4),
            "calibrated": all(f.calibrated for f in filled),
            "curve": curve(points)}


def run(args) -> int:
    from diffill.engine import Engine
    from diffill.evaluation import heldout_texts

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if not kinds or any(k not in KINDS for k in kinds):
        raise DiffillError(f"--kinds {args.kinds!r}: choose from {', '.join(KINDS)}")
    engine = Engine(engine_config_from(args))
    paths = None
    if args.repo:
        texts, paths = repo_texts(args.repo)
        engine.index_workspace([args.repo])
    else:
        texts = heldout_texts(args.corpus)
    out: dict = {"model": engine.info()["model"], "adapter": engine.info()["adapter"],
                 "library": engine.info()["library"], "source": args.repo or args.corpus or "heldout",
                 "copy": args.copy, "kinds": {}}
    for kind in kinds:
        out["kinds"][kind] = figures(fill(engine, draw(texts, args.cases, engine.tok, args.seed, kind), paths),
                                     args.threshold)
    out.update(out["kinds"][kinds[0]])  # the first kind's figures at the top
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"model {out['model']}, adapter {out['adapter']}, holes from {out['source']}")
    for kind, f in out["kinds"].items():
        print(f"{kind}: {f['cases']} holes, exact {f['exact']:.3f}, ECE {f['ece']:.3f}, at threshold "
              f"{f['threshold']}: precision {f['precision']}, coverage {f['coverage']:.3f}"
              + ("" if f["calibrated"] else " (uncalibrated: raw scores)"))
        print(f"  {'threshold':>9} {'coverage':>9} {'precision':>9}")
        for row in f["curve"]:
            print(f"  {row['threshold']:9.2f} {row['coverage']:9.3f} {row['precision'] if row['precision'] is not None else '-':>9}")
    return 0
