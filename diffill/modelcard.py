"""Write the shipped model's card in Hugging Face form, from a training run.

YAML front matter (license, language, tags and a model-index of evaluation results), then
intended use, architecture, recipe, training, evaluation and limitations.

    python -m diffill.modelcard RUN_DIR CHECKPOINT_DIR [--final JSON] [--humaneval JSON] [--notes MD]

Reads the run's ``log.jsonl`` (training steps and periodic held-out evaluations),
``train_config.json`` and the corpus manifest, appends the run's end to the checkpoint's
running log (``training_log.json``) and its evaluations to the curve's points
(``learning_curve.json``), and rewrites ``README.md`` and ``learning_curve.svg``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from pathlib import Path

import diffill.model
from diffill.bench.svg import scatter


def read_run(run: Path) -> tuple[list[dict], dict]:
    evals, last = [], {}
    for line in (run / "log.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "eval" in rec or "humaneval" in rec:
            evals.append(rec)
        elif "loss" in rec:
            last = rec
    # a resumed run may log an evaluation twice around a restart: keep the last per step (and
    # branch: a wsd trunk resumed after its cooldown goes over the same steps again)
    return merge_points([], evals), last


CURVE_POINTS = "learning_curve.json"


def merge_points(kept: list[dict], run: list[dict]) -> list[dict]:
    """The card's curve: the points it had (kept beside the weights, since a run folder does not
    outlive its machine) and this run's, in step order, one per step and branch; a later point
    wins over an earlier one with the same step (the run's over the kept)."""
    by_step = {(p["step"], bool(p.get("cooldown")), "humaneval" in p): p for p in kept + run}
    return [by_step[k] for k in sorted(by_step)]


def curve_svg(points: list[dict]) -> str:
    """Held-out line exact match, and HumanEval single-line pass@1 where the run logged it
    (``diffill train --humaneval``), against CPU-hours."""
    series = {"line-infill exact match": [(p["cpu_hours"], p["eval"]["line_infill_exact_match"], f"step {p['step']}")
                                          for p in points if "eval" in p]}
    humaneval = [(p["cpu_hours"], p["humaneval"]["pass_at_1"], f"step {p['step']}") for p in points if "humaneval" in p]
    if humaneval:
        series["HumanEval single-line pass@1"] = humaneval
    return scatter("learning-curve", "Held-out line-infill exact match and HumanEval pass@1 against CPU-hours"
                   if humaneval else "Held-out line-infill exact match against CPU-hours", series,
                   "CPU-hours (process CPU time, 2 cores)", "exact match" if not humaneval else "share")


RECIPES = Path(diffill.model.__file__).resolve().parent / "recipes"


def phase_files(folder: Path = RECIPES) -> list[Path]:
    """The recipe's phases in the order they run: by the number in their name (phase9 before
    phase10), as the Makefile's ``sort -V`` orders them."""
    return sorted(folder.glob("*.json"), key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem)])


def describe_phases(folder: Path = RECIPES) -> list[str]:
    """One line per recipe phase: optimizer, learning-rate schedule and the steps it covers."""
    from dataclasses import replace

    from diffill.model.train import TrainConfig

    out, branch_end = [], None
    for path in phase_files(folder):
        overrides = json.loads(path.read_text())
        objective = overrides.pop("objective", None)
        c = replace(TrainConfig(), **overrides)
        opt = ("Muon for the hidden matrices (lr matched to AdamW's RMS), AdamW for embeddings and norms"
               if c.optimizer == "muon" else "AdamW (betas 0.9/0.95)")
        if c.schedule == "wsd":
            sched = (f"constant to step {c.decay_start}, where the trunk stops (the next phase resumes it), then a "
                     f"branch decays linearly to {c.min_lr_ratio}x at step {c.total_steps}")
        else:
            sched = f"cosine to {c.min_lr_ratio}x at step {c.total_steps}"
        line = (f"`{path.name}`: steps {c.schedule_start}-{c.total_steps}; {opt}; lr {c.lr}, {c.warmup_steps} "
                f"warm-up steps from step {c.schedule_start}, {sched}.")
        if c.schedule_start == branch_end:
            line += " It goes on from the last phase's decayed branch (the exported weights)."
        if c.layers:
            line += f" The model is grown to {c.layers} blocks first, where it has fewer (`model/grow.py`)."
        if c.reset_optimizer:
            line += " The optimizer state starts afresh."
        if objective:
            line += f" Objective settings: `{json.dumps(objective, separators=(', ', ': '))}`."
        out.append(line)
        branch_end = c.total_steps if c.schedule == "wsd" else None
    return out


def _canvas_noise(objective: dict) -> str:
    """The card's sentence on how canvases are masked, when the run changed it from plain random t."""
    parts = []
    if objective.get("hide_eoi"):
        parts.append("a canvas with any content masked has all its `<eoi>` padding masked too")
    if objective.get("ordered_fraction"):
        parts.append(f"{objective['ordered_fraction']:.0%} of canvases are masked from a random cut to the end "
                     "(the states of left-to-right decoding)")
    if not parts:
        return ""
    return "Canvas noise as the sampler sees it: " + "; ".join(parts) + "; each slot weighted by 1 / its chance of being masked. "


HELDOUT_DATASET = {"type": "heldout-python-lines", "name": "Held-out Python lines (content-hash split of the corpus)"}
HUMANEVAL_DATASET = {"type": "openai_humaneval", "name": "HumanEval single-line infilling"}


def front_matter(name: str, final: dict | None = None, humaneval: dict | None = None) -> str:
    """The card's YAML front matter: what the Hugging Face Hub reads (license, language, library,
    pipeline, tags) and a model-index with the figures of ``diffill eval heldout --json``
    (``final``) and ``diffill eval humaneval-infill --json`` (``humaneval``), where given."""
    import yaml

    results = []
    if final and "line_infill_exact_match" in final:
        metrics = [{"type": "exact_match", "name": "line infill exact match",
                    "value": final["line_infill_exact_match"]}]
        if "masked_token_accuracy" in final:
            metrics.append({"type": "accuracy", "name": "masked-token accuracy (ratio 0.5)",
                            "value": final["masked_token_accuracy"]})
        results.append({"task": {"type": "fill-mask", "name": "Code infilling"}, "dataset": HELDOUT_DATASET,
                        "metrics": metrics})
    if humaneval and "pass_at_1" in humaneval:
        metrics = [{"type": "pass@1", "name": "pass@1", "value": humaneval["pass_at_1"]}]
        if "exact_match" in humaneval:
            metrics.append({"type": "exact_match", "name": "exact match", "value": humaneval["exact_match"]})
        results.append({"task": {"type": "fill-mask", "name": "Code infilling"},
                        "dataset": {**HUMANEVAL_DATASET, "split": f"first {humaneval['cases']}" if "cases" in humaneval
                                    else "test"}, "metrics": metrics})
    meta = {"license": "mit", "language": ["code"], "library_name": "transformers", "pipeline_tag": "fill-mask",
            "tags": ["code", "code-infilling", "masked-diffusion", "diffusion-lm", "python", "diffill"]}
    if results:
        meta["model-index"] = [{"name": name, "results": results}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def write_card(run: Path, dest: Path, final: dict | None = None, notes: str | None = None,
               humaneval: dict | None = None) -> Path:
    from diffill.model.runs import latest_checkpoint

    points, last = read_run(run)
    cfg = json.loads((run / "train_config.json").read_text())
    state = json.loads((latest_checkpoint(run) / "trainer_state.json").read_text())
    model_cfg = json.loads((dest / "config.json").read_text())
    history_file = dest / "training_log.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    entry = {"date": dt.date.today().isoformat(), "step": state["step"], "tokens": state["tokens"],
             "cpu_hours": round(state["cpu_seconds"] / 3600, 3), "wall_hours": round(state["wall_seconds"] / 3600, 3),
             "figures": final or next((p["eval"] for p in reversed(points) if "eval" in p), {})}
    if not history or history[-1]["step"] != entry["step"]:
        history.append(entry)
    history_file.write_text(json.dumps(history, indent=2) + "\n")
    points_file = dest / CURVE_POINTS
    points = merge_points(json.loads(points_file.read_text()) if points_file.is_file() else [], points)
    points_file.write_text(json.dumps(points, indent=1) + "\n")
    if points:
        (dest / "learning_curve.svg").write_text(curve_svg(points))
    manifest_file = run.parent / "corpus" / "manifest.json"
    corpus_manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else None
    n_layers, hidden = model_cfg["num_hidden_layers"], model_cfg["hidden_size"]
    params = (model_cfg["vocab_size"] * hidden
              + n_layers * (4 * hidden * hidden + 3 * hidden * model_cfg["intermediate_size"] + 2 * hidden) + hidden)
    lines = [
        front_matter(dest.name, final, humaneval),
        f"# {dest.name}",
        "",
        "The default model of diffill: a small bidirectional transformer trained as a masked diffusion",
        "language model for code infilling, by the project's own recipe, on CPU.",
        "",
        "## Intended use",
        "",
        "Filling holes in source code (the rest of a line at the cursor, a few lines, a selected region) "
        "through diffill's engine: `diffill infill`, `diffill refactor` and the language server (`diffill serve`), "
        "which add beam search, copying from the file and the library index, and a tree-sitter syntax "
        "constraint. The weights load with `model.loading.load_checkpoint` (importing `model.network` registers "
        "the `diffill` model type with transformers' Auto classes). Not meant for free text, chat, or code "
        "generation from a description.",
        "",
        "## Architecture",
        "",
        f"- {n_layers} layers, hidden {hidden}, {model_cfg['num_attention_heads']} heads, "
        f"SwiGLU {model_cfg['intermediate_size']}, RoPE, RMSNorm, no causal mask, tied embeddings; "
        f"{params / 1e6:.2f}M parameters; weights stored as bf16 safetensors.",
        f"- Tokenizer: byte-level BPE, {model_cfg['vocab_size']} entries, trained on the corpus; special tokens "
        "`<pad> <mask> <eoi> <bos>`.",
        f"- Context window: {model_cfg.get('prefix_tokens', 112)} tokens before the hole and "
        f"{model_cfg.get('suffix_tokens', 48)} after (`config.json`).",
        "",
        "## Recipe (`make model`)",
        "",
        "1. `diffill corpus build runs/corpus`: Python files of the standard library and the installed "
        "site-packages; generated, minified and huge files dropped; test files capped at a quarter; exact "
        "and whitespace-insensitive duplicates removed; ~3% held out by content hash.",
        "2. `make train`: `diffill train --corpus runs/corpus --out runs/base --until-step N --resume --config "
        "PHASE` for each phase below: masked diffusion (t ~ U(eps, 1), mask rate t, cross-entropy / t over "
        "eligible positions). "
        f"{int(cfg['objective']['plain_fraction'] * 100)}% plain sequences of "
        f"{cfg['objective']['plain_length']} tokens; the rest infill sequences: prefix and suffix tokenized "
        "separately around a middle (a whole line after its indentation, the rest of a line, 1-4 lines, a "
        "tree-sitter node, a random character span), the middle a canvas padded with `<eoi>` to an "
        "inference budget (16/24/32/64) or by 0-16 slots; only the canvas is masked. "
        f"{_canvas_noise(cfg['objective'])}Context window "
        f"{cfg['objective']['window']['prefix_tokens']} prefix + {cfg['objective']['window']['suffix_tokens']} "
        "suffix tokens cut at line boundaries. Batch "
        f"{cfg['batch_size']}, gradient clipping {cfg['grad_clip']}, weight decay {cfg['weight_decay']}, "
        "bf16 autocast on CPU.",
        "3. The phases (`model/recipes/phase*.json`, in order; a phase resumes the run and trains until its "
        "schedule ends):",
        *[f"   - {phase}" for phase in describe_phases()],
        "4. `python -m diffill.model.export runs/base " + f"model/checkpoints/{dest.name}` (bf16; the furthest checkpoint, "
        "a wsd phase's cooldown branch).",
        "",
        "## Training",
        "",
        f"- Steps: {state['step']}; tokens seen: {state['tokens'] / 1e6:.1f}M; "
        f"CPU time: {state['cpu_seconds'] / 3600:.2f} CPU-hours ({state['wall_seconds'] / 3600:.2f} h wall "
        "on a shared 2-core machine).",
    ]
    if corpus_manifest:
        tr, ho = corpus_manifest["splits"]["train"], corpus_manifest["splits"]["heldout"]
        lines.append(f"- Corpus: {tr['files']} training files ({tr['tokens'] / 1e6:.1f}M tokens, "
                     f"{tr['bytes'] / 1e6:.0f} MB), {ho['files']} held-out files ({ho['tokens'] / 1e6:.2f}M tokens).")
    lines.append("- The running log of the training (date, step, tokens, CPU-hours, figures) is `training_log.json`.")
    lines += ["", "## Evaluation"]
    if final:
        lines += ["", "Held-out lines of the corpus (`diffill eval heldout --corpus runs/corpus --json` on the "
                  "exported model; the settings it ran with are in the table):", "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in final.items()]
    if humaneval:
        lines += ["", "HumanEval single-line infilling (`diffill eval humaneval-infill HumanEval.jsonl.gz --json`):",
                  "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in humaneval.items()]
    if points:
        lines += ["", "### Learning curve", "",
                  "Held-out line infill (200 cases, 24-token budget) during training:", "",
                  "![learning curve](learning_curve.svg)", "",
                  "| step | CPU-hours | tokens | line exact match | line overrun | masked-token acc. |",
                  "|---|---|---|---|---|---|"]
        for p in (p for p in points if "eval" in p):
            e = p["eval"]
            step = f"{p['step']} (cooldown)" if p.get("cooldown") else p["step"]
            lines.append(f"| {step} | {p['cpu_hours']:.2f} | {p['tokens'] / 1e6:.1f}M | "
                         f"{e['line_infill_exact_match']:.3f} | {e.get('line_overrun_rate', 0):.3f} | "
                         f"{e['masked_token_accuracy']:.3f} |")
        he = [p for p in points if "humaneval" in p]
        if he:
            lines += ["", "HumanEval single-line infilling of the model alone (no copying) during training:", "",
                      "| step | CPU-hours | tasks | pass@1 | exact match |", "|---|---|---|---|---|"]
            for p in he:
                step = f"{p['step']} (cooldown)" if p.get("cooldown") else p["step"]
                h = p["humaneval"]
                lines.append(f"| {step} | {p['cpu_hours']:.2f} | {h['cases']} | {h['pass_at_1']:.3f} | "
                             f"{h['exact_match']:.3f} |")
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    lines += ["", "## Limitations", "",
              f"- {params / 1e6:.1f}M parameters trained for {state['cpu_seconds'] / 3600:.0f} CPU-hours: fills are "
              "short and often generic, right in shape more often than in content.",
              "- Trained on Python only; other languages are filled poorly.",
              "- The model reads only its context window; copying from the rest of the file and from the library "
              "index, which the engine adds, gives most of diffill's exact matches.",
              "- Its training data are the Python packages of one machine: code unlike them is filled worse.", ""]
    (dest / "README.md").write_text("\n".join(lines))
    return dest / "README.md"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--final", type=Path, help="JSON of `diffill eval heldout --json` on the exported model")
    ap.add_argument("--humaneval", type=Path,
                    help="JSON of `diffill eval humaneval-infill --json` on the exported model")
    ap.add_argument("--notes", type=Path, help="Markdown file: notes on the recipe for the card")
    a = ap.parse_args()
    final = json.loads(a.final.read_text()) if a.final else None
    humaneval = json.loads(a.humaneval.read_text()) if a.humaneval else None
    print(write_card(a.run, a.dest, final, a.notes.read_text() if a.notes else None, humaneval))


if __name__ == "__main__":
    main()
