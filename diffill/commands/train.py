"""``diffill train --corpus DIR --out DIR (--minutes M | --steps N) [--resume]``."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("train", help="pretrain the masked-diffusion model (resumable)")
    p.add_argument("--corpus", required=True, help="folder made by `diffill corpus build`")
    p.add_argument("--out", required=True, help="run folder: checkpoint/, log.jsonl (and cooldown/ for a wsd schedule)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float)
    budget.add_argument("--steps", type=int, help="train this many more steps")
    budget.add_argument("--until-step", type=int, help="train until the run has this many steps (resumable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint if it exists (past a wsd schedule's decay_start: from "
                        "OUT/cooldown/checkpoint)")
    p.add_argument("--init", default=None, help="start from this model's weights (a checkpoint, or an exported model such as "
                        "model/checkpoints/diffill-base), counting on from its step, tokens and CPU time; the "
                        "optimizer state starts afresh")
    p.add_argument("--config", default=None, help="JSON file of TrainConfig overrides")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="TrainConfig override, e.g. --set batch_size=32 --set model.hidden_size=128 "
                        "--set objective.plain_fraction=0.1 --set objective.mix.line=0.6")
    p.add_argument("--eval-cases", type=int, default=200, help="held-out line cases per evaluation (0: none)")
    p.add_argument("--humaneval", default=None, metavar="FILE",
                   help="also log HumanEval single-line pass@1 of the model alone (no copying) every "
                        "--humaneval-minutes and at the end: the learning curve against CPU-hours")
    p.add_argument("--humaneval-minutes", type=float, default=120.0, metavar="M")
    p.add_argument("--humaneval-cases", type=int, default=None, metavar="N", help="the first N tasks (default: all)")
    p.set_defaults(run=run)


def humaneval_evaluator(path: str, cases: int | None):
    """``(model, tokenizer) -> figures``: HumanEval single-line infilling of the model as it is now,
    served alone (bf16, no adapter, no copying), as ``diffill eval humaneval-infill --no-copy``."""
    import tempfile

    from diffill.engine import Engine, EngineConfig
    from diffill.humaneval import load_problems, run_humaneval
    from diffill.model.export import write_model

    problems = load_problems(path, cases)  # read now: a missing file fails before training starts

    def evaluate(model, tok) -> dict:
        with tempfile.TemporaryDirectory(prefix="diffill-humaneval-") as tmp:
            write_model(model, tok.hf, Path(tmp))
            engine = Engine(EngineConfig(model=tmp, copy=False, library=None, adapter=None))
            report = run_humaneval(engine, problems)
        return {"pass_at_1": report.pass_at_1, "exact_match": report.exact_match, "cases": len(report.cases),
                "seconds": round(report.seconds, 1)}

    return evaluate


def apply_settings(cfg, settings: dict) -> None:
    """Set ``cfg``'s fields from a recipe's (or ``--set``'s) settings, as ``--config`` reads them."""
    for key, value in settings.items():
        _apply(cfg, key, value)


def _apply(cfg, key: str, value):
    from diffill.errors import DiffillError

    if key.startswith("model."):
        cfg.model[key[6:]] = value
        return
    if key == "objective" or key.startswith("objective."):  # objective.mix.line, or a nested dict
        _with_field(cfg, key.split("."), value, key)
        return
    if key not in {f.name for f in fields(cfg)}:
        raise DiffillError(f"unknown training setting {key!r}")
    setattr(cfg, key, value)


def _with_field(obj, parts: list[str], value, key: str):
    """``obj`` with a (nested) dataclass field set; a dict value fills a dataclass field key by key.
    Frozen dataclasses (the context window) are replaced, others changed in place."""
    from dataclasses import is_dataclass, replace

    from diffill.errors import DiffillError

    if not is_dataclass(obj) or parts[0] not in {f.name for f in fields(obj)}:
        raise DiffillError(f"unknown training setting {key!r}")
    current = getattr(obj, parts[0])
    if len(parts) > 1:
        new = _with_field(current, parts[1:], value, key)
    elif is_dataclass(current):
        if not isinstance(value, dict):
            raise DiffillError(f"unknown training setting {key!r}")
        new = current
        for k, v in value.items():
            new = _with_field(new, [k], v, f"{key}.{k}")
    elif isinstance(value, dict):
        raise DiffillError(f"unknown training setting {key!r}")
    else:
        new = value
    if obj.__dataclass_params__.frozen:
        return replace(obj, **{parts[0]: new})
    setattr(obj, parts[0], new)
    return obj


def run(args) -> int:
    from diffill.errors import DiffillError
    from diffill.evaluation import heldout_figures, line_cases, line_sampler, peer_line_infill
    from diffill.model.corpus import load_texts
    from diffill.model.train import TrainConfig, train

    corpus = Path(args.corpus)
    if not (corpus / "manifest.json").is_file():
        raise DiffillError(f"{corpus} is not a corpus folder (no manifest.json); run `diffill corpus build` first")
    cfg = TrainConfig()
    overrides = json.loads(Path(args.config).read_text()) if args.config else {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value[:1] in "0123456789-[{tfn" else value
    apply_settings(cfg, overrides)
    held = [f.text for f in load_texts(corpus, "heldout")]

    def evaluate(model, tok):
        if not held:
            return {}
        if cfg.objective.kind == "causal":  # the autoregressive peer fills the same lines greedily
            return peer_line_infill(model, tok, line_cases(held, args.eval_cases, 0))
        # threshold decoding, the model alone (no copying), as every point of the learning curve was measured
        return heldout_figures(model, tok, held, cases=args.eval_cases, sampler_cfg=line_sampler(0), copy=False)

    if args.humaneval and cfg.objective.kind == "causal":
        raise DiffillError("--humaneval evaluates a diffusion model; a causal run is compared with `diffill bench peer`")
    humaneval = humaneval_evaluator(args.humaneval, args.humaneval_cases) if args.humaneval else None
    init = Path(args.init) if args.init else None
    if init is not None and not (init / "config.json").is_file():
        raise DiffillError(f"--init {init}: not a model folder (no config.json)")
    try:
        state = train(corpus, Path(args.out), cfg, minutes=args.minutes, steps=args.steps,
                      until_step=args.until_step, resume=args.resume, init=init,
                      evaluate=evaluate if args.eval_cases > 0 else None, humaneval=humaneval,
                      humaneval_minutes=args.humaneval_minutes)
    except ValueError as e:  # a schedule or a corpus that does not fit the run
        raise DiffillError(str(e)) from None
    print(json.dumps(state))
    return 0
