"""``diffill eval heldout [--cases N] [--json]``: line-infill exact match, masked-token accuracy."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate the model")
    esub = p.add_subparsers(dest="eval_command", required=True)
    h = esub.add_parser("heldout", help="held-out line infill and masked-token accuracy")
    h.add_argument("--cases", type=int, default=500)
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--model", default=None)
    h.add_argument("--corpus", default=None, help="use this corpus's held-out split")
    h.add_argument("--json", action="store_true")
    h.set_defaults(run=run_heldout)


def run_heldout(args) -> int:
    from diffill.engine import Engine, EngineConfig
    from diffill.errors import DiffillError
    from diffill.evaluation import heldout_figures
    from model.corpus import heldout_files, load_texts

    if args.cases < 1:
        raise DiffillError("--cases must be at least 1")
    engine = Engine(EngineConfig(model=args.model))
    if args.corpus:
        texts = [f.text for f in load_texts(Path(args.corpus), "heldout")]
    else:
        texts = [f.text for f in heldout_files()]
    if not texts:
        raise DiffillError("no held-out files found")
    figures = heldout_figures(engine.model, engine.tok, texts, cases=args.cases, seed=args.seed)
    figures["model"] = engine.info()["model"]
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            print(f"{k:28} {v:.4f}" if isinstance(v, float) else f"{k:28} {v}")
    return 0
