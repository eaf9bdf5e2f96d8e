"""``diffill adapt-base --corpus DIR [--minutes M | --steps N]``: train the shipped infill adapter.

The recipe of ``adapters/checkpoints/infill/``: syntax-aware infill spans of the training corpus on
top of the base model; writes the adapter and its card (recipe and held-out figures).
"""

from __future__ import annotations

import json

from diffill.commands.common import add_library_option, path_text


def register(sub) -> None:
    p = sub.add_parser("adapt-base", help="train the shipped infill adapter (adapters/checkpoints/infill)")
    p.add_argument("--corpus", required=True, help="folder made by `diffill corpus build`")
    p.add_argument("--out", default=None, help="adapter folder (default: adapters/checkpoints/infill)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=600, help="training steps (default 600: the recipe)")
    budget.add_argument("--minutes", type=float, default=None, help="a time budget instead of steps")
    p.add_argument("--cases", type=int, default=500, help="held-out lines evaluated before and after")
    p.add_argument("--model", type=path_text, default=None, metavar="PATH", help="base checkpoint (default: the shipped model)")
    add_library_option(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from diffill.adaptation import train_shipped_adapter
    from diffill.commands.common import check_training_budget

    check_training_budget(args.minutes, args.steps, args.cases)
    steps = None if args.minutes is not None else args.steps
    summary = train_shipped_adapter(args.corpus, out=args.out, model_path=args.model, minutes=args.minutes,
                                    steps=steps, cases=args.cases, library=args.library)
    print(json.dumps(summary))
    return 0
