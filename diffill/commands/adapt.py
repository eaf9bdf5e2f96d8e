"""``diffill adapt DIR [--out PATH] [--minutes M] [--model PATH] [--device D] [--json]``: a LoRA
adapter for one repository, on the shipped model or an open family's checkpoint."""

from __future__ import annotations

import json

from diffill.commands.common import add_library_option, non_negative_int, path_text
from diffill.precision import DEVICES


def register(sub) -> None:
    p = sub.add_parser("adapt", help="train a LoRA adapter on a repository's own code")
    p.add_argument("dir", help="the repository (git-tracked files, or files .gitignore does not exclude)")
    p.add_argument("--out", default=None, help="adapter folder (default: DIR/.diffill/adapter)")
    p.add_argument("--minutes", type=float, default=10.0, help="training time budget (default 10)")
    p.add_argument("--steps", type=int, default=None, help="train exactly this many steps instead")
    p.add_argument("--cases", type=int, default=200, help="held-out lines evaluated before and after")
    p.add_argument("--model", type=path_text, default=None, metavar="PATH",
                   help="base checkpoint: the shipped model (default), or a Dream, Open-dCoder or LLaDA folder")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where it trains: auto (a GPU for a family's checkpoint when there is one, "
                        "bfloat16 weights), cpu or cuda")
    p.add_argument("--seed", type=non_negative_int, default=0)
    add_library_option(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args) -> int:
    from diffill.adaptation import adapt_repository
    from diffill.commands.common import check_training_budget

    check_training_budget(args.minutes, args.steps, args.cases)
    report = adapt_repository(args.dir, out=args.out, minutes=args.minutes, steps=args.steps,
                              model_path=args.model, cases=args.cases, seed=args.seed,
                              library=args.library, device=args.device)
    if args.json:
        print(json.dumps(report.as_json()))
        return 0
    b, a = report.before["line_infill_exact_match"], report.after["line_infill_exact_match"]
    print(f"trained on {report.files} files ({report.tokens} tokens), {report.steps} steps, "
          f"{report.minutes:.1f} min")
    print(f"held-out line-infill exact match ({report.cases} lines of {report.heldout_files} files): "
          f"before {b:.3f}  after {a:.3f}  ({(a - b) * 100:+.1f} points)")
    print(f"adapter saved to {report.adapter}")
    return 0
