"""Pretraining loop: masked diffusion on plain and infill sequences, resumable, with accelerate.
With ``objective.kind = "causal"`` the same loop trains a causal network on fill-in-the-middle
rows (``model.fim``), the autoregressive peer; it may start from the diffusion weights.

Batches are a pure function of (seed, step), so a run killed and resumed at step N sees exactly
the data it would have seen. Checkpoints (model, optimizer state, step) are safetensors + JSON,
written atomically every few minutes; progress goes to a tqdm bar and a JSONL log.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from diffill.model.configuration import DiffillConfig
from diffill.model.context import set_window, window_of
from diffill.model.corpus import LANGUAGES as CORPUS_LANGUAGES
from diffill.model.corpus import load_texts, load_tokens
from diffill.model.fim import causal_batch, causal_example, causal_loss
from diffill.model.grow import grow_model
from diffill.model.network import DiffillForMaskedLM
from diffill.model.objective import (KINDS, ObjectiveConfig, diffusion_loss, infill_example, noise_batch,
                                     plain_example)
from diffill.model.runs import COOLDOWN, STATE, state_of
from diffill.model.tokenizer import CodeTokenizer, load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    batch_size: int = 48
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    total_steps: int = 20000  # step at which the schedule ends
    schedule_start: int = 0  # step at which warm-up begins (a later phase of a resumed run re-warms)
    # "cosine": warm-up, then cosine to min_lr_ratio at total_steps. "wsd" (warm-up, stable, decay):
    # warm-up, the constant lr until decay_start, then linear to min_lr_ratio at total_steps. A wsd
    # run's trunk (OUT/checkpoint) stops at decay_start and the decay trains a branch from it
    # (OUT/cooldown/checkpoint, the weights to ship); the next phase resumes the trunk at its full lr,
    # so no phase spends its first thousand steps recovering from a re-warmed lr
    schedule: str = "cosine"
    decay_start: int = 0
    # start the optimizer state afresh at schedule_start (as a run started from exported weights with
    # --init does, whose optimizer state is not shipped)
    reset_optimizer: bool = False
    optimizer: str = "adamw"  # "adamw", or "muon": Muon for hidden matrices, AdamW for embeddings and norms
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_minutes: float = 5.0
    eval_minutes: float = 20.0
    eval_cases: int = 200
    threads: int = 0  # 0: torch default
    # processes that build batches ahead of the step that needs them (0: in the training loop). A
    # batch is a function of its step alone, so any number of workers gives the same run; on a GPU
    # the Python-side batch building (tokenizing, tree-sitter spans) would otherwise be the bottleneck
    workers: int = 0
    # grow the model this phase goes on from to this many blocks (model.grow: new blocks are copies
    # whose output projections start at zero, so it computes what it did); 0: its depth as it is.
    # Growing changes the parameters, so the optimizer state must start afresh (reset_optimizer)
    layers: int = 0
    model: dict = field(default_factory=dict)  # DiffillConfig overrides
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)


OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")


def check_schedule(cfg: TrainConfig) -> None:
    if cfg.objective.kind not in KINDS:
        raise ValueError(f"unknown objective kind {cfg.objective.kind!r}; choose one of {', '.join(KINDS)}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if cfg.schedule == "wsd" and not cfg.schedule_start + cfg.warmup_steps <= cfg.decay_start < cfg.total_steps:
        raise ValueError("a wsd schedule needs schedule_start + warmup_steps <= decay_start < total_steps")


def lr_at(step: int, cfg: TrainConfig) -> float:
    if cfg.schedule == "wsd" and step >= cfg.decay_start:
        progress = min(1.0, (step - cfg.decay_start) / max(1, cfg.total_steps - cfg.decay_start))
        return cfg.lr * (1 - (1 - cfg.min_lr_ratio) * progress)
    step -= cfg.schedule_start
    if step < cfg.warmup_steps:
        return cfg.lr * (max(step, 0) + 1) / cfg.warmup_steps
    if cfg.schedule == "wsd":
        return cfg.lr
    length = cfg.total_steps - cfg.schedule_start - cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, length))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class _Steps(torch.utils.data.Dataset):
    """``data.batch(first + i)`` as item i, for a DataLoader's workers."""

    def __init__(self, data: Data, first: int, last: int | None):
        self.data, self.first = data, first
        self.n = (last - first) if last is not None else 2**40

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.data.batch(self.first + i)


def batches(data: Data, first: int, last: int | None, workers: int) -> Iterator:
    """The batches of steps ``first``, ``first + 1``, ... (to ``last``, or on without end), in order."""
    if workers <= 0:
        step = first
        while last is None or step < last:
            yield data.batch(step)
            step += 1
        return
    loader = torch.utils.data.DataLoader(_Steps(data, first, last), batch_size=None, shuffle=False,
                                         num_workers=workers, prefetch_factor=4, persistent_workers=False)
    yield from loader


class Data:
    """Batches as a pure function of the step: files weighted by size, plain windows by token."""

    def __init__(self, corpus: Path, tok: CodeTokenizer, cfg: TrainConfig):
        self.files = [f.text for f in load_texts(corpus, "train")]
        sizes = np.array([len(t) for t in self.files], dtype=float)
        self.weights = np.sqrt(sizes) / np.sqrt(sizes).sum()  # sqrt: big files do not dominate
        self.tokens = load_tokens(corpus, "train")
        self.tok, self.cfg = tok, cfg

    def batch(self, step: int):
        rng = np.random.default_rng([self.cfg.seed, step])
        obj = self.cfg.objective
        causal = obj.kind == "causal"
        examples = []
        while len(examples) < self.cfg.batch_size:
            if rng.random() < obj.plain_fraction:
                examples.append(plain_example(self.tokens, rng, obj.plain_length))
                continue
            text = self.files[rng.choice(len(self.files), p=self.weights)]
            ex = causal_example(text, self.tok, rng, obj) if causal else infill_example(text, self.tok, rng, obj)
            if ex is not None:
                examples.append(ex)
        return causal_batch(examples, self.tok) if causal else noise_batch(examples, self.tok, rng, objective=obj)


def make_optimizers(model, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW for everything, or Muon for the hidden weight matrices plus AdamW for the rest.

    Muon orthogonalises each update, which only makes sense for the 2-D matrices inside the
    blocks; the (tied) embedding and the norm gains stay with AdamW. ``match_rms_adamw`` scales
    Muon's step so the same learning rate and schedule serve both.
    """
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    named = list(model.named_parameters())
    hidden = [p for n, p in named if p.dim() == 2 and "embed" not in n]
    embed = [p for n, p in named if p.dim() >= 2 and "embed" in n]
    gains = [p for n, p in named if p.dim() < 2]
    adam_kw = dict(lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)
    if cfg.optimizer == "adamw":
        return [torch.optim.AdamW([{"params": hidden + embed, "weight_decay": cfg.weight_decay},
                                   {"params": gains, "weight_decay": 0.0}], **adam_kw)]
    muon = torch.optim.Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw")
    adam = torch.optim.AdamW([{"params": embed, "weight_decay": cfg.weight_decay},
                              {"params": gains, "weight_decay": 0.0}], **adam_kw)
    return [muon, adam]


def _save_atomic(out: Path, model, optimizers, state: dict, tokenizer_dir: Path, kind: str) -> None:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    load_tokenizer(tokenizer_dir).save_pretrained(str(tmp))
    opt_tensors, opt_meta = {}, {"optimizer": kind, "param_groups": [], "steps": {}}
    names = {id(p): n for n, p in model.named_parameters()}
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            opt_meta["param_groups"].append({k: v for k, v in group.items() if k != "params"})
        for p, st in optimizer.state.items():
            name = names[id(p)]
            for k, v in st.items():
                if torch.is_tensor(v) and v.dim() > 0:
                    opt_tensors[f"{name}::{k}"] = v.contiguous()
                else:
                    opt_meta["steps"][f"{name}::{k}"] = float(v)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(opt_meta))
    (tmp / STATE).write_text(json.dumps(state, indent=2))
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _load_optimizer(path: Path, model, optimizers, kind: str) -> None:
    meta = json.loads((path / "optimizer.json").read_text())
    if meta.get("optimizer", "adamw") != kind:  # a phase that switches optimizer starts its state afresh
        log.info("checkpoint optimizer is %s, this phase uses %s: optimizer state starts empty",
                 meta.get("optimizer", "adamw"), kind)
        return
    tensors = load_file(str(path / "optimizer.safetensors"))
    params = dict(model.named_parameters())
    owner = {id(p): opt for opt in optimizers for g in opt.param_groups for p in g["params"]}
    for key, v in tensors.items():
        name, k = key.split("::")
        owner[id(params[name])].state[params[name]][k] = v
    for key, v in meta["steps"].items():
        name, k = key.split("::")
        owner[id(params[name])].state[params[name]][k] = torch.tensor(v)


def check_same_tokenizer(corpus_tokenizer, corpus_tokenizer_dir: Path, ckpt: Path) -> None:
    """A run that goes on from a checkpoint must read its corpus with that checkpoint's token ids:
    a corpus built with a tokenizer trained afresh (on other files, so other merges) is refused."""
    if not (ckpt / "tokenizer.json").is_file():
        return  # a bare model folder: nothing to compare
    if corpus_tokenizer.get_vocab() != load_tokenizer(ckpt).get_vocab():
        raise ValueError(f"the corpus's tokenizer ({corpus_tokenizer_dir}) is not {ckpt}'s: build the corpus "
                         f"with `diffill corpus build OUT --tokenizer {ckpt}`")


def _fresh_state() -> dict:
    return {"step": 0, "tokens": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0}


def init_state(ckpt: Path) -> dict:
    """Where a run started from ``ckpt``'s weights (``--init``) goes on counting: the step, tokens
    and CPU time of a training checkpoint (``trainer_state.json``) or of an exported model (the
    last entry of its card's running log, ``training_log.json``); zero for any other model.
    The step also picks the data the run sees next (batches are a function of the step)."""
    fresh = _fresh_state()
    if (ckpt / STATE).is_file():
        state = state_of(ckpt)
        state.pop("branched_at", None)
        return {**fresh, **state}
    if (ckpt / "training_log.json").is_file():
        history = json.loads((ckpt / "training_log.json").read_text())
        if history:
            last = history[-1]
            return {**fresh, "step": int(last["step"]), "tokens": int(last["tokens"]),
                    "cpu_seconds": float(last["cpu_hours"]) * 3600,
                    "wall_seconds": float(last.get("wall_hours", 0.0)) * 3600}
    return fresh


def resume_source(out: Path, cfg: TrainConfig) -> Path | None:
    """The checkpoint a resumed run continues: the trunk (``out/checkpoint``), or the branch
    (``out/cooldown/checkpoint``) that decayed from it, either for a wsd schedule whose trunk has
    reached ``decay_start`` when the branch was started at that very step, or for a phase that
    goes on from a finished branch (its ``schedule_start`` is the branch's step, beyond the trunk):
    the shipped weights, re-warmed."""
    trunk, branch = out / "checkpoint", out / COOLDOWN / "checkpoint"
    if not trunk.exists():
        return None
    if not branch.exists():
        return trunk
    trunk_step, branch_state = state_of(trunk)["step"], state_of(branch)
    if cfg.schedule == "wsd" and trunk_step >= cfg.decay_start and branch_state.get("branched_at") == cfg.decay_start:
        return branch
    if trunk_step < cfg.schedule_start == branch_state["step"]:
        return branch
    return trunk


def _grown(model: DiffillForMaskedLM, layers: int, fresh_optimizer: bool) -> DiffillForMaskedLM:
    """``model`` grown to ``layers`` blocks where a phase asks for more than it has."""
    have = model.config.num_hidden_layers
    if not layers or layers == have:
        return model
    if layers < have:
        raise ValueError(f"the model has {have} blocks, more than this phase's layers ({layers})")
    if not fresh_optimizer:
        raise ValueError(f"growing the model from {have} to {layers} blocks needs the optimizer state afresh: "
                         "set reset_optimizer, with schedule_start at the step the phase starts from")
    log.info("growing the model from %d to %d blocks", have, layers)
    return grow_model(model, layers)


def train(corpus: Path, out: Path, cfg: TrainConfig, minutes: float | None = None,
          steps: int | None = None, resume: bool = False, init: Path | None = None,
          progress: bool = True, evaluate=None, until_step: int | None = None,
          humaneval=None, humaneval_minutes: float = 120.0) -> dict:
    """Train until ``minutes`` or ``steps`` run out, or the run reaches step ``until_step``;
    checkpoint to ``out/checkpoint`` (past a wsd schedule's ``decay_start``, to
    ``out/cooldown/checkpoint``). A resumed run already at ``until_step`` does nothing.

    ``evaluate(model, tokenizer)`` (optional) returns held-out figures, logged every
    ``cfg.eval_minutes`` and at the end; ``humaneval(model, tokenizer)`` (optional) likewise every
    ``humaneval_minutes``, its time left out of the run's CPU and wall clocks.
    """
    check_schedule(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out.mkdir(parents=True, exist_ok=True)
    src = resume_source(out, cfg) if resume else None
    tok_dir = corpus / "tokenizer"
    hf = load_tokenizer(tok_dir)
    tok = CodeTokenizer(hf)
    start = src if src is not None else init  # the model this run goes on from, if any
    if start is not None:
        check_same_tokenizer(hf, tok_dir, start)
    state = state_of(src) if src is not None else init_state(init) if init is not None else _fresh_state()
    if start is not None and until_step is not None and state["step"] >= until_step:
        log.info("%s is at step %d already: nothing to train", start, state["step"])
        return state
    model, fresh_optimizer = _starting_model(out, cfg, tok, state, src, init)
    run = _Run(corpus, out, cfg, tok, state, model, None if fresh_optimizer else src, evaluate,
               humaneval, humaneval_minutes)
    end_step = state["step"] + steps if steps is not None else until_step
    run.loop(end_step, time.time() + minutes * 60 if minutes is not None else None, progress)
    return state


def _starting_model(out: Path, cfg: TrainConfig, tok: CodeTokenizer, state: dict, src: Path | None,
                    init: Path | None) -> tuple[DiffillForMaskedLM, bool]:
    """The model a run trains: resumed from ``src``, started from ``init``'s weights or fresh,
    grown to the phase's layers and set to its window; and whether its optimizer state starts afresh."""
    trunk = out / "checkpoint"
    if src is not None:
        if cfg.schedule == "wsd" and src == trunk and state["step"] > cfg.decay_start:
            raise ValueError(f"{trunk} is at step {state['step']}, past this schedule's decay_start "
                             f"{cfg.decay_start}: its trunk must stop there")
        model = DiffillForMaskedLM.from_pretrained(str(src), dtype=torch.float32)
        log.info("resuming from %s at step %d", src, state["step"])
    elif init is not None:
        model = DiffillForMaskedLM.from_pretrained(str(init), dtype=torch.float32)
        log.info("starting from %s's weights at step %d (optimizer state afresh)", init, state["step"])
    else:
        torch.manual_seed(cfg.seed)
        mcfg = DiffillConfig(vocab_size=tok.vocab_size, pad_token_id=tok.pad_id, mask_token_id=tok.mask_id,
                             eoi_token_id=tok.eoi_id, bos_token_id=tok.bos_id, **cfg.model)
        model = DiffillForMaskedLM(mcfg)
    fresh_optimizer = src is None or (cfg.reset_optimizer and state["step"] == cfg.schedule_start)
    model = _grown(model, cfg.layers, fresh_optimizer)
    _set_attention(model, cfg)
    # the languages it learns (the corpus's); the engine fills these only unless told otherwise
    model.config.languages = list(CORPUS_LANGUAGES)
    # the window this run trains with is the one the model reads at inference (model.context.window_of)
    start = src if src is not None else init
    was, now = window_of(model.config), cfg.objective.window
    if start is not None and was != now:
        log.warning("%s was trained with a context window of %d + %d tokens (prefix + suffix); this run "
                    "trains it with %d + %d (objective.window)", start, was.prefix_tokens, was.suffix_tokens,
                    now.prefix_tokens, now.suffix_tokens)
    set_window(model.config, now)
    return model, fresh_optimizer


def _set_attention(model: DiffillForMaskedLM, cfg: TrainConfig) -> None:
    """A run's ``model.causal`` setting applies to the weights it goes on from too (the diffusion
    weights become the causal peer's start); the objective must fit the attention."""
    if "causal" in cfg.model:
        model.config.causal = bool(cfg.model["causal"])
    causal = bool(getattr(model.config, "causal", False))
    if causal != (cfg.objective.kind == "causal"):
        raise ValueError(f"objective kind {cfg.objective.kind!r} needs a network with causal "
                         f"{'false' if causal else 'true'} (set model.causal)")


class _Run:
    """One training run under way: the model and its optimizers on the accelerator, the record
    (``state``), the log and the checkpoints."""

    def __init__(self, corpus: Path, out: Path, cfg: TrainConfig, tok: CodeTokenizer, state: dict,
                 model: DiffillForMaskedLM, optimizer_from: Path | None, evaluate, humaneval=None,
                 humaneval_minutes: float = 0.0):
        from accelerate import Accelerator

        self.cfg, self.tok, self.state, self.evaluate = cfg, tok, state, evaluate
        self.humaneval, self.humaneval_minutes = humaneval, humaneval_minutes  # logged apart (``train``)
        self.tok_dir = corpus / "tokenizer"
        self.trunk, self.branch = out / "checkpoint", out / COOLDOWN / "checkpoint"
        optimizers = make_optimizers(model, cfg)
        if optimizer_from is not None:
            _load_optimizer(optimizer_from, model, optimizers, cfg.optimizer)
        self.accel = Accelerator(mixed_precision="bf16", cpu=not torch.cuda.is_available())
        self.model, *self.optimizers = self.accel.prepare(model, *optimizers)
        self.data = Data(corpus, tok, cfg)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str))
        self.logf = open(out / "log.jsonl", "a")
        self.t_wall, self.t_cpu = time.time(), time.process_time()
        self.base_wall, self.base_cpu = state["wall_seconds"], state["cpu_seconds"]

    def loop(self, end_step: int | None, deadline: float | None, progress: bool) -> None:
        """Steps until ``end_step`` or ``deadline``, checkpointing and evaluating as the config says;
        then a last checkpoint and evaluation."""
        cfg, state = self.cfg, self.state
        start_step = state["step"]
        last_ckpt = last_eval = last_humaneval = time.time()
        bar = tqdm(total=end_step - start_step if end_step else None, disable=not progress, unit="step")
        self.model.train()
        stream = batches(self.data, start_step, end_step, cfg.workers)
        while True:
            if end_step is not None and state["step"] >= end_step:
                break
            if deadline is not None and time.time() >= deadline:
                break
            rec = self.step(next(stream))
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec.get('masked_acc', rec.get('next_acc', 0.0)):.3f}")
            at_trunk_end = cfg.schedule == "wsd" and state["step"] == cfg.decay_start
            if at_trunk_end or time.time() - last_ckpt > cfg.checkpoint_minutes * 60:
                self.logf.flush()
                self.save()  # the trunk's end is always kept: the next phase resumes it
                last_ckpt = time.time()
            if time.time() - last_eval > cfg.eval_minutes * 60:
                self.held_out()
                last_eval = time.time()
            if self.humaneval is not None and time.time() - last_humaneval > self.humaneval_minutes * 60:
                self.humaneval_figures()
                last_humaneval = time.time()
        stream.close()  # stops the batch workers
        bar.close()
        self.save()
        self.held_out()
        if self.humaneval is not None:
            self.humaneval_figures()
        self.logf.close()

    def step(self, batch) -> dict:
        """One optimizer step on ``batch``; returns the step's log record."""
        cfg, state, accel, model = self.cfg, self.state, self.accel, self.model
        step = state["step"]
        batch = batch.to(accel.device)
        lr = lr_at(step, cfg)
        for optimizer in self.optimizers:
            for g in optimizer.param_groups:
                g["lr"] = lr
        with accel.autocast():
            loss, stats = (causal_loss if cfg.objective.kind == "causal" else diffusion_loss)(model, batch)
        accel.backward(loss)
        gnorm = accel.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        for optimizer in self.optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        state["tokens"] += int(batch.attention_mask.sum())
        self.clock()
        rec = {"step": state["step"], "loss": round(loss.item(), 4), "lr": lr,
               "grad_norm": round(float(gnorm), 3), "tokens": state["tokens"],
               "cpu_hours": round(state["cpu_seconds"] / 3600, 4), "wall_seconds": round(state["wall_seconds"], 2),
               **stats}
        if self.in_branch():
            rec["cooldown"] = True
        self.logf.write(json.dumps(rec) + "\n")
        return rec

    def clock(self) -> None:
        self.state["wall_seconds"] = self.base_wall + time.time() - self.t_wall
        self.state["cpu_seconds"] = self.base_cpu + time.process_time() - self.t_cpu

    def in_branch(self) -> bool:
        """Past a wsd decay_start: the steps of the cooldown branch."""
        return self.cfg.schedule == "wsd" and self.state["step"] > self.cfg.decay_start

    def save(self) -> None:
        if self.in_branch():
            self.state["branched_at"] = self.cfg.decay_start
            self.branch.parent.mkdir(exist_ok=True)
        else:
            self.state.pop("branched_at", None)
        _save_atomic(self.branch if self.in_branch() else self.trunk, self.accel.unwrap_model(self.model),
                     self.optimizers, self.state, self.tok_dir, self.cfg.optimizer)

    def held_out(self) -> None:
        """The held-out figures (``evaluate``), logged."""
        if self.evaluate is not None:
            self._log_figures("eval", self.evaluate)

    def humaneval_figures(self) -> None:
        """The HumanEval figures (``humaneval``), logged; the time they take is not the run's."""
        self.clock()
        wall, cpu = time.time(), time.process_time()
        self._log_figures("humaneval", self.humaneval, clock=False)
        self.t_wall += time.time() - wall
        self.t_cpu += time.process_time() - cpu

    def _log_figures(self, key: str, evaluate, clock: bool = True) -> None:
        state = self.state
        self.model.eval()
        plain = self.accel.unwrap_model(self.model)
        # figures come from the CPU sampler: a model trained on an accelerator is copied over
        figures = evaluate(plain if plain.device.type == "cpu" else copy.deepcopy(plain).cpu(), self.tok)
        self.model.train()
        if clock:
            self.clock()
        rec = {key: figures, "step": state["step"], "tokens": state["tokens"],
               "cpu_hours": state["cpu_seconds"] / 3600, "wall_hours": state["wall_seconds"] / 3600}
        if self.in_branch():
            rec["cooldown"] = True
        self.logf.write(json.dumps(rec) + "\n")
        self.logf.flush()
        log.info("eval %s", rec)
