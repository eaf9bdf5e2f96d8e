"""``diffill bench refactor [--files 100] [--json]``: regions per minute of ``diffill refactor
--holes`` (a dry run) on a generated tree of Python, JavaScript and Go files.

Every generated file holds a few small functions with real bodies (context) and a few whose
body is a placeholder (``...``, ``pass``, ``throw new Error("not implemented")``,
``panic("not implemented")``) or a ``TODO: fill`` marker. The tree is generated from a fixed
seed, so runs are comparable.
"""

from __future__ import annotations

import functools
import json
import random
import tempfile
from pathlib import Path

from diffill.errors import DiffillError
from diffill.loading import engine_config_from, make_engine

NOUNS = ["price", "count", "total", "width", "score", "weight", "level", "limit", "offset", "size"]
VERBS = {"add": "+", "sub": "-", "mul": "*", "max": None, "min": None}


def _python_file(rng: random.Random, holes: int) -> str:
    out = []
    for k in range(holes + 2):
        verb, noun = rng.choice(list(VERBS)), rng.choice(NOUNS)
        name = f"{verb}_{noun}_{k}"
        doc = f'    """Return the {verb} of two {noun} values."""\n'
        op = VERBS[verb]
        body = f"    return a {op} b\n" if op else f"    return {verb}(a, b)\n"
        if k >= 2:
            body = rng.choice(["    ...\n", "    pass\n", "    raise NotImplementedError\n", "    # TODO: fill\n"])
        out.append(f"def {name}(a, b):\n{doc}{body}")
    return "\n\n".join(out)


def _javascript_file(rng: random.Random, holes: int) -> str:
    out = []
    for k in range(holes + 2):
        verb, noun = rng.choice(list(VERBS)), rng.choice(NOUNS)
        name = f"{verb}{noun.title()}{k}"
        op = VERBS[verb]
        body = f"  return a {op} b;\n" if op else f"  return Math.{verb}(a, b);\n"
        if k >= 2:
            body = rng.choice(['  throw new Error("not implemented");\n', "  // TODO: fill\n"])
        out.append(f"// {verb} of two {noun} values\nfunction {name}(a, b) {{\n{body}}}\n")
    return "\n".join(out)


def _go_file(rng: random.Random, holes: int) -> str:
    out = ["package bench\n"]
    for k in range(holes + 2):
        verb, noun = rng.choice(list(VERBS)), rng.choice(NOUNS)
        name = f"{verb.title()}{noun.title()}{k}"
        op = VERBS[verb] or "+"
        body = f"\treturn a {op} b\n"
        if k >= 2:
            body = rng.choice(['\tpanic("not implemented")\n', "\t// TODO: fill\n"])
        out.append(f"// {name} returns the {verb} of two {noun} values.\nfunc {name}(a, b int) int {{\n{body}}}\n")
    return "\n".join(out)


GENERATORS = {".py": _python_file, ".js": _javascript_file, ".go": _go_file}


def generate_tree(root: Path, files: int = 100, seed: int = 0) -> int:
    """Write ``files`` source files under ``root``; returns how many holes they hold."""
    rng = random.Random(seed)
    holes = 0
    exts = list(GENERATORS)
    for i in range(files):
        ext = exts[i % len(exts)]
        n = rng.randint(2, 5)
        folder = root / f"pkg{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m{i:03d}{ext}").write_text(GENERATORS[ext](rng, n), encoding="utf-8")
        holes += n
    return holes


def run(args) -> int:
    from diffill.refactor import RefactorConfig, run_refactor

    if args.files < 1:
        raise DiffillError("--files must be at least 1")
    config = engine_config_from(args, threads=args.threads)
    engine = make_engine(config)  # fails early (missing model) before generating anything
    factory = (lambda: engine) if args.jobs == 1 else functools.partial(make_engine, config)
    with tempfile.TemporaryDirectory(prefix="diffill-bench-refactor-") as tmp:
        holes = generate_tree(Path(tmp), args.files, args.seed)
        summary = run_refactor(RefactorConfig([tmp], holes=True, jobs=args.jobs, batch_size=args.batch_size,
                                              progress=not args.json),
                               factory)
    if summary.regions != holes:
        raise DiffillError(f"found {summary.regions} regions in a tree generated with {holes}")
    result = {"files": summary.files, "regions": summary.regions, "filled": summary.filled,
              "rejected": summary.rejected, "seconds": round(summary.seconds, 2),
              "regions_per_minute": round(60.0 * summary.regions / max(summary.seconds, 1e-9), 1),
              "batch_size": args.batch_size, "jobs": args.jobs, "model": config.model or "diffill-base"}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:<18} {v}")
    return 0
