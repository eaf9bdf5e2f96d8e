"""Training adapters end to end: a workspace adapter on a user's repository (``diffill adapt``)
and the shipped infill adapter on the training corpus (``diffill adapt-base``).

Both measure held-out whole-line infill exact match (diffill/evaluation.py) on the bare base
before training and on base + adapter after, and save the adapter with those figures. Holes are
filled as the engine fills them, copying from their own file; a workspace adapter also keeps its
training files' tokens, which its "after" figure and the engine copy from (model/ngram.py).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from diffill.adapters.lora import (
    SHIPPED_ADAPTER,
    REPOSITORY_TOKENS,
    WORKSPACE_ADAPTER,
    LoraSettings,
    base_fingerprint,
    save_adapter,
)
from diffill.adapters.sources import HELDOUT_PERCENT, SYNTAX_SPAN_LANGUAGES, collect_sources, split_heldout
from diffill.adapters.training import LINE_MIX, AdaptConfig, TrainingFile, token_stream, train_adapter
from diffill.adapt_bases import family_adapter_config, load_adapt_base
from diffill.engine import load_library
from diffill.errors import DiffillError
from diffill.evaluation import heldout_figures, line_cases, line_infill, line_sampler
from diffill.model.context import Window, set_window, window_of
from diffill.model.corpus import file_streams
from diffill.model.loading import ModelLoadError, load_checkpoint
from diffill.model.ngram import TokenCache
from diffill.model.objective import ObjectiveConfig

log = logging.getLogger(__name__)


@dataclass
class AdaptReport:
    before: dict
    after: dict
    files: int  # training files
    heldout_files: int
    tokens: int  # tokens in the training files
    cases: int
    steps: int
    minutes: float  # training time
    adapter: str
    skipped: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"before": self.before, "after": self.after, "files": self.files, "tokens": self.tokens,
                "adapter": self.adapter, "minutes": round(self.minutes, 2), "heldout_files": self.heldout_files,
                "cases": self.cases, "steps": self.steps, "skipped": self.skipped}


def workspace_adapter_config(seed: int = 0) -> AdaptConfig:
    """``diffill adapt``'s recipe: LoRA on every projection, plus the token embeddings (tied to
    the output layer) trained whole. On two files of a repository the model had not seen, 200 steps
    of LoRA alone lowered their training loss from 2.87 to 2.52 (lr 3e-3); with the embeddings,
    to 1.69 (lr 1e-3), as far as training every weight did. A repository's own names live there."""
    return AdaptConfig(lora=LoraSettings(whole=("embed_tokens",)), seed=seed)


def library_record(setting: str | None, index) -> str:
    """The library an adapter's figures were measured with, for its training record: the setting as
    given (no machine path), or "none" where no index was loaded."""
    return setting if index is not None else "none"


def exact_match(backend, tok, texts: list[str], cases: int, seed: int = 0, repository: TokenCache | None = None,
                library=None) -> dict:
    """Held-out whole-line infill exact match of ``backend``'s model, its line holes filled as the engine
    fills them (copying from their own file, and from ``repository`` and ``library`` when given)."""
    holes = line_cases(texts, cases, seed)  # fewer when the files have fewer code lines
    figures = line_infill(backend, tok, holes, line_sampler(), more=(repository, library))
    return {"line_infill_exact_match": round(figures["line_infill_exact_match"], 4), "cases": len(holes)}


def _check_writable(out: Path) -> None:
    """Fail before training, not after, when ``out`` cannot be written."""
    if out.exists() and not out.is_dir():
        raise DiffillError(f"output folder {out} exists and is not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".diffill-write-test", dir=out.parent)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise DiffillError(f"cannot write the adapter to {out}: {e.strerror or e}") from e


def _load_own_base(model_path: str | None):
    try:
        return load_checkpoint(model_path)
    except ModelLoadError as e:
        raise DiffillError(str(e)) from e


def adapt_repository(root: str | Path, out: str | Path | None = None, minutes: float = 10.0,
                     steps: int | None = None, model_path: str | None = None, cases: int = 200,
                     config: AdaptConfig | None = None, progress: bool = True, library: str | None = "default",
                     device: str = "auto", seed: int = 0) -> AdaptReport:
    """Train a workspace adapter on the repository at ``root`` and save it (default
    ``root/.diffill/adapter``) with its training files' tokens; held-out exact match is measured
    before (the bare base) and after (base + adapter, copying from those tokens too), both copying
    from the ``library`` index as the engine does (``EngineConfig.library``). ``model_path`` may
    hold an open family's checkpoint (``diffill.adapt_bases``), trained on ``device``; without
    ``config``, the base's recipe with ``seed``."""
    root = Path(root)
    if not root.is_dir():
        raise DiffillError(f"no such folder: {root}")
    out = Path(out) if out else root / WORKSPACE_ADAPTER
    _check_writable(out)
    coll = collect_sources(root)
    if coll.candidates == 0:
        what = "no files tracked by git" if coll.source == "git" else "no files"
        raise DiffillError(f"the repository {root} is empty ({what})")
    if not coll.files:
        skipped = ", ".join(f"{n} {why}" for why, n in coll.skipped.most_common())
        raise DiffillError(f"no source files in a supported language in {root} ({skipped}); "
                           "supported: Python, JavaScript, TypeScript, Go, Rust, Java, C, C++")
    try:
        train_files, held = split_heldout(coll.files, HELDOUT_PERCENT)
    except ValueError as e:
        raise DiffillError(f"{root}: {e}") from e
    base = load_adapt_base(model_path, device)
    model, tok = base.model, base.tok
    base_sha = base_fingerprint(model)
    held_texts = [f.text for f in held]
    index = load_library(library, tok)
    before = exact_match(base.backend, tok, held_texts, cases, library=index)
    texts = [f.text for f in train_files]
    stream = token_stream(tok, texts)
    n_tokens = int(len(stream) - len(texts))  # without the <bos> separators
    files = [TrainingFile(f.text, f.language in SYNTAX_SPAN_LANGUAGES) for f in train_files]
    cfg = base.adapt_config(config or (workspace_adapter_config(seed) if base.kind == "diffill"
                                      else family_adapter_config(seed)))
    peft_model, result = base.train(files, cfg, minutes=minutes if steps is None else None, steps=steps,
                                    progress=progress, stream=stream)
    peft_model.merge_adapter()  # evaluate at inference speed; the saved LoRA weights are unchanged
    # the adapter as served: its weights, and its repository's tokens for fills to copy from (the
    # training stream's files, each after its <bos>)
    repository = TokenCache.for_tokenizer(tok).extend(file_streams(stream, tok.bos_id))
    after = exact_match(base.backend, tok, held_texts, cases, repository=repository, library=index)
    training = {"repository": str(root.resolve()), "files": len(files), "heldout_files": len(held),
                "tokens": n_tokens, "steps": result.steps, "tokens_seen": result.tokens_seen,
                "minutes": round(result.seconds / 60, 2), "loss": round(result.loss, 4),
                "lora": cfg.lora.record(), "base_kind": base.kind, "device": base.device.type,
                "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
                "library": library_record(library, index)}
    card = ("diffill workspace adapter",
            (f"LoRA adapter{' with whole ' + ', '.join(cfg.lora.whole) if cfg.lora.whole else ''} "
             f"trained by `diffill adapt` on {len(files)} files ({n_tokens} tokens) of "
             f"`{root.resolve()}` for {result.steps} steps ({result.seconds / 60:.1f} min).\n\n"
             f"Held-out line-infill exact match ({before['cases']} lines of {len(held)} held-out files): "
             f"{before['line_infill_exact_match']:.3f} on the bare base, "
             f"{after['line_infill_exact_match']:.3f} with this adapter and its copy of the training files' "
             f"tokens (`{REPOSITORY_TOKENS}`, which fills copy from); both copy from "
             f"{'the library index' if index is not None else 'no library index'}.\n\n"
             f"Base model ({'the diffill model' if base.kind == 'diffill' else 'a ' + base.kind + ' checkpoint'}) "
             f"sha256: `{base_sha}`. It loads on that base only."))
    save_adapter(peft_model, out, base_sha, base_model=model_path or "diffill-base", training=training,
                 metrics={"before": before, "after": after}, card=card,
                 write_extra=lambda folder: repository.save(folder / REPOSITORY_TOKENS))
    return AdaptReport(before=before, after=after, files=len(files), heldout_files=len(held), tokens=n_tokens,
                       cases=before["cases"], steps=result.steps, minutes=result.seconds / 60,
                       adapter=str(out), skipped=dict(coll.skipped))


# The shipped infill adapter reads a wider window than its base (112 + 48): 600 steps of the
# recipe beat the bare base on the six draws (903 of 3,000 lines -> 918 at 256 + 96, 917 at
# 384 + 128, at twice the latency cost; docs/adapters.md)
SHIPPED_WINDOW = Window(prefix_tokens=256, suffix_tokens=96)


def shipped_adapter_config() -> AdaptConfig:
    """The shipped infill adapter's recipe: line and rest-of-line middles at a gentle lr, read
    with a wider window than the base's (``SHIPPED_WINDOW``)."""
    return AdaptConfig(batch_size=16, lr=3e-4, warmup_steps=20, window=SHIPPED_WINDOW,
                       objective=ObjectiveConfig(plain_fraction=0.1, mix=LINE_MIX, hide_eoi=True,
                                                 ordered_fraction=0.5))


def _heldout(model, tok, texts: list[str], cases: int, library=None) -> dict:
    """``diffill eval heldout``'s figures (float32 weights here; copying from each hole's file and
    ``library``), rounded for the card."""
    figures = heldout_figures(model, tok, texts, cases=cases, more=(library,))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}


def train_shipped_adapter(corpus: str | Path, out: str | Path | None = None, model_path: str | None = None,
                          minutes: float | None = None, steps: int | None = 600, cases: int = 500,
                          progress: bool = True, library: str | None = "default") -> dict:
    """Train the shipped infill adapter on the corpus's training split on top of the base, and
    write it with a card that records the recipe and the held-out figures (copying from the
    ``library`` index, as ``diffill eval heldout`` does)."""
    from diffill.model.corpus import load_texts, load_tokens

    corpus = Path(corpus)
    if not (corpus / "manifest.json").is_file():
        raise DiffillError(f"{corpus} is not a corpus folder (no manifest.json); run `diffill corpus build`")
    out = Path(out) if out else SHIPPED_ADAPTER
    _check_writable(out)
    model, tok = _load_own_base(model_path)
    base_sha = base_fingerprint(model)
    held = [f.text for f in load_texts(corpus, "heldout")]
    train_texts = [f.text for f in load_texts(corpus, "train")]
    if not held or not train_texts:
        raise DiffillError(f"corpus {corpus} has an empty training or held-out split")
    index = load_library(library, tok)
    base_window = window_of(model.config)
    before = _heldout(model, tok, held, cases, index)
    cfg = shipped_adapter_config()
    stream = load_tokens(corpus, "train")  # uint16; plain_example widens the slices it takes
    files = [TrainingFile(t, True) for t in train_texts]
    peft_model, result = train_adapter(model, tok, files, cfg, minutes=minutes if steps is None else None,
                                       steps=steps, progress=progress, stream=stream)
    peft_model.merge_adapter()
    window = cfg.window or window_of(model.config)
    set_window(model.config, window)  # the adapter is served with the window it trained with
    after = _heldout(model, tok, held, cases, index)
    mix = cfg.objective.mix
    training = {"corpus": str(corpus), "files": len(files), "steps": result.steps,
                "tokens_seen": result.tokens_seen, "minutes": round(result.seconds / 60, 2),
                "loss": round(result.loss, 4), "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
                "lora": {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "targets": list(cfg.lora.targets)},
                "window": {"prefix_tokens": window.prefix_tokens, "suffix_tokens": window.suffix_tokens},
                "mix": vars(mix), "plain_fraction": cfg.objective.plain_fraction,
                "hide_eoi": cfg.objective.hide_eoi, "ordered_fraction": cfg.objective.ordered_fraction,
                "library": library_record(library, index)}
    budget = f"--steps {steps}" if steps is not None else f"--minutes {minutes:g}"
    card = ("diffill infill adapter", f"""
LoRA adapter (peft) on the diffill base model. In `adapters/checkpoints/infill/`, every command
serves base + this adapter, merged into the weights, unless given `--adapter none` or another
adapter folder.

## Intended use

Code infilling through diffill's engine (`diffill infill`, `diffill refactor`, the language
server), on top of the base it was trained on: the rest of a line at the cursor most of all, the
holes its training middles imitate.

## Recipe

    diffill adapt-base --corpus {corpus} {budget}

- Objective: the project's masked-diffusion objective (model/objective.py) on infill sequences
  whose middles are the holes completion at the cursor makes: whole lines {mix.line:.0%} (after
  their indentation, or with it), rests of lines from a random point {mix.line_rest:.0%}, line runs
  {mix.lines:.0%}, tree-sitter nodes {mix.node:.0%}, character spans {mix.chars:.0%}; and
  {cfg.objective.plain_fraction:.0%} plain sequences. Canvas noise as the sampler sees it: `<eoi>`
  padding hidden while content is masked ({cfg.objective.hide_eoi}), {cfg.objective.ordered_fraction:.0%}
  of canvases masked from a random cut to the end.
- Context window: {window.prefix_tokens} prefix + {window.suffix_tokens} suffix tokens (the base's:
  {base_window.prefix_tokens} + {base_window.suffix_tokens}). The adapter is served with its own window.
- LoRA r={cfg.lora.r}, alpha={cfg.lora.alpha}, on {", ".join(cfg.lora.targets)}.
- AdamW lr {cfg.lr:g}, {cfg.warmup_steps} warm-up steps then cosine to {cfg.min_lr_ratio:g}x,
  batch {cfg.batch_size}, seed {cfg.seed}.
- Trained {result.steps} steps ({result.tokens_seen} tokens, {result.seconds / 60:.1f} min) on
  the training split of `{corpus}` ({len(files)} files); final loss {result.loss:.3f}.

## Held-out figures

`diffill eval heldout`'s figures (float32 weights) on {before['cases']} lines of the corpus's
held-out files, measured by the recipe before and after training, copying from each hole's file
{"and from the library index (`diffill index`)" if index is not None else "(no library index was built)"}:

| model | line exact match | one-line overrun | masked-token accuracy |
|---|---|---|---|
| base | {before['line_infill_exact_match']:.3f} | {before['line_overrun_rate']:.1%} | {before['masked_token_accuracy']:.3f} |
| base + this adapter | {after['line_infill_exact_match']:.3f} | {after['line_overrun_rate']:.1%} | {after['masked_token_accuracy']:.3f} |

The middle mix favours lines because a mix weighted to tree-sitter node middles (nodes 40%, lines
25%, line rests 15%, line runs 15%, characters 5%) at lr 1e-3, batch 32, lowered exact match
(300 lines: 0.013 -> 0.007), while a line mix raised it (the step-12400 base, 500 lines, 400 steps:
0.048 -> 0.054; with nodes at 20%, 150 steps: 0.050). Figures and latency: `docs/adapters.md`.

## Limitations

- It reads a wider window than its base, so every forward pass costs more: one-line completions
  are slower than with `--adapter none` (measured in `docs/adapters.md`).
- Its gain over the base is the difference in the table above; the base's size limits what it
  can add.
- Trained on Python only, like its base.

Base model sha256: `{base_sha}`. The adapter loads on that base only; a retrained base needs
this recipe run again.
""")
    save_adapter(peft_model, out, base_sha, base_model=model_path or "diffill-base", training=training,
                 metrics={"before": before, "after": after}, card=card,
                 window=window if window != base_window else None)
    return {"before": before, "after": after, "adapter": str(out), **training}
