"""Load a checkpoint folder (config, safetensors weights, tokenizer) with clear errors."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch

from diffill.model.layers import DiffillNetwork, NetworkConfig
from diffill.model.tokenizer import CodeTokenizer

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "diffill-base"
# the autoregressive peer of the same size (`diffill bench peer`; docs/benchmarks.md)
PEER_CHECKPOINT = DEFAULT_CHECKPOINT.parent / "diffill-peer"


class ModelLoadError(Exception):
    """The weights are missing, corrupt or not a diffill checkpoint."""


def _checked_folder(path: str | Path | None) -> tuple[Path, dict]:
    """The checkpoint folder and its config.json, or a ModelLoadError saying what is wrong."""
    path = Path(path) if path else DEFAULT_CHECKPOINT
    if path.exists() and not path.is_dir():
        raise ModelLoadError(f"{path} is a file, not a model folder (pass the folder that holds config.json)")
    if not path.is_dir():
        raise ModelLoadError(f"model folder not found: {path} (run `make model`, or pass --model PATH)")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise ModelLoadError(f"model folder {path} has no {name}")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"corrupt config.json in {path}: {e}") from e
    if not isinstance(config, dict) or config.get("model_type") != "diffill":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise ModelLoadError(f"{path} holds a {kind!r} model, not a diffill checkpoint")
    return path, config


def _checked(model: torch.nn.Module, tok: CodeTokenizer, path: Path):
    if tok.vocab_size != model.config.vocab_size:
        raise ModelLoadError(f"tokenizer ({tok.vocab_size}) and model ({model.config.vocab_size}) vocabularies differ in {path}")
    # a damaged file can still parse: bytes overwritten inside a tensor read as NaN or infinity
    broken = [name for name, w in model.named_parameters() if not torch.isfinite(w).all()]
    if broken:
        raise ModelLoadError(f"corrupt weights in {path}: {broken[0]} holds values that are not numbers "
                             f"({len(broken)} tensor{'s' if len(broken) > 1 else ''} in all)")
    return model.eval(), tok


@contextmanager
def one_thread():
    """Torch on one thread inside: loading's copies, casts and checks are memory-bound, and on a
    busy machine a second thread only adds waits (docs/latency.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def load_network(path: str | Path | None = None, dtype: torch.dtype = torch.float32):
    """(network, tokenizer) for inference: the plain ``DiffillNetwork``, read with safetensors and
    ``tokenizers`` alone (no transformers import, which costs more than torch's)."""
    with one_thread():
        return _load_network(path, dtype)


def _load_network(path: str | Path | None, dtype: torch.dtype):
    path, config = _checked_folder(path)
    try:
        from safetensors.torch import load_file

        model = DiffillNetwork(NetworkConfig.from_dict(config))
        missing, unexpected = model.load_state_dict(load_file(str(path / "model.safetensors")), strict=False)
        if missing or unexpected:
            raise ValueError(f"weights do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}")
        model.to(dtype).requires_grad_(False)  # inference only
        tok = CodeTokenizer.from_dir(path)
    except Exception as e:  # safetensors and tokenizers raise many kinds on a damaged file
        raise ModelLoadError(f"cannot load weights from {path}: {e}") from e
    return _checked(model, tok, path)


def load_checkpoint(path: str | Path | None = None, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) as a transformers model (training, export, growth); safetensors only,
    never pickle."""
    path, _ = _checked_folder(path)
    try:
        from diffill.model.network import DiffillForMaskedLM

        with quiet_loading():
            model = DiffillForMaskedLM.from_pretrained(str(path), dtype=dtype, use_safetensors=True)
        tok = CodeTokenizer.from_dir(path)
    except Exception as e:  # safetensors and transformers raise many kinds on a damaged file
        raise ModelLoadError(f"cannot load weights from {path}: {e}") from e
    return _checked(model, tok, path)


@contextmanager
def quiet_loading():
    """transformers' "Loading weights" progress bar off while a checkpoint of a few MB loads (ours,
    or another diffusion LM's, ``model.backend``): a command's stderr is for its own messages."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
