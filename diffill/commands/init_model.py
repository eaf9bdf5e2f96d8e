"""``diffill init-model OUT --like NAME [--tiny]``: a random-init checkpoint shaped like a published
open diffusion code model (model/families), for tests and latency measurements."""

from __future__ import annotations

import json

from diffill.commands.common import non_negative_int, path_text
from diffill.errors import DiffillError


def register(sub) -> None:
    from diffill.model.families.specs import LIKE_NAMES

    p = sub.add_parser("init-model", help="write a random-init checkpoint with a published model's architecture, "
                                          "config and special tokens (docs/models.md)")
    p.add_argument("out", type=path_text, help="new checkpoint folder (must not exist, or be empty)")
    p.add_argument("--like", required=True, choices=LIKE_NAMES, help="the published model whose shape it takes")
    p.add_argument("--tiny", action="store_true", help="two narrow layers (the published vocabulary), for tests")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed of the weights (default 0)")
    p.set_defaults(run=run)


def run(args) -> int:
    from diffill.model.families.init import init_model
    from diffill.model.loading import quiet_loading

    try:
        with quiet_loading():
            out = init_model(args.out, args.like, tiny=args.tiny, seed=args.seed)
    except (ValueError, FileExistsError, OSError) as e:
        raise DiffillError(str(e)) from e
    config = json.loads((out / "config.json").read_text())
    print(f"wrote {out}: {args.like}{' (tiny)' if args.tiny else ''}, model_type {config.get('model_type')}")
    return 0
