"""``diffill bench refactor [--files 100] [--jobs N] [--ray [ADDRESS] --workers N] [--json]``: regions
per minute of ``diffill refactor --holes`` (a dry run) on a generated tree of Python, JavaScript and
Go files; with ``--ray``, in local processes and on a Ray cluster, side by side.

Every generated file holds a few small functions with real bodies (context) and a few whose
body is a placeholder (``...``, ``pass``, ``throw new Error("not implemented")``,
``panic("not implemented")``) or a ``TODO: fill`` marker. The tree is generated from a fixed
seed, so runs are comparable.
"""

from __future__ import annotations

import functools
import json
import os
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
    from diffill.distributed import EngineSpec, connected, ray_options

    if args.files < 1:
        raise DiffillError("--files must be at least 1")
    jobs = args.jobs if args.jobs is not None else (2 if args.ray is not None else 1)
    if jobs < 1:
        raise DiffillError("--jobs must be at least 1")
    ray = ray_options(args.ray, workers=args.workers)
    # as ``diffill refactor`` sets them: several processes share the CPUs rather than each taking all
    threads = args.threads or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0)
    # the generated tree holds Python, JavaScript and Go: every one is filled unless --languages says otherwise
    config = engine_config_from(args, threads=threads, languages=getattr(args, "languages", None) or "all")
    engine = make_engine(config)  # fails early (missing model) before generating anything
    factory = (lambda: engine) if jobs == 1 else functools.partial(make_engine, config)
    with tempfile.TemporaryDirectory(prefix="diffill-bench-refactor-") as tmp:
        holes = generate_tree(Path(tmp), args.files, args.seed)
        result = _measure(tmp, holes, factory, args, jobs=jobs)
        if ray is not None:
            del engine, factory  # the local engine's memory goes back before the workers load theirs
            spec = EngineSpec.from_args(args, threads=args.threads or max(1, int(ray.cpus)), languages=config.languages)
            with connected(ray):  # timed from the workers' start, as the local processes are
                result["ray"] = _measure(tmp, holes, spec, args, ray=ray)
    result["model"] = config.model or "diffill-base"
    if args.json:
        print(json.dumps(result))
    elif ray is None:
        for k, v in result.items():
            print(f"{k:<18} {v}")
    else:
        print(_side_by_side(result, jobs))
    return 0


def _measure(tree: str, holes: int, factory, args, jobs: int = 1, ray=None) -> dict:
    from diffill.refactor import RefactorConfig, run_refactor

    summary = run_refactor(RefactorConfig([tree], holes=True, jobs=jobs, batch_size=args.batch_size,
                                          progress=not args.json, ray=ray), factory)
    if summary.regions != holes:
        raise DiffillError(f"found {summary.regions} regions in a tree generated with {holes}")
    out = {"files": summary.files, "regions": summary.regions, "filled": summary.filled,
           "rejected": summary.rejected, "seconds": round(summary.seconds, 2),
           "regions_per_minute": round(60.0 * summary.regions / max(summary.seconds, 1e-9), 1),
           "batch_size": args.batch_size}
    if ray is None:
        out["jobs"] = jobs
    else:
        out.update(workers=summary.workers, tasks_retried=summary.tasks_retried,
                   address=ray.address or "found or started by ray.init()")
    return out


def _side_by_side(result: dict, jobs: int) -> str:
    ray = result["ray"]
    head = f"local (--jobs {jobs})", f"ray ({ray['workers']} workers)"
    rows = [(k, result[k], ray[k]) for k in ("files", "regions", "filled", "rejected", "seconds",
                                             "regions_per_minute", "batch_size")]
    width = max(len(k) for k, _, _ in rows)
    col = max(len(h) for h in head) + 2
    lines = [f"{'':<{width}}  {head[0]:>{col}}{head[1]:>{col}}"]
    lines += [f"{k:<{width}}  {str(a):>{col}}{str(b):>{col}}" for k, a, b in rows]
    return "\n".join(lines + [f"model: {result['model']}; ray cluster: {ray['address']}"])
