"""Where a request's time goes: ``diffill bench speed --profile``.

One more pass over the same holes, with one setting, under cProfile. Each request's time is split
into phases by the functions that do the work:

* ``context_encode``: the first forward pass of a request with the cache (the whole row: prefix,
  canvas and suffix), which also yields the first step's logits;
* ``canvas_steps``: the canvas-only passes that attend to the cached context;
* ``full_forward``: whole-row passes without the cache, and the cache's bookkeeping;
* ``syntax_setup``: parsing the document around the hole once per request (``guard_for``);
* ``syntax_steps``: the constraint's check of each step's commits;
* ``other``: tokenizing, the layout, the sampler's own bookkeeping, decoding.

cProfile slows Python-level code more than the kernels, so the shares are the figures to read;
absolute times come from the timed passes of ``bench speed``.
"""

from __future__ import annotations

import cProfile
import pstats
from pathlib import PurePath

# (phase, file suffix, function): cumulative time of that function over the pass
_PHASE_FUNCTIONS = (
    ("context_encode", "model/layers.py", "encode_context"),
    ("canvas_steps", "model/layers.py", "forward_canvas"),
    ("model", "model/backend.py", "logits"),
    ("syntax_setup", "diffill/syntax.py", "guard_for"),
    ("syntax_steps", "model/sampler.py", "_apply_constraint"),
    ("total", "diffill/engine.py", "infill"),
)
PHASES = ("context_encode", "canvas_steps", "full_forward", "syntax_setup", "syntax_steps", "other")


def _cumulative(stats: pstats.Stats) -> dict[str, tuple[float, int]]:
    """(seconds, calls) of each function named in _PHASE_FUNCTIONS."""
    found = {name: (0.0, 0) for name, _, _ in _PHASE_FUNCTIONS}
    for (filename, _line, func), (_cc, ncalls, _tt, cumtime, _callers) in stats.stats.items():
        path = PurePath(filename).as_posix()
        for name, suffix, wanted in _PHASE_FUNCTIONS:
            if func == wanted and path.endswith(suffix):
                seconds, calls = found[name]
                found[name] = (seconds + cumtime, calls + ncalls)
    return found


def split_phases(stats: pstats.Stats, cases: int) -> dict:
    """Milliseconds per case of each phase, their shares of the total, and the cost of one pass."""
    f = _cumulative(stats)
    total = f["total"][0]
    seconds = {
        "context_encode": f["context_encode"][0],
        "canvas_steps": f["canvas_steps"][0],
        "full_forward": max(0.0, f["model"][0] - f["context_encode"][0] - f["canvas_steps"][0]),
        "syntax_setup": f["syntax_setup"][0],
        "syntax_steps": f["syntax_steps"][0],
    }
    seconds["other"] = max(0.0, total - sum(seconds.values()))
    n = max(1, cases)
    out = {"cases": cases, "ms_per_case": round(total * 1000 / n, 2),
           "phases": {k: {"ms_per_case": round(seconds[k] * 1000 / n, 2),
                          "share": round(seconds[k] / total, 3) if total else 0.0} for k in PHASES}}
    for key, phase in (("ms_per_context_encode", "context_encode"), ("ms_per_canvas_pass", "canvas_steps")):
        secs, calls = f[phase]
        out[key] = round(secs * 1000 / calls, 2) if calls else None
    return out


def profile_requests(run_all) -> pstats.Stats:
    """Run ``run_all()`` under cProfile."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        run_all()
    finally:
        prof.disable()
    return pstats.Stats(prof)


def format_profile(p: dict) -> list[str]:
    lines = [f"profile {p['kind']} / {p['setting']}: {p['ms_per_case']:.1f} ms a case under cProfile "
             f"(one context encode {p['ms_per_context_encode'] or 0:.1f} ms, "
             f"one canvas pass {p['ms_per_canvas_pass'] or 0:.1f} ms)"]
    for name in PHASES:
        ph = p["phases"][name]
        lines.append(f"  {name:16} {ph['ms_per_case']:8.2f} ms {ph['share']:7.1%}")
    return lines
