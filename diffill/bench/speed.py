"""``diffill bench speed [--cases N] [--json]``: latency, tokens per forward pass and accuracy of
the sampler settings, on the same held-out holes for every setting.

Three kinds of hole, drawn with a fixed seed from held-out files:

* ``single_line``: the rest of one code line from a cursor (at the line's first character or
  after a word boundary), 16-token budget, as when a user types and pauses;
* ``mid_word``: the same from a cursor inside a word (``result = proc|``), as when a user pauses
  in the middle of typing a name;
* ``multi_line``: a block of 2 to 6 whole lines: a syntax node from ``grammar.spans`` that starts
  and ends at line boundaries (statements, blocks), 64-token budget.

And, only when named (``--kinds typing``; keep ``--cases`` to a few dozen lines), ``typing``: code
lines replayed as a user types them after their indentation, one request a keystroke, answered as
the language server answers: from its forwarding cache (``lsp_server.cache.InfillCache``) when the
user typed into the last suggestion, else by the engine with its own setting for one-line holes.
Reported per keystroke: latency p50/p95, how often a suggestion was shown, how often it began with
the character typed next (the user was typing along it) and how often it was the rest of the line.
``--context-reuse both`` replays the lines twice, line by line in turn, with the context encoded
whole and built on the last requests' (``model.context_reuse``), each with its own forwarding cache.

Settings: ``one_per_step`` (one token committed per forward pass), ``threshold`` (parallel
decoding by confidence), ``threshold_cache`` (the same with the prefix/suffix cache) and
``beam_cache`` (left-to-right beam search, ``model.beam``, with the cache). The engine's own
choice for each kind of hole (``EngineConfig.single_line_beam``) is the JSON's ``defaults``. Each
case is one request through the engine, one at a time, timed as a user would see it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from diffill.bench.profile import format_profile, profile_requests, split_phases
from diffill.errors import DiffillError
from diffill.loading import engine_config_from
from diffill.model.context import Window

log = logging.getLogger(__name__)

KINDS = {"single_line": 16, "mid_word": 16, "multi_line": 64}
TYPING = "typing"  # one-line budget: KINDS["single_line"]
SETTINGS = ("one_per_step", "threshold", "threshold_cache", "beam_cache")
BEAM = 4  # beam_cache's candidates a hole when the engine does not beam-search one-line holes
MAX_LINE_TOKENS = 15  # the target must fit the single-line budget with room for <eoi>
MAX_BLOCK_TOKENS = 60


@dataclass(frozen=True)
class Hole:
    kind: str
    text: str  # the document with the hole removed
    at: int  # the cursor
    target: str
    source: int = -1  # the index of the text it was drawn from


# -- holes --------------------------------------------------------------------------------------


def _is_code(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith(("#", '"""', "'''"))


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def line_holes(texts: list[str], n: int, count_tokens, rng: np.random.Generator,
               kind: str = "single_line") -> list[Hole]:
    """Cursor holes: the rest of a code line from its first character or a word boundary
    (``single_line``), from its first character only (``line``, and ``typing``, which types it in),
    from a word boundary past it (``mid_line``), or from inside a word (``mid_word``)."""
    holes: list[Hole] = []
    for i in rng.permutation(len(texts)):
        text = texts[i]
        lines = text.split("\n")
        starts = np.cumsum([0] + [len(x) + 1 for x in lines[:-1]])
        candidates = [j for j, line in enumerate(lines) if _is_code(line) and len(line) < 200]
        for j in rng.permutation(candidates)[:3]:
            line = lines[j]
            indent = len(line) - len(line.lstrip())
            if kind == "mid_word":
                cuts = [k for k in range(indent + 1, len(line.rstrip())) if _word_char(line[k - 1]) and _word_char(line[k])]
            elif kind == TYPING:
                cuts = [indent] if len(line.strip()) > 1 else []
            else:
                cuts = [] if kind == "mid_line" else [indent]
                cuts += [] if kind == "line" else [k + 1 for k in range(indent, len(line.rstrip()) - 1)
                                                   if not _word_char(line[k]) and line[k + 1] != " "]
            if not cuts:
                continue
            cut = int(cuts[rng.integers(len(cuts))])
            target = line[cut:].rstrip()
            if not target or count_tokens(target) > MAX_LINE_TOKENS:
                continue
            at = int(starts[j]) + cut
            end = int(starts[j]) + len(line.rstrip())
            holes.append(Hole(kind, text[:at] + text[end:], at, target, int(i)))
            if len(holes) == n:
                return holes
    return holes


def block_holes(texts: list[str], n: int, count_tokens, rng: np.random.Generator) -> list[Hole]:
    """Multi-line holes: syntax nodes of 2 to 6 whole lines (from the first non-blank character
    of the first line to the end of the last)."""
    from diffill.grammar.spans import python_spans

    holes: list[Hole] = []
    for i in rng.permutation(len(texts)):
        text = texts[i]
        spans = []
        for s in python_spans(text, min_chars=20, max_chars=400):
            line_start = text.rfind("\n", 0, s.start) + 1
            ends_line = s.end == len(text) or text[s.end] == "\n"
            lines = text.count("\n", s.start, s.end) + 1
            if text[line_start:s.start].strip() or not ends_line or not 2 <= lines <= 6:
                continue
            spans.append(s)
        for k in rng.permutation(len(spans))[:2]:
            s = spans[int(k)]
            target = text[s.start : s.end]
            if count_tokens(target) > MAX_BLOCK_TOKENS:
                continue
            holes.append(Hole("multi_line", text[: s.start] + text[s.end :], s.start, target))
            if len(holes) == n:
                return holes
    return holes


# -- scoring ------------------------------------------------------------------------------------


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / length of the longer string (1.0 for two empty strings)."""
    if a == b:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


def _normal(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def setting_config(base, setting: str, beam: int = BEAM):
    if setting == "beam_cache":
        return replace(base, max_per_step=0, cache=True, beam=beam)
    if setting == "one_per_step":
        return replace(base, max_per_step=1, min_per_step=1, cache=False, beam=0)
    if setting == "threshold":
        return replace(base, max_per_step=0, cache=False, beam=0)
    if setting == "threshold_cache":
        return replace(base, max_per_step=0, cache=True, beam=0)
    raise DiffillError(f"unknown setting {setting!r} (choose from {', '.join(SETTINGS)})")


def _beam(engine) -> int:
    return engine.config.single_line_beam if engine.config.single_line_beam > 1 else BEAM


def engine_defaults(engine) -> dict[str, str]:
    """The setting that is what the engine does, unasked, for each kind of hole."""
    d = engine.config.sampler
    plain = "one_per_step" if d.max_per_step == 1 else ("threshold_cache" if d.cache else "threshold")
    one_line = "beam_cache" if engine.config.single_line_beam > 1 and d.cache else plain
    return {"single_line": one_line, "mid_word": one_line, "multi_line": plain}


def _requests(holes: list[Hole], budget: int) -> list:
    from diffill.engine import InfillRequest

    multiline = holes[0].kind == "multi_line" if holes else False
    return [InfillRequest(h.text, h.at, h.at, max_tokens=budget, multiline=multiline, language="python")
            for h in holes]


def measure(engine, holes: list[Hole], setting: str, budget: int) -> dict:
    cfg = setting_config(engine.config.sampler, setting, _beam(engine))
    reqs = _requests(holes, budget)
    for req in reqs[:3]:  # warm-up: allocator, thread pool, kernels
        engine.infill(req, sampler=cfg)
    ms, cpu, exact, sim = [], [], 0, 0.0
    tokens = passes = 0
    for h, req in zip(holes, reqs):
        t0, c0 = time.perf_counter(), time.process_time()
        r = engine.infill(req, sampler=cfg)
        ms.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
        exact += _normal(r.text) == _normal(h.target)
        sim += edit_similarity(_normal(r.text), _normal(h.target))
        tokens += r.tokens
        passes += r.forward_passes
    n = max(1, len(holes))
    return {"kind": holes[0].kind if holes else "", "setting": setting,
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if ms else None,
            "p95_ms": round(float(np.percentile(ms, 95)), 2) if ms else None,
            # CPU time of this process (all its threads): on a shared machine, closer to what an idle
            # one would take than the wall clock
            "p50_cpu_ms": round(float(np.percentile(cpu, 50)), 2) if cpu else None,
            "tokens_per_forward": round(tokens / max(1, passes), 3),
            "forwards_per_case": round(passes / n, 2),
            "exact_match": round(exact / n, 4), "edit_similarity": round(sim / n, 4),
            "cases": len(holes), "latencies_ms": [round(x, 2) for x in ms]}


REUSE_MODES = {"default": (None,), "off": (False,), "on": (True,), "both": (False, True)}


@dataclass
class _Typist:
    """One replay of the typed lines: its forwarding cache and what it measured."""

    reuse: bool | None
    cache: object
    ms: list = field(default_factory=list)
    miss_ms: list = field(default_factory=list)
    miss_cpu_ms: list = field(default_factory=list)  # the process's CPU time (all threads) of each engine call
    shown: int = 0
    along: int = 0
    rest: int = 0


def replay_typing(engine, holes: list[Hole], setting: str, budget: int,
                  reuse: tuple[bool | None, ...] = (None,)) -> list[dict]:
    """Type each hole's line into it a character at a time (see the module's ``typing``); every
    keystroke but the line's last is a request, answered from the forwarding cache or the engine.
    One result per ``reuse`` mode (``InfillOptions.context_reuse``; None: the engine's setting),
    the modes taking turns line by line, each with its own forwarding cache, so that they are
    timed under the same load."""
    from diffill.engine import InfillOptions, InfillRequest
    from diffill.lsp_server.cache import Hole as Cursor
    from diffill.lsp_server.cache import InfillCache

    cfg = setting_config(engine.config.sampler, setting, _beam(engine))
    for h in holes[:3]:  # warm-up: allocator, thread pool, kernels
        engine.infill(InfillRequest(h.text, h.at, h.at, max_tokens=budget, language="python"), sampler=cfg)
    kept = getattr(engine.reusing, "reuse", None)
    before = kept.counts() if kept is not None else {}
    typists = [_Typist(mode, InfillCache()) for mode in reuse]
    for h in holes:
        for t in typists:
            options = InfillOptions(context_reuse=t.reuse)
            for k in range(1, len(h.target)):
                text, at, following = h.text[: h.at] + h.target[:k] + h.text[h.at :], h.at + k, h.target[k:]
                t0, c0 = time.perf_counter(), time.process_time()
                cursor = Cursor.at(text, at)
                texts = t.cache.get(cursor, setting)
                if texts is None:
                    r = engine.infill(InfillRequest(text, at, at, max_tokens=budget, language="python"),
                                      sampler=cfg, options=options)
                    texts = [r.text, *r.alternatives] if r.text else []  # what the server offers
                    t.cache.put(cursor, setting, texts)
                    t.miss_ms.append((time.perf_counter() - t0) * 1000.0)
                    t.miss_cpu_ms.append((time.process_time() - c0) * 1000.0)
                t.ms.append((time.perf_counter() - t0) * 1000.0)
                suggestion = texts[0] if texts else ""
                t.shown += bool(suggestion)
                t.along += suggestion.startswith(following[0])
                t.rest += bool(suggestion) and suggestion.rstrip() == following.rstrip()

    def pct(values: list[float], q: int) -> float | None:
        return round(float(np.percentile(values, q)), 2) if values else None

    out = []
    for t in typists:
        n = max(1, len(t.ms))
        row = {"kind": TYPING, "setting": setting,
               "context_reuse": engine.config.context_reuse if t.reuse is None else t.reuse,
               "cases": len(holes), "keystrokes": len(t.ms),
               "p50_ms": pct(t.ms, 50), "p95_ms": pct(t.ms, 95),
               "engine_p50_ms": pct(t.miss_ms, 50), "engine_p95_ms": pct(t.miss_ms, 95),  # the cache's misses
               "engine_p50_cpu_ms": pct(t.miss_cpu_ms, 50), "engine_p95_cpu_ms": pct(t.miss_cpu_ms, 95),
               "engine_calls": len(t.miss_ms),
               "cache_hits": round(t.cache.hits / n, 4), "shown": round(t.shown / n, 4),
               "typed_along": round(t.along / n, 4),  # the suggestion began with the next character typed
               "rest_of_line": round(t.rest / n, 4),  # the suggestion was what the user went on to type
               "latencies_ms": [round(x, 2) for x in t.ms]}
        out.append(row)
    if kept is not None and any(row["context_reuse"] for row in out):
        # how the reusing calls' contexts were built: encoded whole, on a kept one, or kept as they were
        counts = {k: v - before[k] for k, v in kept.counts().items()}
        for row in out:
            if row["context_reuse"]:
                row["contexts"] = counts
    return out


def profile(engine, holes: list[Hole], setting: str, budget: int) -> dict:
    """Where the time of ``setting`` goes on these holes (diffill.bench.profile)."""
    cfg = setting_config(engine.config.sampler, setting, _beam(engine))
    reqs = _requests(holes, budget)
    stats = profile_requests(lambda: [engine.infill(r, sampler=cfg) for r in reqs])
    return {"kind": holes[0].kind if holes else "", "setting": setting, **split_phases(stats, len(reqs))}


def run(args) -> int:
    import torch

    from diffill.engine import Engine, EngineConfig

    if args.cases < 1:
        raise DiffillError("--cases must be at least 1")
    kinds, settings = args.kinds, args.settings
    torch.set_num_threads(args.threads)
    # the typing replay's "default" mode reuses context as the language server's engine does
    config = engine_config_from(args, threads=args.threads, constrained=not args.no_constraint,
                                context_reuse=EngineConfig().context_reuse,
                                window=Window(*args.window) if args.window else None)
    overrides = {k: v for k, v in (("threshold", args.threshold), ("confidence", args.confidence)) if v is not None}
    engine = Engine(replace(config, sampler=replace(config.sampler, **overrides)))
    from diffill.evaluation import heldout_texts

    texts = heldout_texts(args.corpus)
    count = engine.tok.encode
    results, profiles = [], []
    for kind in kinds:
        rng = np.random.default_rng(args.seed)
        if kind == "multi_line":
            holes = block_holes(texts, args.cases, lambda s: len(count(s)), rng)
        else:
            holes = line_holes(texts, args.cases, lambda s: len(count(s)), rng, kind)
        if len(holes) < args.cases:
            log.warning("only %d %s holes in the held-out files (asked for %d)", len(holes), kind, args.cases)
        if kind == TYPING:  # with the engine's own setting for one-line holes, as the server serves them
            results += replay_typing(engine, holes, engine_defaults(engine)["single_line"], KINDS["single_line"],
                                     REUSE_MODES[args.context_reuse])
            for r in results[-len(REUSE_MODES[args.context_reuse]):]:
                log.info("%s", {k: v for k, v in r.items() if k != "latencies_ms"})
            continue
        for setting in settings:
            log.info("%s / %s: %d holes", kind, setting, len(holes))
            results.append(measure(engine, holes, setting, KINDS[kind]))
            log.info("%s", {k: v for k, v in results[-1].items() if k != "latencies_ms"})
        if args.profile and holes:
            chosen = engine_defaults(engine)[kind]
            log.info("%s / %s under cProfile", kind, chosen)
            profiles.append(profile(engine, holes, chosen, KINDS[kind]))
    info = engine.info()
    out = {"results": results, "model": info["model"], "adapter": info["adapter"],
           "window": [engine.window.prefix_tokens, engine.window.suffix_tokens], "threads": args.threads, "dtype": engine.dtype,
           "constrained": not args.no_constraint, "defaults": engine_defaults(engine),
           "sampler": dict(vars(engine.config.sampler))}
    if args.profile:
        out["profiles"] = profiles
    if args.json:
        print(json.dumps(out))
    else:
        print(f"model {out['model']}, adapter {out['adapter']}, window {out['window'][0]}+{out['window'][1]} tokens, "
              f"{args.threads} threads")
        print(f"{'kind':12} {'setting':16} {'p50 ms':>8} {'p95 ms':>8} {'tok/fwd':>8} {'exact':>7} {'edit sim':>8} {'cases':>6}")
        for r in results:
            if r["kind"] == TYPING:
                continue
            print(f"{r['kind']:12} {r['setting']:16} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['tokens_per_forward']:8.2f} "
                  f"{r['exact_match']:7.3f} {r['edit_similarity']:8.3f} {r['cases']:6d}")
        for r in results:
            if r["kind"] == TYPING:
                reuse = "context reused" if r["context_reuse"] else "context encoded whole"
                print(f"typing ({r['setting']}, {reuse}): {r['cases']} lines, {r['keystrokes']} keystrokes, per keystroke "
                      f"p50 {r['p50_ms'] or 0:.1f} ms p95 {r['p95_ms'] or 0:.1f} ms, engine calls p50 "
                      f"{r['engine_p50_ms'] or 0:.1f} ms p95 {r['engine_p95_ms'] or 0:.1f} ms; answered from the cache "
                      f"{r['cache_hits']:.0%}, suggestion shown {r['shown']:.0%}, began with the next character "
                      f"typed {r['typed_along']:.0%}, was the rest of the line {r['rest_of_line']:.0%}")
        for p in profiles:
            print("\n".join(format_profile(p)))
    return 0
