"""``diffill infill FILE --at L:C | --range L1:C1-L2:C2``: fill a hole; never modifies the file."""

from __future__ import annotations

import json
import sys

from diffill.commands.common import (
    add_adapter_option,
    add_copy_option,
    add_dtype_option,
    add_languages_option,
    non_negative_int,
    path_text,
)
from diffill.documents import read_source
from diffill.errors import DiffillError
from diffill.loading import engine_config_from
from diffill.positions import offset_of, parse_point, parse_range


def register(sub) -> None:
    p = sub.add_parser("infill", help="fill the hole at a cursor or regenerate a region of a file")
    p.add_argument("file")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--at", metavar="LINE:COL", help="insert at this cursor (1-based)")
    where.add_argument("--range", metavar="L1:C1-L2:C2", help="regenerate this region (1-based, end exclusive)")
    p.add_argument("--max-tokens", type=int, default=None, help="canvas budget in tokens")
    p.add_argument("--model", type=path_text, default=None, help="checkpoint folder (default: the shipped model)")
    add_adapter_option(p)
    add_dtype_option(p)
    add_copy_option(p)
    add_languages_option(p)
    p.add_argument("--no-constraint", action="store_true",
                   help="do not keep the infill syntactically valid (for comparison)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--trace", action="store_true", help="print the canvas after every denoising step")
    p.add_argument("--backend", default="auto",
                   help="model kind (default auto: what the --model folder's config.json says): diffill, dream, "
                        "dreamon, llada, open_dcoder, diffusion_gemma (docs/models.md) or masked_lm (a transformers "
                        "masked-LM folder; one that ships its own code needs --trust-remote-code)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let a --model folder run its own Python code (off unless given)")
    p.add_argument("--full", action="store_true", help="print the whole file with the infill applied")
    # one hole's passes are small: a second thread saves little and, on a busy machine, waits (docs/latency.md)
    p.add_argument("--threads", type=non_negative_int, default=1,
                   help="torch threads (default 1; 0: torch's choice)")
    p.set_defaults(run=run)


def run(args) -> int:
    from diffill.engine import Engine, InfillRequest
    from diffill.trace import TracePrinter

    text = read_source(args.file)
    bom = "\ufeff" if text.startswith("\ufeff") else ""  # not a column of the first line
    text = text[len(bom):]
    if args.at:
        start = end = offset_of(text, *parse_point(args.at))
    else:
        a, b = parse_range(args.range)
        start, end = offset_of(text, *a), offset_of(text, *b)
        if end < start:
            raise DiffillError(f"range {args.range} ends before it starts")
    if args.max_tokens is not None and not 1 <= args.max_tokens <= 1024:
        raise DiffillError("--max-tokens must be between 1 and 1024")
    engine = Engine(engine_config_from(args, constrained=not args.no_constraint, backend=args.backend,
                                       trust_remote_code=args.trust_remote_code, threads=args.threads))
    printer = TracePrinter(engine.tok, sys.stderr) if args.trace else None
    result = engine.infill(InfillRequest(text, start, end, path=args.file, max_tokens=args.max_tokens),
                           on_step=printer)
    if args.json:
        print(json.dumps(result.as_json()))
    elif args.full:
        sys.stdout.write(bom + text[:start] + result.text + text[end:])
    else:
        print(result.text)
    return 0
