"""The base a workspace adapter trains on (``diffill adapt --model PATH``): the project's own model
or a checkpoint of an open diffusion code family (``model.families``: Dream / Dream-Coder /
DiffuCoder, Open-dCoder, LLaDA), each with the backend that serves it, its LoRA targets, and the
rows and loss its training uses (``adapters.family`` for a family: its own infill layout).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from diffill.adapters.lora import LoraSettings
from diffill.adapters.training import AdaptConfig, TrainingFile, train_adapter
from diffill.errors import DiffillError
from diffill.model.families import ADAPTABLE, FAMILIES
from diffill.model.loading import ModelLoadError


@dataclass
class AdaptBase:
    model: torch.nn.Module  # the bare network the adapter attaches to
    tok: object  # its tokenizer (a CodeTokenizer)
    backend: object  # the engine's backend over ``model``, for the held-out figures
    kind: str  # "diffill" or a model.families name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def adapt_config(self, config: AdaptConfig) -> AdaptConfig:
        """``config`` fitted to this base: a family's own LoRA targets and no modules trained whole
        (a published vocabulary's embeddings are hundreds of millions of weights); gradient
        checkpointing on a GPU."""
        if self.kind == "diffill":
            return config
        family = FAMILIES[self.kind]
        return replace(config, lora=replace(config.lora, targets=family.lora_targets, whole=()),
                       gradient_checkpointing=self.device.type == "cuda")

    def train(self, files: list[TrainingFile], config: AdaptConfig, minutes: float | None, steps: int | None,
              progress: bool, stream: np.ndarray | None):
        """``train_adapter`` with this base's rows: the project's objective on the diffill model, the
        family's infill layout on a family's."""
        if self.kind == "diffill":
            return train_adapter(self.model, self.tok, files, config, minutes=minutes, steps=steps,
                                 progress=progress, stream=stream)
        from diffill.adapters.family import FamilySpanData, canvas_loss

        data = FamilySpanData(files, self.backend, config)
        return train_adapter(self.model, self.tok, files, config, minutes=minutes, steps=steps, progress=progress,
                             data=data, loss_fn=canvas_loss)


def family_adapter_config(seed: int = 0) -> AdaptConfig:
    """``diffill adapt``'s recipe on a family's checkpoint: LoRA on the attention and MLP projections
    (``Family.lora_targets``), batch 8 of that family's infill rows, lr 2e-4 (a usual LoRA rate on
    billions of weights; the shape-only checkpoints the tests build say nothing about its quality)."""
    return AdaptConfig(lora=LoraSettings(), batch_size=8, lr=2e-4, seed=seed)


def load_adapt_base(model_path: str | None, device: str = "auto") -> AdaptBase:
    """The base in ``model_path`` (None: the shipped model) on ``device``: float32 on the CPU,
    bfloat16 weights on a GPU (the LoRA weights train in float32 either way)."""
    from diffill.engine import resolve_backend
    from diffill.model.families.serving import DeviceError, resolve_device

    kind = resolve_backend("auto", model_path)
    try:
        where = resolve_device("cpu" if kind == "diffill" and device == "auto" else device)
    except DeviceError as e:
        raise DiffillError(str(e)) from e
    if kind == "diffill":
        from diffill.model.backend import DiffillBackend
        from diffill.model.loading import load_checkpoint

        try:
            model, tok = load_checkpoint(model_path)
        except ModelLoadError as e:
            raise DiffillError(str(e)) from e
        model.to(where)
        return AdaptBase(model, tok, DiffillBackend(model, tok), kind)
    if kind not in ADAPTABLE:
        what = "DiffusionGemma (block diffusion over uniform noise, whose rows have no mask canvas)" \
            if kind == "diffusion_gemma" else f"a {kind} model"
        raise DiffillError(f"{Path(model_path)} holds {what}; `diffill adapt` trains adapters on the diffill "
                           f"model and on {', '.join(ADAPTABLE)} checkpoints only")
    from diffill.model.families.serving import load_family

    try:
        backend, tok = load_family(kind, model_path, where.type)
    except ModelLoadError as e:
        raise DiffillError(str(e)) from e
    return AdaptBase(backend.model, tok, backend, kind)
