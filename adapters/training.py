"""Train a LoRA adapter with the project's masked-diffusion objective (model/objective.py).

Batches are infill sequences (syntax-aware middles from ``infill_example``) plus a share of
plain sequences, drawn as a pure function of (seed, step); the LoRA initialisation is seeded
too, so a run of N steps is reproducible. A time budget stops training early; a tqdm bar shows
progress. Only the LoRA weights train, and the copies of the modules an adapter trains whole
(``LoraSettings.whole``).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from peft import PeftModel
from tqdm import tqdm

from diffill.adapters.lora import LoraSettings, attach
from diffill.model.objective import (
    MiddleMix,
    ObjectiveConfig,
    diffusion_loss,
    infill_example,
    noise_batch,
    plain_example,
)
from diffill.model.context import Window, window_of
from diffill.model.tokenizer import CodeTokenizer

log = logging.getLogger(__name__)


@dataclass
class AdaptConfig:
    lora: LoraSettings = field(default_factory=LoraSettings)
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    # the context window it trains (and is served) with; None: the base's own
    window: Window | None = None
    # recompute each block's activations in the backward pass (models that support it: the open
    # families of model.families), trading time for memory on a large base
    gradient_checkpointing: bool = False
    # the base model's late-phase canvas noise (model/recipes): the states the sampler visits
    objective: ObjectiveConfig = field(default_factory=lambda: ObjectiveConfig(plain_fraction=0.1, hide_eoi=True,
                                                                               ordered_fraction=0.5))


@dataclass
class TrainingFile:
    text: str
    syntax_spans: bool  # whether tree-sitter node middles apply (Python today)


@dataclass
class AdaptResult:
    steps: int
    tokens_seen: int
    seconds: float
    loss: float  # mean loss of the last 20 steps


class SpanData:
    """Batches as a pure function of the step: files weighted by sqrt(size), infill middles
    drawn by the objective's mix (no tree-sitter node middles for files without a grammar)."""

    def __init__(self, files: list[TrainingFile], tok: CodeTokenizer, cfg: AdaptConfig,
                 stream: np.ndarray | None = None):
        if not files:
            raise ValueError("no training files")
        self.files, self.tok, self.cfg = files, tok, cfg
        sizes = np.sqrt(np.array([max(1, len(f.text)) for f in files], dtype=float))
        self.weights = sizes / sizes.sum()
        self.stream = token_stream(tok, [f.text for f in files]) if stream is None else stream
        names, p = cfg.objective.mix.kinds()
        self.kinds = names
        self.p_syntax = p
        no_node = np.where(np.array(names) == "node", 0.0, p)
        self.p_plain_text = no_node / no_node.sum()

    def batch(self, step: int):
        rng = np.random.default_rng([self.cfg.seed, step])
        obj = self.cfg.objective
        examples = []
        tries = 0
        while len(examples) < self.cfg.batch_size:
            tries += 1
            if rng.random() < obj.plain_fraction or tries > 20 * self.cfg.batch_size:
                examples.append(plain_example(self.stream, rng, obj.plain_length))
                continue
            f = self.files[rng.choice(len(self.files), p=self.weights)]
            p = self.p_syntax if f.syntax_spans else self.p_plain_text
            ex = infill_example(f.text, self.tok, rng, obj, kind=self.kinds[rng.choice(len(p), p=p)])
            if ex is not None:
                examples.append(ex)
        return noise_batch(examples, self.tok, rng, objective=obj)


def token_stream(tok: CodeTokenizer, texts: list[str]) -> np.ndarray:
    """``<bos>`` + tokens of each text, concatenated (the plain sequences' source)."""
    return np.asarray([i for ids in tok.encode_batch(texts) for i in [tok.bos_id, *ids]], dtype=np.int64)


def _checkpointing(model: torch.nn.Module, on: bool) -> None:
    """Activation (gradient) checkpointing on or off, by transformers' name for it (renamed in 5.x)."""
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


def lr_at(step: int, progress: float, cfg: AdaptConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` over the run's progress (0..1)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cos)


def train_adapter(model: torch.nn.Module, tok: CodeTokenizer, files: list[TrainingFile], cfg: AdaptConfig,
                  minutes: float | None = None, steps: int | None = None, progress: bool = True,
                  name: str = "default", stream: np.ndarray | None = None, data=None,
                  loss_fn: Callable = diffusion_loss) -> tuple[PeftModel, AdaptResult]:
    """Attach a fresh LoRA adapter to ``model`` (in place) and train it until ``steps`` are done
    or ``minutes`` have passed, whichever comes first. Returns the peft model in eval mode.
    ``stream``: the files' token stream for plain sequences, when already at hand. ``data`` (an
    object whose ``batch(step)`` gives a batch with ``to(device)``) and ``loss_fn(model, batch)``
    replace the project's own rows and loss (another family's layout: ``adapters.family``)."""
    # its own loop, not model.train's: a time-budgeted run inside the caller's process, in float32,
    # with no checkpoints, resumption, schedule phases or accelerate's bf16 autocast (which would change its results)
    if minutes is None and steps is None:
        raise ValueError("give a time budget (minutes) or a number of steps")
    # the window it reads at inference: the base's, unless the adapter is made to widen it
    if data is None:
        cfg = replace(cfg, objective=replace(cfg.objective, window=cfg.window or window_of(model.config)))
        data = SpanData(files, tok, cfg, stream)
    device = next(model.parameters()).device
    checkpointing = cfg.gradient_checkpointing and getattr(model, "supports_gradient_checkpointing", False)
    if checkpointing:
        _checkpointing(model, True)
    peft_model = attach(model, cfg.lora, name=name, seed=cfg.seed)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    budget = minutes * 60 if minutes is not None else None
    t0 = time.perf_counter()
    losses: list[float] = []
    tokens = step = 0
    bar = tqdm(total=steps if steps is not None else round(budget), disable=not progress,
               unit="step" if steps is not None else "s", desc="adapting", leave=False)
    peft_model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        while True:
            elapsed = time.perf_counter() - t0
            if (steps is not None and step >= steps) or (budget is not None and elapsed >= budget):
                break
            done = max(step / steps if steps else 0.0, elapsed / budget if budget else 0.0)
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, done, cfg)
            batch = data.batch(step).to(device)
            loss, stats = loss_fn(peft_model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += int(batch.attention_mask.sum()) if batch.attention_mask is not None else batch.input_ids.numel()
            losses.append(loss.item())
            if steps is not None:
                bar.update(1)
            else:
                bar.n = min(bar.total, round(time.perf_counter() - t0))
                bar.refresh()
            bar.set_postfix(step=step, loss=f"{losses[-1]:.3f}", acc=f"{stats['masked_acc']:.3f}")
    bar.close()
    if checkpointing:
        _checkpointing(model, False)
    peft_model.eval()
    for p in params:
        p.requires_grad_(False)
    result = AdaptResult(steps=step, tokens_seen=tokens, seconds=time.perf_counter() - t0,
                         loss=float(np.mean(losses[-20:])) if losses else float("nan"))
    log.info("adapter trained: %s", result)
    return peft_model, result


# The default infill adapter's middles (`diffill adapt-base`): whole lines (after their
# indentation, sometimes with it) and rests of lines, the holes completion at the cursor makes.
# A tree-sitter-node-heavy mix (nodes 40%) at lr 1e-3 lowered exact match (docs/adapters.md).
LINE_MIX = MiddleMix(line=0.7, line_rest=0.3, lines=0.0, node=0.0, chars=0.0)
