"""``diffill bench peer --peer PATH [--cases N] [--humaneval-file F --humaneval N] [--json]``: the
diffusion model against its autoregressive peer of the same size, on the same holes.

Three fillers, one hole at a time, each timed as a user would wait for it:

* ``diffusion_alone``: the diffusion model through the engine, no copying, no adapter;
* ``diffusion_defaults``: the engine as it serves by default (copying, the library index, the
  adapter ``--adapter`` names);
* ``peer``: the causal checkpoint's greedy fill-in-the-middle (``model.peer``), from the same
  prefix and suffix windows.

Holes: one-line holes from held-out lines as ``diffill eval heldout`` draws them (with
``--corpus``, held-out files with a near-twin in the training split left out), and with
``--humaneval-file`` the first N single-line HumanEval-infilling tasks, their programs run in the
sandbox (pass@1). Figures per filler: exact match, edit similarity, latency p50/p95 and forward
passes per hole, and for each diffusion filler its ratio to the peer's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from diffill.bench.speed import edit_similarity
from diffill.errors import DiffillError
from diffill.loading import engine_config_from

log = logging.getLogger(__name__)

FILLERS = ("diffusion_alone", "diffusion_defaults", "peer")
FIGURES = ("exact_match", "edit_similarity", "pass_at_1", "p50_ms", "p95_ms", "forward_passes")
LABELS = {"diffusion_alone": "diffusion, model alone", "diffusion_defaults": "diffusion, defaults",
          "peer": "autoregressive peer"}

# (prefix, suffix, budget) -> (text, forward passes)
Filler = Callable[[str, str, int], tuple[str, int]]


@dataclass
class Row:
    """One filler's figures on one set of holes (``pass_at_1``: HumanEval only)."""

    filler: str
    cases: int
    exact_match: float
    edit_similarity: float
    p50_ms: float
    p95_ms: float
    forward_passes: float  # per hole
    pass_at_1: float | None = None


def engine_filler(engine) -> Filler:
    """A one-line hole filled through ``engine`` as an editor's one-line request."""
    from diffill.engine import InfillRequest

    def fill(prefix: str, suffix: str, budget: int) -> tuple[str, int]:
        req = InfillRequest(prefix + suffix, len(prefix), len(prefix), language="python", max_tokens=budget,
                            multiline=False)
        r = engine.infill_many([req])[0]
        return r.text, r.forward_passes

    return fill


def peer_filler(completer) -> Filler:
    def fill(prefix: str, suffix: str, budget: int) -> tuple[str, int]:
        r = completer.fill(prefix, suffix, budget, one_line=True)
        return r.text, r.forward_passes

    return fill


def timed(fill: Filler, holes: list[tuple[str, str]], budget: int) -> tuple[list[str], list[float], list[int]]:
    """Each hole filled in turn: texts, milliseconds and forward passes."""
    texts, ms, passes = [], [], []
    for prefix, suffix in holes:
        t0 = time.perf_counter()
        text, n = fill(prefix, suffix, budget)
        ms.append((time.perf_counter() - t0) * 1000)
        texts.append(text)
        passes.append(n)
    return texts, ms, passes


def row(filler: str, texts: list[str], targets: list[str], ms: list[float], passes: list[int],
        passed: list[bool] | None = None) -> Row:
    pairs = [(t.strip(), g.strip()) for t, g in zip(texts, targets)]
    n = max(1, len(pairs))
    return Row(filler, len(pairs), sum(a == b for a, b in pairs) / n,
               sum(edit_similarity(a, b) for a, b in pairs) / n,
               round(float(np.percentile(ms, 50)), 2) if ms else 0.0,
               round(float(np.percentile(ms, 95)), 2) if ms else 0.0,
               sum(passes) / n, None if passed is None else sum(passed) / n)


def ratios(rows: dict[str, Row]) -> dict[str, dict[str, float | None]]:
    """Each diffusion filler's figures divided by the peer's (None where the peer's is 0 or absent)."""
    peer = asdict(rows["peer"])
    out = {}
    for name in FILLERS[:-1]:
        mine = asdict(rows[name])
        out[name] = {k: (round(mine[k] / peer[k], 3) if mine[k] is not None and peer[k] else None) for k in FIGURES}
    return out


def line_section(fillers: dict[str, Filler], cases) -> dict:
    from diffill.evaluation import LINE_BUDGET

    holes = [(c.prefix, c.suffix) for c in cases]
    targets = [c.target for c in cases]
    rows = {}
    for name, fill in fillers.items():
        texts, ms, passes = timed(fill, holes, LINE_BUDGET)
        rows[name] = row(name, texts, targets, ms, passes)
        log.info("held-out lines, %s: %s", name, rows[name])
    return {"budget": LINE_BUDGET, "rows": rows, "ratios": ratios(rows)}


def humaneval_section(fillers: dict[str, Filler], problems) -> dict:
    from diffill.humaneval import HumanEvalConfig, evaluate, fit_completion, is_exact

    config = HumanEvalConfig()
    budget = config.budget("single-line")
    holes = [(p.prompt, p.suffix) for p in problems]
    rows = {}
    for name, fill in fillers.items():
        texts, ms, passes = timed(fill, holes, budget)
        completions = [fit_completion(p, t) for p, t in zip(problems, texts)]
        results = evaluate(problems, completions, config.limits)
        r = row(name, texts, [p.canonical_solution for p in problems], ms, passes, [c.passed for c in results])
        r.exact_match = sum(is_exact(p, c) for p, c in zip(problems, completions)) / max(1, len(problems))
        rows[name] = r
        log.info("HumanEval, %s: %s", name, r)
    return {"budget": budget, "rows": rows, "ratios": ratios(rows)}


def single_line_problems(path: str, n: int) -> list:
    """The first ``n`` single-line tasks of a HumanEval(-infilling) file."""
    from diffill.humaneval import load_problems
    from diffill.sandbox import run_python

    problems = [p for p in load_problems(path) if p.variant == "single-line"][:n]
    if not problems:
        raise DiffillError(f"{path} holds no single-line infilling tasks")
    run_python("")  # a sandbox that cannot run safely here says so before any model runs
    return problems


def run(args) -> int:
    from diffill.engine import Engine
    from diffill.evaluation import heldout_split, line_cases
    from diffill.model.loading import PEER_CHECKPOINT
    from diffill.model.peer import PeerCompleter
    from diffill.precision import resolve_dtype

    if args.cases < 1 and not args.humaneval_file:
        raise DiffillError("nothing to measure: --cases 0 and no --humaneval-file")
    torch.set_num_threads(args.threads)
    peer_path = args.peer or str(PEER_CHECKPOINT)
    try:
        completer = PeerCompleter.load(peer_path, dtype=getattr(torch, resolve_dtype(args.dtype)))
    except (ValueError, OSError) as e:
        raise DiffillError(f"--peer {peer_path}: {e}") from None
    problems = single_line_problems(args.humaneval_file, args.humaneval) if args.humaneval_file else []
    split = heldout_split(args.corpus, args.keep_near_twins) if args.cases else None
    cases = line_cases(split.texts, args.cases, args.seed) if split else []
    alone = Engine(engine_config_from(args, copy=False, adapter=None, library=None))
    defaults = Engine(engine_config_from(args))
    fillers = {"diffusion_alone": engine_filler(alone), "diffusion_defaults": engine_filler(defaults),
               "peer": peer_filler(completer)}
    report = {"model": defaults.info()["model"], "adapter": defaults.info()["adapter"],
              "library": defaults.info()["library"], "peer": peer_path, "dtype": defaults.dtype,
              "threads": args.threads, "seed": args.seed}
    if cases:
        report["lines"] = line_section(fillers, cases)
        report["lines"].update(split.report())
    if problems:
        report["humaneval"] = humaneval_section(fillers, problems)
    if args.json:
        print(json.dumps(report, default=asdict))
    else:
        print(format_report(report))
    return 0


def format_report(report: dict) -> str:
    out = [f"diffusion {report['model']} (adapter {report['adapter']} with defaults) against the peer "
           f"{report['peer']}; {report['dtype']}, {report['threads']} torch threads"]
    for key, title in (("lines", "held-out one-line holes"), ("humaneval", "HumanEval single-line tasks")):
        section = report.get(key)
        if not section:
            continue
        rows = section["rows"]
        extra = (f", {section['near_twin_files_left_out']} near-twin files left out"
                 if section.get("near_twin_rule") else "")
        out += ["", f"{title}: {rows['peer'].cases} holes, {section['budget']}-token budget{extra}",
                f"  {'':32}{'exact':>8}{'edit sim':>10}{'pass@1':>8}{'p50 ms':>9}{'p95 ms':>9}{'passes':>8}"]
        for name in FILLERS:
            out.append("  " + _line(LABELS[name], asdict(rows[name])))
        for name in FILLERS[:-1]:
            out.append("  " + _line(f"{LABELS[name]} / peer", section["ratios"][name]))
    return "\n".join(out)


WIDTHS = {"exact_match": 8, "edit_similarity": 10, "pass_at_1": 8, "p50_ms": 9, "p95_ms": 9, "forward_passes": 8}


def _line(label: str, figures: dict) -> str:
    cells = []
    for key, width in WIDTHS.items():
        value = figures[key]
        text = "-" if value is None else f"{value:.1f}" if key.endswith("_ms") else f"{value:.3f}"
        cells.append(f"{text:>{width}}")
    return f"{label:32}" + "".join(cells)
