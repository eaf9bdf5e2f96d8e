"""``diffill eval heldout [--cases N] [--json]``: line-infill exact match, masked-token accuracy.

``diffill eval compare MODEL MODEL... [--seeds 0,1]``: the same held-out lines filled by each
model, paired: which holes only one gets right, and whether that split could be chance.

``diffill eval humaneval-infill PATH [--ray [ADDRESS]]``: pass@1 and exact match on HumanEval-infilling,
on a Ray cluster with ``--ray`` (each worker fills its tasks and runs them in its own sandbox).
"""

from __future__ import annotations

import json
from pathlib import Path

from diffill.commands.cluster import add_ray_option
from diffill.commands.common import (add_adapter_option, add_copy_option, add_dtype_option, non_negative_int,
                                     path_text, positive_int)
from diffill.loading import engine_config_from


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate the model")
    esub = p.add_subparsers(dest="eval_command", required=True)
    h = esub.add_parser("heldout", help="held-out line infill and masked-token accuracy")
    h.add_argument("--cases", type=positive_int, default=500)
    h.add_argument("--seed", type=non_negative_int, default=0)
    h.add_argument("--model", type=path_text, default=None)
    h.add_argument("--corpus", default=None, help="use this corpus's held-out split")
    add_near_twins_option(h)
    add_adapter_option(h)
    add_dtype_option(h)
    add_copy_option(h)
    add_beam_option(h)
    h.add_argument("--through-engine", action="store_true",
                   help="fill the line holes through the engine, as an editor's one-line completion: with "
                        "the syntax constraint, the latency bound and post-processing (--beam is then the "
                        "engine's own)")
    h.add_argument("--json", action="store_true")
    h.set_defaults(run=run_heldout)
    register_compare(esub)
    register_humaneval(esub)


def add_near_twins_option(p) -> None:
    p.add_argument("--keep-near-twins", action="store_true",
                   help="draw from every held-out file of --corpus, also those with a near-twin in its training "
                        "split (another version or a vendored copy of a training file; left out by default)")


def add_beam_option(p) -> None:
    p.add_argument("--beam", type=non_negative_int, default=None, metavar="N",
                   help="search each line hole with N candidates (default: as the engine fills one-line "
                        "holes, model.beam.LINE_BEAM; 0: threshold decoding)")


def run_heldout(args) -> int:
    from diffill.engine import Engine
    from diffill.evaluation import heldout_figures, heldout_split, line_sampler

    engine = Engine(engine_config_from(args))
    split = heldout_split(args.corpus, args.keep_near_twins)
    sampler = line_sampler(args.beam)
    figures = heldout_figures(engine.model, engine.tok, split.texts, cases=args.cases, seed=args.seed,
                              sampler_cfg=sampler, copy=args.copy, more=(engine.repository, engine.library),
                              engine=engine if args.through_engine else None)
    figures["through_engine"] = args.through_engine
    figures["beam"] = engine.config.single_line_beam if args.through_engine else sampler.beam
    figures["model"] = engine.info()["model"]
    figures["adapter"] = engine.info()["adapter"]
    figures["dtype"] = engine.dtype
    figures["copy"] = args.copy
    figures["library"] = engine.info()["library"]
    figures.update(split.report())
    if args.json:
        print(json.dumps(figures))
    else:
        for k, v in figures.items():
            if k == "near_twin_rule":
                v = _rule_text(v)
            print(f"{k:28} {v:.4f}" if isinstance(v, float) else f"{k:28} {v}")
    return 0


def _rule_text(rule: dict | None) -> str:
    if rule is None:
        return "none"
    return (f"{rule['shingle_lines']}-line shingle Jaccard >= {rule['jaccard']}, or same name sharing more than "
            f"{rule['same_name_share']:.0%} of its lines")


def register_compare(esub) -> None:
    c = esub.add_parser("compare", help="held-out line infill of several models on the same holes, paired")
    c.add_argument("models", nargs="+", metavar="MODEL",
                   help="checkpoint folders ('default': the shipped model), each optionally MODEL@ADAPTER (an "
                        "adapter folder or none, for that model instead of --adapter); each later one is "
                        "compared with the first")
    c.add_argument("--cases", type=positive_int, default=500, help="holes per seed")
    c.add_argument("--seeds", default="0", help="comma-separated draws of holes (default: 0)")
    c.add_argument("--corpus", default=None, help="use this corpus's held-out split")
    add_near_twins_option(c)
    add_adapter_option(c)
    add_dtype_option(c)
    add_copy_option(c)
    add_beam_option(c)
    c.add_argument("--json", action="store_true")
    c.set_defaults(run=run_compare)


def _seeds(text: str) -> list[int]:
    from diffill.errors import DiffillError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise DiffillError(f"--seeds {text!r}: give distinct non-negative integers, comma-separated")
    return seeds


def _model_and_adapter(name: str, adapter: str) -> tuple[str, str]:
    """``MODEL@ADAPTER`` -> (MODEL, ADAPTER); a name without ``@`` keeps ``adapter`` (--adapter)."""
    model, at, own = name.rpartition("@")
    return (model, own) if at and model and own else (name, adapter)


def run_compare(args) -> int:
    from diffill.engine import Engine
    from diffill.errors import DiffillError
    from diffill.evaluation import compare_line_infill, heldout_split, line_sampler

    if args.cases < 1:
        raise DiffillError("--cases must be at least 1")
    seeds = _seeds(args.seeds)
    split = heldout_split(args.corpus, args.keep_near_twins)
    texts = split.texts
    models = []
    for name in args.models:
        path, adapter = _model_and_adapter(name, args.adapter)
        engine = Engine(engine_config_from(args, model=None if path == "default" else path, adapter=adapter))
        models.append((name, engine.model, engine.tok, (engine.library,)))
    sampler = line_sampler(args.beam)
    report = compare_line_infill(models, texts, seeds, args.cases, sampler, copy=args.copy)
    report["beam"] = sampler.beam
    report.update(split.report())
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['cases']} held-out lines (seeds {','.join(map(str, seeds))}) from {report['heldout_files']} "
          f"held-out files; {split.left_out_files} files ({split.left_out_lines} non-blank lines) left out as "
          f"near-twins of training files ({_rule_text(split.rule)})")
    for row in report["models"]:
        print(f"  {row['model']:40} exact match {row['line_infill_exact_match']:.4f} ({row['exact']})"
              f"  overrun {row['line_overrun_rate']:.4f}")
    for p in report["pairs"]:
        print(f"  {p['second']} against {p['first']}: {p['only_second']} lines only it gets right, "
              f"{p['only_first']} only {p['first']}; sign test p = {p['p_value']:.3f}")
    return 0


def register_humaneval(esub) -> None:
    h = esub.add_parser("humaneval-infill",
                        help="pass@1 on HumanEval-infilling (.jsonl or .jsonl.gz), tests run sandboxed")
    h.add_argument("path", help="problems in human-eval-infilling format, or the original HumanEval problems "
                                "(expanded into the 1,033 single-line infilling tasks)")
    h.add_argument("--limit", type=int, default=None, help="only the first N problems")
    h.add_argument("--max-tokens", type=int, default=None,
                   help="canvas budget for every hole (default: by variant, 24 single-line, 64 otherwise)")
    h.add_argument("--samples", default=None, metavar="OUT.jsonl",
                   help="write the completions in upstream's samples format")
    h.add_argument("--model", type=path_text, default=None)
    add_adapter_option(h)
    add_dtype_option(h)
    add_copy_option(h)
    add_ray_option(h, "fill and run the tasks")
    h.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="with --ray: workers on the cluster (default: one per CPU of the cluster)")
    h.add_argument("--json", action="store_true")
    h.set_defaults(run=run_humaneval)


def run_humaneval(args) -> int:
    from diffill.engine import Engine
    from diffill.errors import DiffillError
    from diffill.commands.cluster import engine_spec
    from diffill.distributed import ray_options
    from diffill.humaneval import HumanEvalConfig, load_problems, run_humaneval, run_humaneval_on_ray, write_samples

    if args.limit is not None and args.limit < 1:
        raise DiffillError("--limit must be at least 1")
    if args.max_tokens is not None and not 1 <= args.max_tokens <= 1024:
        raise DiffillError("--max-tokens must be between 1 and 1024")
    if args.samples and not Path(args.samples).resolve().parent.is_dir():
        raise DiffillError(f"no folder for the samples file: {Path(args.samples).parent}")
    ray = ray_options(args.ray, workers=args.workers)
    problems = load_problems(args.path, args.limit)
    config = HumanEvalConfig(max_tokens=args.max_tokens)
    if ray is not None:
        report = run_humaneval_on_ray(engine_spec(args, threads=max(1, int(ray.cpus))), problems, config, ray)
    else:
        report = run_humaneval(Engine(engine_config_from(args)), problems, config)
    if args.samples:
        write_samples(args.samples, report.cases)
    figures = report.as_json()
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{'pass@1':28} {figures['pass_at_1']:.4f}")
        print(f"{'exact_match':28} {figures['exact_match']:.4f}")
        for variant, v in figures["by_variant"].items():
            print(f"  {variant:26} pass@1 {v['pass_at_1']:.4f}  exact {v['exact_match']:.4f}  "
                  f"({v['cases']} cases)")
        print(f"{'cases':28} {figures['cases']}")
        print(f"{'timed out':28} {figures['timed_out']}")
        print(f"{'seconds':28} {figures['seconds']}")
        print(f"{'model':28} {figures['model']}")
        if ray is not None:
            print(f"{'workers':28} {figures['workers']} ({figures['tasks_retried']} tasks retried)")
    return 0
