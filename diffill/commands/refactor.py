"""``diffill refactor PATH... (--holes | --query TSQUERY)``: fill regions across a codebase.

A dry run prints a unified diff; ``--write`` replaces each file atomically. ``--ray [ADDRESS]`` fills
on a Ray cluster, this process still reading and writing every file. Exit codes: 0 every region
filled, 1 some regions rejected or files skipped, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys

from diffill.commands import cluster
from diffill.commands.common import add_model_options, fraction
from diffill.errors import DiffillError
from diffill.loading import engine_config_from, make_engine


def register(sub) -> None:
    p = sub.add_parser("refactor", help="fill placeholders, fill markers or query captures across files")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (nothing outside them is read or written)")
    p.add_argument("--holes", action="store_true",
                   help="fill placeholder bodies (..., pass, raise NotImplementedError, "
                        "throw new Error('not implemented'), panic(\"not implemented\"), todo!()) "
                        "and 'TODO: fill' / 'diffill: fill' comments")
    p.add_argument("--query", metavar="TSQUERY", default=None,
                   help="a tree-sitter query; every capture named @fill is regenerated")
    p.add_argument("--lang", action="append", type=language_list, default=None, metavar="LANG",
                   help="only these languages (repeat or comma-separate: python,javascript,go...)")
    p.add_argument("--include", action="append", default=[], metavar="GLOB", help="only files matching this glob")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip files matching this glob")
    p.add_argument("--no-gitignore", action="store_true", help="also read files .gitignore excludes")
    p.add_argument("--write", action="store_true", help="apply the changes (default: print a diff)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="processes filling regions (default 1); with --ray, workers on the cluster "
                        "(default: one per CPU of the cluster)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="regions sharing forward passes")
    p.add_argument("--min-confidence", type=fraction, default=0.0, metavar="P",
                   help="leave a region as it is when its fill's confidence (the estimated probability that it "
                        "is exactly right, 0 to 1) is below P (default 0: fill every region)")
    cluster.add_ray_option(p, "fill")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON summary instead of diffs and a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def language_list(text: str) -> list[str]:
    """An argparse ``type`` for ``--lang``: comma-separated language names, as canonical names."""
    from diffill.refactor.syntax import LANGUAGES, canonical_language

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no language (known: {', '.join(LANGUAGES)})")
    langs = []
    for name in names:
        lang = canonical_language(name)
        if lang is None:
            raise argparse.ArgumentTypeError(f"unknown language {name!r} (known: {', '.join(LANGUAGES)})")
        langs.append(lang)
    return langs


def parse_langs(values: list[list[str]] | None) -> set[str] | None:
    """The languages of every ``--lang`` (each already checked by ``language_list``); None: all."""
    return {lang for v in values for lang in v} if values else None


def run(args) -> int:
    from diffill.refactor import FileFilter, RefactorConfig, run_refactor
    from diffill.distributed import ray_options
    from diffill.languages import served
    from diffill.refactor.report import summary_table, unified_diff

    if args.model is not None and not os.path.isdir(args.model):
        raise DiffillError(f"no such model folder: {args.model}")
    if args.jobs is not None and args.jobs < 1:
        raise DiffillError("--jobs and the batch size must be at least 1")
    ray = ray_options(args.ray, workers=args.jobs)
    jobs = args.jobs or 1
    filt = FileFilter(langs=parse_langs(args.lang), include=args.include, exclude=args.exclude,
                      gitignore=not args.no_gitignore)
    config = RefactorConfig(paths=args.paths, holes=args.holes, query=args.query, filter=filt,
                            write=args.write, jobs=jobs, batch_size=args.batch_size,
                            min_confidence=args.min_confidence,
                            progress=not args.no_progress and not args.json, ray=ray,
                            languages=served(args.model, args.languages))
    if ray is not None:  # one torch thread per CPU a worker reserves
        factory = cluster.engine_spec(args, threads=max(1, int(ray.cpus)))
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        factory = functools.partial(make_engine, engine_config_from(args, threads=threads if jobs > 1 else 0))

    def show(outcome) -> None:
        if not args.write and not args.json:
            diff = unified_diff(outcome.path, outcome.old, outcome.new)
            if diff:
                sys.stdout.write(diff)
                sys.stdout.flush()

    summary = run_refactor(config, factory, on_file=show)
    if args.json:
        print(json.dumps(summary.as_json()))
    else:
        sys.stderr.write(summary_table(summary))
    return 0 if summary.ok else 1
