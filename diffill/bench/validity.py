"""``diffill bench validity [--cases N] [--json]``: what the syntax constraint buys and costs.

Held-out Python holes of each span kind (block, statement, expression, arguments, line; drawn
with a fixed seed by ``grammar.spans.select_spans``) are filled with and without the
constraint, one request at a time, the two runs interleaved case by case so that load on the
machine hits both alike. Reported per run: validity rate (the check of ``grammar.validity`` on
the returned text in its document), exact match (whitespace-normalised) and p50 latency; then
the constraint's latency overhead (p50 constrained / p50 unconstrained - 1), the time of one
incremental validity check while typing a line into a 1,000-line file, and the per-grammar
self-check of ``grammar.selfcheck``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from diffill.errors import DiffillError

log = logging.getLogger(__name__)

KINDS = ("block", "statement", "expression", "arguments", "line")
LINE_BUDGET, BLOCK_BUDGET = 16, 64
CHECK_FILE_LINES = 1000


@dataclass(frozen=True)
class Hole:
    kind: str
    text: str  # the document with the hole removed
    at: int
    target: str

    @property
    def multiline(self) -> bool:
        return "\n" in self.target


# -- holes --------------------------------------------------------------------------------------


def draw_holes(texts: list[str], n: int, count_tokens, seed: int = 0) -> list[Hole]:
    """About ``n / 5`` holes of each span kind; a hole's target fits its canvas budget."""
    from diffill.grammar.spans import select_spans

    rng = np.random.default_rng(seed)
    per_kind = -(-n // len(KINDS))
    found: dict[str, list[Hole]] = {k: [] for k in KINDS}
    for i in rng.permutation(len(texts)):
        text = texts[int(i)]
        try:
            spans = select_spans(text, "python", min_chars=3, max_chars=300)
        except (ValueError, RecursionError):
            continue
        for kind in KINDS:
            if len(found[kind]) >= per_kind:
                continue
            mine = [s for s in spans if s.kind == kind and text[s.start : s.end].strip()]
            for k in rng.permutation(len(mine))[:2]:
                s = mine[int(k)]
                target = text[s.start : s.end]
                budget = BLOCK_BUDGET if "\n" in target else LINE_BUDGET
                if count_tokens(target) > budget - 2:
                    continue
                found[kind].append(Hole(kind, text[: s.start] + text[s.end :], s.start, target))
        if all(len(v) >= per_kind for v in found.values()):
            break
    holes = [h for k in KINDS for h in found[k][:per_kind]]
    return holes[:n] if len(holes) > n else holes


def _normal(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


# -- measuring ----------------------------------------------------------------------------------


def compare(engine, holes: list[Hole]) -> dict:
    """Fill every hole with and without the constraint (interleaved); figures for each."""
    from diffill.engine import InfillOptions, InfillRequest
    from diffill.grammar.registry import grammar
    from diffill.grammar.validity import HoleChecker

    def request(h: Hole) -> InfillRequest:
        return InfillRequest(h.text, h.at, h.at, language="python", multiline=h.multiline,
                             max_tokens=BLOCK_BUDGET if h.multiline else LINE_BUDGET)

    runs = {True: {"valid": 0, "exact": 0, "ms": []}, False: {"valid": 0, "exact": 0, "ms": []}}
    by_kind: dict[str, dict] = {}
    outcomes: dict[str, int] = {}
    targets_valid = 0
    exact_by_hole: dict[bool, list[bool]] = {True: [], False: []}
    python = grammar("python")
    for h in holes[:2]:  # warm-up: allocator, thread pool
        engine.infill(request(h))
    for n, h in enumerate(holes):
        check = HoleChecker(python, h.text[: h.at], h.text[h.at :])
        targets_valid += check.is_valid(h.target)  # the check must accept the original code
        for constrained in ((True, False) if n % 2 == 0 else (False, True)):
            t0 = time.perf_counter()
            r = engine.infill(request(h), options=InfillOptions(constrained=constrained))
            ms = (time.perf_counter() - t0) * 1000.0
            valid, exact = check.is_valid(r.text), _normal(r.text) == _normal(h.target)
            if constrained:
                outcomes[r.syntax] = outcomes.get(r.syntax, 0) + 1
            run = runs[constrained]
            run["valid"] += valid
            run["exact"] += exact
            exact_by_hole[constrained].append(exact)
            run["ms"].append(ms)
            k = by_kind.setdefault(h.kind, {"cases": 0, "constrained": [0, 0], "unconstrained": [0, 0]})
            k["constrained" if constrained else "unconstrained"][0] += valid
            k["constrained" if constrained else "unconstrained"][1] += exact
            k["cases"] += constrained
        log.info("hole %d/%d (%s)", n + 1, len(holes), h.kind)
    total = max(1, len(holes))
    out = {}
    for constrained, name in ((True, "constrained"), (False, "unconstrained")):
        run = runs[constrained]
        out[name] = {"validity": round(run["valid"] / total, 4), "exact_match": round(run["exact"] / total, 4),
                     "p50_ms": round(float(np.percentile(run["ms"], 50)), 2) if run["ms"] else None}
    u, c = out["unconstrained"]["p50_ms"], out["constrained"]["p50_ms"]
    out["overhead"] = round(c / u - 1.0, 4) if u and c else None
    out["by_kind"] = {k: {"cases": v["cases"],
                          "constrained": {"validity": v["constrained"][0] / max(1, v["cases"]),
                                          "exact_match": v["constrained"][1] / max(1, v["cases"])},
                          "unconstrained": {"validity": v["unconstrained"][0] / max(1, v["cases"]),
                                            "exact_match": v["unconstrained"][1] / max(1, v["cases"])}}
                      for k, v in by_kind.items()}
    pairs = list(zip(exact_by_hole[True], exact_by_hole[False]))
    # paired on the same holes: exact only with the constraint, only without it
    out["paired"] = {"only_constrained": sum(c and not u for c, u in pairs),
                     "only_unconstrained": sum(u and not c for c, u in pairs)}
    out["outcomes"] = outcomes  # the constrained run's guard verdicts: valid, repaired, truncated, empty
    out["target_validity"] = round(targets_valid / total, 4)
    out["cases"] = len(holes)
    return out


def check_latency(texts: list[str], lines: int = CHECK_FILE_LINES) -> dict:
    """Median ms of one incremental check while a statement in a method of a ``lines``-line
    Python file (held-out files joined) is typed in again character by character: every prefix
    is one check, an edit of the previous one, as the sampler's steps are."""
    from diffill.grammar.registry import grammar
    from diffill.grammar.validity import HoleChecker

    pool: list[str] = []
    for i in np.random.default_rng(0).permutation(len(texts)):
        pool += texts[int(i)].rstrip("\n").split("\n") + [""]
        if len(pool) >= lines:
            break
    if len(pool) < lines:
        raise DiffillError(f"the held-out files have fewer than {lines} lines in all")
    # whole files, cut after the top-level statement that holds line ``lines`` (a cut inside a
    # construct would leave the file broken)
    whole = "\n".join(pool)
    root = grammar("python").parser().parse(whole.encode()).root_node
    last = next((k for k in root.children if k.end_point[0] >= lines - 1), None)
    doc_lines = pool[: last.end_point[0] + 1] if last is not None else pool
    lines = len(doc_lines)
    # a whole simple statement in a method body, near the middle of the file
    middle = [j for j in range(lines // 3, 2 * lines // 3)
              if doc_lines[j].startswith("        ") and len(doc_lines[j].strip()) > 20
              and _is_statement(doc_lines[j].strip())]
    j = middle[len(middle) // 2] if middle else lines // 2
    line = doc_lines[j]
    indent = len(line) - len(line.lstrip())
    start = sum(len(x) + 1 for x in doc_lines[:j]) + indent
    doc = "\n".join(doc_lines)
    target = line.strip()
    checker = HoleChecker(grammar("python"), doc[:start], doc[start + len(target) :])
    times = []
    for k in range(1, len(target) + 1):
        t0 = time.perf_counter()
        checker.is_valid(target[:k])
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"check_ms": round(float(np.median(times)), 4), "check_p95_ms": round(float(np.percentile(times, 95)), 4),
            "check_file_lines": lines, "check_edits": len(times)}


def _is_statement(line: str) -> bool:
    import ast

    try:
        tree = ast.parse(line)
    except SyntaxError:
        return False
    return len(tree.body) == 1 and not isinstance(tree.body[0], ast.Expr)


def run(args) -> int:
    import torch

    from diffill.engine import Engine
    from diffill.grammar.selfcheck import self_check
    from diffill.loading import engine_config_from

    if args.cases < 1:
        raise DiffillError("--cases must be at least 1")
    torch.set_num_threads(args.threads)
    from diffill.evaluation import heldout_texts

    texts = heldout_texts(args.corpus)
    engine = Engine(engine_config_from(args, threads=args.threads))  # as every command: contexts encoded whole
    holes = draw_holes(texts, args.cases, lambda s: len(engine.tok.encode(s)), args.seed)
    if len(holes) < args.cases:
        log.warning("only %d holes in the held-out files (asked for %d)", len(holes), args.cases)
    out = compare(engine, holes)
    out.update(check_latency(texts))
    out["grammars"] = self_check()
    out["model"] = engine.info()["model"]
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"model {out['model']}, {out['cases']} held-out Python holes, {args.threads} threads")
    print(f"{'':14} {'validity':>9} {'exact':>7} {'p50 ms':>8}")
    for name in ("constrained", "unconstrained"):
        r = out[name]
        print(f"{name:14} {r['validity']:9.3f} {r['exact_match']:7.3f} {r['p50_ms']:8.1f}")
    print(f"overhead {out['overhead']:+.1%}   incremental check on a {out['check_file_lines']}-line file: "
          f"{out['check_ms']:.3f} ms (p95 {out['check_p95_ms']:.3f})")
    print(f"the check accepts {out['target_validity']:.1%} of the original fills")
    print(f"exact only with the constraint: {out['paired']['only_constrained']}, "
          f"only without it: {out['paired']['only_unconstrained']} (same holes)")
    print("constrained outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(out["outcomes"].items())))
    for kind, v in out["by_kind"].items():
        print(f"  {kind:11} {v['cases']:4d} holes  valid {v['constrained']['validity']:.2f} / "
              f"{v['unconstrained']['validity']:.2f}  exact {v['constrained']['exact_match']:.2f} / "
              f"{v['unconstrained']['exact_match']:.2f}")
    print("grammars: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in out["grammars"].items()))
    return 0
