"""``diffill bench NAME``: benchmarks. Each lives in ``diffill/bench/<name>.py`` with ``register``."""

from __future__ import annotations

import importlib

BENCHES: list[str] = ["report", "speed", "start", "lsp", "validity", "refactor", "abstain"]


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (speed, start, validity, lsp, refactor, abstain, report)")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    for name in BENCHES:
        importlib.import_module(f"diffill.bench.{name}").register(bsub)
