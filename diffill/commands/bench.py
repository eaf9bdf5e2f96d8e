"""``diffill bench NAME``: benchmarks. Each runs from ``diffill/bench/<name>.py`` (its ``run``);
its arguments are read here."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffill.bench import abstain, lsp, passes, peer, refactor, report, speed, start, validity
from diffill.commands.cluster import add_ray_option
from diffill.commands.common import add_model_options, fraction, int_between, non_negative_int, path_text, positive_int
from diffill.commands.evaluate import add_near_twins_option
from diffill.confidence import MIN_CONFIDENCE
from diffill.precision import DEVICES
from diffill.lsp_server.settings import MAX_TOKENS_LIMIT


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (speed, passes, start, validity, lsp, refactor, abstain, peer, "
                                     "report)")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    for add in (_report, _speed, _passes, _start, _lsp, _validity, _refactor, _abstain, _peer):
        add(bsub)


def _report(bsub) -> None:
    p = bsub.add_parser("report", help="one self-contained HTML page with plots of every figure")
    p.add_argument("out", help="the HTML file to write")
    for inp in report.INPUTS:
        p.add_argument(f"--{inp.name.replace('_', '-')}", metavar="FILE", default=None, help=inp.help)
    p.add_argument("--cases", type=int, default=40, help="size of the runs made for missing inputs")
    p.add_argument("--no-run", action="store_true",
                   help="measure nothing: missing inputs are shown as not measured")
    p.add_argument("--model", type=path_text, default=None, help="checkpoint for the runs made here")
    p.add_argument("--corpus", default=None,
                   help="runs made here draw their holes from this corpus's held-out split "
                        "(much faster than scanning the installed packages)")
    p.add_argument("--png", default=None,
                   help="PNG of the main plot (default: OUT with .png; 'none' to skip)")
    p.set_defaults(run=report.run)


def _speed(bsub) -> None:
    p = bsub.add_parser("speed", help="latency and tokens per forward pass of the sampler settings")
    p.add_argument("--cases", type=int, default=200, help="holes of each kind (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_options(p)
    p.add_argument("--corpus", default=None,
                   help="draw holes from this corpus's held-out split, or from the .py files of a folder "
                        "(default: the held-out split of this machine's Python sources)")
    p.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--no-constraint", action="store_true", help="sample without the syntax constraint")
    p.add_argument("--threshold", type=fraction, default=None,
                   help="override the default confidence threshold (0 to 1)")
    p.add_argument("--confidence", default=None, choices=("prob", "margin", "entropy"),
                   help="override the default confidence measure")
    kinds = [*speed.KINDS, speed.TYPING]
    p.add_argument("--kinds", type=_subset_of(kinds, "kind"), default=list(speed.KINDS),
                   help=f"comma-separated subset of {', '.join(kinds)} (default: all but {speed.TYPING})")
    p.add_argument("--settings", type=_subset_of(speed.SETTINGS, "setting"), default=list(speed.SETTINGS),
                   help="comma-separated subset of " + ", ".join(speed.SETTINGS))
    p.add_argument("--context-reuse", choices=tuple(speed.REUSE_MODES), default="default",
                   help="typing only: build each request's context on the last ones' (on), encode it whole "
                        "(off), both side by side on the same lines (both), or as the engine is set (default)")
    p.add_argument("--profile", action="store_true",
                   help="one more pass of the default setting (threshold_cache) under cProfile: "
                        "where each request's time goes")
    p.add_argument("--window", type=_window, default=None, metavar="PREFIX+SUFFIX",
                   help="read this many tokens before and after each hole (default: the model's own window); "
                        "what a wider window costs, on a model not trained for it")
    p.set_defaults(run=speed.run)


def _passes(bsub) -> None:
    p = bsub.add_parser("passes", help="one request's cost and each kind of forward pass of a model shape "
                                       "(shape-only checkpoints of diffill init-model)")
    p.add_argument("--model", type=path_text, required=True, help="checkpoint folder")
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    p.add_argument("--repeats", type=positive_int, default=2, help="timings of each kind of pass (default 2)")
    p.set_defaults(run=passes.run)


def _start(bsub) -> None:
    p = bsub.add_parser("start", help="diffill infill's whole-process wall time against `import torch`")
    p.add_argument("--rounds", type=positive_int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--file", type=Path, default=start.EXAMPLE, help="the file to fill in (default: the shipped example)")
    p.add_argument("--at", default="19:5", help="LINE:COL of the hole (default 19:5, the example's empty body line)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=start.run)


def _lsp(bsub) -> None:
    p = bsub.add_parser("lsp", help="the language server's own overhead per request (minus engine time)")
    p.add_argument("--model", type=path_text, default=None, help="checkpoint folder (default: the shipped model)")
    p.add_argument("--requests", type=int, default=100, help="model requests (default 100)")
    p.add_argument("--cache-requests", type=int, default=50, help="repeated requests answered by the cache")
    p.add_argument("--file", default=None, help="source file to complete in (default: textwrap.py of the stdlib)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads for the server (default 1)")
    p.add_argument("--max-tokens", type=int_between(1, MAX_TOKENS_LIMIT), default=16,
                   help=f"canvas budget per request, 1 to {MAX_TOKENS_LIMIT} as the maxTokens setting (default 16)")
    p.add_argument("--server-python", type=path_text, default=None,
                   help="the Python whose diffill serves (default: this one), to compare two installs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=lsp.run)


def _validity(bsub) -> None:
    p = bsub.add_parser("validity", help="syntax validity, exact match and latency with and without the constraint")
    p.add_argument("--cases", type=int, default=300, help="holes in all, spread over the 5 span kinds (default 300)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--model", type=path_text, default=None, help="checkpoint folder (default: the shipped model)")
    p.add_argument("--corpus", default=None, help="draw holes from this corpus's held-out split")
    p.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.set_defaults(run=validity.run)


def _refactor(bsub) -> None:
    p = bsub.add_parser("refactor", help="regions per minute of refactor --holes on a generated tree")
    p.add_argument("--files", type=int, default=100, help="generated files (default 100)")
    p.add_argument("--batch-size", type=int, default=16, help="regions per engine call (default 16)")
    p.add_argument("--jobs", type=int, default=None,
                   help="local processes (default 1; 2 with --ray, beside the cluster's 2 workers)")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="torch threads per process (0: as refactor sets them: the CPUs shared among --jobs "
                        "processes, one per Ray worker's CPU)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_ray_option(p, "also run")
    p.add_argument("--workers", type=positive_int, default=2, help="with --ray: workers on the cluster (default 2)")
    add_model_options(p)
    p.set_defaults(run=refactor.run)


def _abstain(bsub) -> None:
    p = bsub.add_parser("abstain", help="precision against coverage of the confidence threshold, and calibration")
    p.add_argument("--repo", default=None, metavar="DIR",
                   help="draw holes from this repository's .py files, copying from its other files")
    p.add_argument("--corpus", default=None,
                   help="draw holes from this corpus's held-out split or a folder's .py files "
                        "(default: the held-out split of this machine's Python sources)")
    p.add_argument("--cases", type=positive_int, default=300, help="holes of each kind (default 300)")
    p.add_argument("--kinds", default=",".join(abstain.KINDS),
                   help="comma-separated subset of " + ", ".join(abstain.KINDS))
    p.add_argument("--threshold", type=fraction, default=MIN_CONFIDENCE,
                   help=f"the threshold whose figures are reported (default {MIN_CONFIDENCE}, the language "
                        "server's default minConfidence)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=abstain.run)


def _peer(bsub) -> None:
    p = bsub.add_parser("peer", help="the diffusion model against its autoregressive peer of the same size, "
                                     "on the same holes")
    p.add_argument("--peer", type=path_text, default=None, metavar="PATH",
                   help="the causal checkpoint (default: the shipped peer, trained with "
                        "model/recipes/peer/causal-from-base.json by `make peer`)")
    p.add_argument("--cases", type=non_negative_int, default=200,
                   help="held-out one-line holes (default 200; 0: HumanEval only)")
    p.add_argument("--corpus", default=None,
                   help="draw the holes from this corpus's held-out split, near-twins of training files left out "
                        "(default: the held-out split of this machine's Python sources)")
    add_near_twins_option(p)
    p.add_argument("--humaneval-file", type=path_text, default=None, metavar="PATH",
                   help="HumanEval problems (.jsonl or .jsonl.gz, as `diffill eval humaneval-infill` reads them): "
                        "also run its single-line tasks, sandboxed")
    p.add_argument("--humaneval", type=positive_int, default=100, metavar="N",
                   help="with --humaneval-file: its first N single-line tasks (default 100)")
    p.add_argument("--threads", type=positive_int, default=2, help="torch threads (default 2)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_options(p)
    p.set_defaults(run=peer.run)


def _window(text: str) -> tuple[int, int]:
    """An argparse ``type``: ``PREFIX+SUFFIX`` token counts, each at least 1."""
    prefix, plus, suffix = text.partition("+")
    if plus and prefix.strip().isdigit() and suffix.strip().isdigit() and min(int(prefix), int(suffix)) >= 1:
        return int(prefix), int(suffix)
    raise argparse.ArgumentTypeError(f"expected PREFIX+SUFFIX token counts such as 512+128, got {text!r}")


def _subset_of(choices, what: str):
    """An argparse ``type``: a comma-separated, non-empty subset of ``choices``, as a list."""
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {what} {unknown[0]!r} (choose from {', '.join(choices)})")
        if not names:
            raise argparse.ArgumentTypeError(f"expected at least one {what} (choose from {', '.join(choices)})")
        return names

    return parse
