"""Loading another model's checkpoint folder as a backend: the open diffusion code families
(``model.families``, the project's own networks) and any transformers masked LM or DiffusionGemma.
Never downloads; a folder's own code runs only when the user asks for it."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from diffill.model.backend import BACKENDS, DiffusionGemmaBackend, ForeignTokenizer, MaskedLMBackend


def _special_id(hf, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = getattr(hf, name, None)
        if isinstance(value, int):
            return value
    return None


def load_backend(kind: str, path: str | Path, trust_remote_code: bool = False, device: str = "cpu",
                 dtype: torch.dtype | None = None):
    """(backend, tokenizer) for a local checkpoint folder of a non-diffill model, on ``device``
    (``model.families.serving.resolve_device``). Never downloads: ``path`` must be a folder. Remote
    code runs only when ``trust_remote_code`` is given; the families of ``model.families`` need none."""
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer

    from diffill.model.loading import ModelLoadError, quiet_loading

    if kind not in BACKENDS or kind == "diffill":
        raise ModelLoadError(f"unknown backend {kind!r} (choose from {', '.join(BACKENDS)})")
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} is not a model folder (no config.json); backends load local folders only")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"corrupt config.json in {folder}: {e}") from e
    if not isinstance(config, dict):
        raise ModelLoadError(f"corrupt config.json in {folder}: not a JSON object")
    if kind in ("dream", "dreamon", "llada", "open_dcoder"):
        from diffill.model.families.serving import load_family

        return load_family(kind, folder, device, dtype)
    if config.get("auto_map") and not trust_remote_code:
        raise ModelLoadError(f"{folder} needs its own code (auto_map in config.json); pass --trust-remote-code "
                             "if you trust it")
    opts = dict(local_files_only=True, trust_remote_code=trust_remote_code)
    try:
        hf = AutoTokenizer.from_pretrained(str(folder), **opts)
        with quiet_loading():
            if kind == "diffusion_gemma":
                from transformers import DiffusionGemmaForBlockDiffusion

                model = DiffusionGemmaForBlockDiffusion.from_pretrained(str(folder), **opts)
            else:
                cfg = AutoConfig.from_pretrained(str(folder), **opts)
                auto = AutoModelForMaskedLM if type(cfg) in AutoModelForMaskedLM._model_mapping else AutoModel
                model = auto.from_pretrained(str(folder), **opts)
    except Exception as e:  # safetensors, tokenizers and transformers raise many kinds on a damaged or foreign folder
        raise ModelLoadError(f"cannot load {kind} model from {folder}: {e}") from e
    eoi = _special_id(hf, ("eos_token_id", "sep_token_id"))
    mask = _special_id(hf, ("mask_token_id",))
    if mask is None:
        mask = config.get("mask_token_id")
    if kind == "diffusion_gemma" and mask is None:
        mask = _special_id(hf, ("unk_token_id", "pad_token_id"))  # only a placeholder: the model never sees it
    if mask is None or eoi is None:
        raise ModelLoadError(f"{folder}: the tokenizer names no mask or end token")
    pad, bos = _special_id(hf, ("pad_token_id",)), _special_id(hf, ("bos_token_id", "cls_token_id"))
    from diffill.model.families.serving import FamilyTokenizer, resolve_device

    if kind == "diffusion_gemma":  # its vocabulary may hold ids past the tokenizer's length
        tok = FamilyTokenizer(hf, mask, eoi, pad, bos, model.config.text_config.vocab_size)
    else:
        tok = ForeignTokenizer(hf, mask, eoi, pad, bos)

    try:
        model.to(resolve_device(device))
    except ValueError as e:
        raise ModelLoadError(str(e)) from e
    if kind == "diffusion_gemma":
        return DiffusionGemmaBackend(model, tok), tok
    shifted = bool(config.get("logits_shifted", config.get("model_type") in ("dream", "diffucoder")))
    return MaskedLMBackend(model, tok, shifted=shifted), tok
