"""Shape-only checkpoints: a random-init local folder with a published model's architecture,
config and special tokens (``init_model``), for tests and latency measurements where the real
weights are not at hand.

The real vocabulary is not shipped with the project, so the project's own BPE stands in for it:
its tokens keep their ids (moved past the family's low special ids where those collide), and the
family's special tokens are added at their published ids. The model keeps the published
vocabulary size, so its embedding and output layers have the real shapes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from diffill.model.families.specs import SPECS, Spec
from diffill.model.loading import DEFAULT_CHECKPOINT

log = logging.getLogger(__name__)

OWN_SPECIALS = ("<pad>", "<mask>", "<eoi>", "<bos>")  # the shipped BPE's, left out of the stand-in


def standin_tokenizer(spec: Spec, bpe: str | Path = DEFAULT_CHECKPOINT / "tokenizer.json"):
    """The shipped BPE with ``spec``'s special tokens at their published ids, as a
    ``PreTrainedTokenizerFast`` naming its mask, eos, bos and pad tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    data = json.loads(Path(bpe).read_text())
    vocab = {text: i + spec.base_offset for text, i in data["model"]["vocab"].items() if text not in OWN_SPECIALS}
    specials = spec.tokens.all()
    taken = set(vocab.values())
    clash = [text for text, i in specials if i in taken]
    if clash:
        raise ValueError(f"special tokens {clash} collide with the stand-in vocabulary's ids")
    # an added token that the model's vocabulary holds keeps that id (tokenizers would renumber it)
    vocab.update(dict(specials))
    data["model"]["vocab"] = vocab
    data["added_tokens"] = [dict(id=i, content=text, single_word=False, lstrip=False, rstrip=False,
                                 normalized=False, special=True) for text, i in specials]
    backend = Tokenizer.from_str(json.dumps(data))
    backend.encode_special_tokens = True  # a file holding "<|mask|>" is text, as with the shipped model
    t = spec.tokens
    names = dict(mask_token=t.mask[0], eos_token=t.eos[0])
    if t.bos:
        names["bos_token"] = t.bos[0]
    if t.pad:
        names["pad_token"] = t.pad[0]
    return PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False, **names)


def _merged(base: dict, changes: dict) -> dict:
    out = dict(base)
    for k, v in changes.items():
        whole = k == "per_layer_config"  # keyed by layer index: the tiny model's replaces the published one
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and not whole else v
    return out


def build_model(spec: Spec, tiny: bool, seed: int = 0):
    """A random-init model of ``spec``'s shape (``tiny``: its small variant, in float32) on the CPU; a
    full-size one is built in bfloat16, as the published weights are (7B: 15 GB, not 30)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32 if tiny else torch.bfloat16)
    try:
        return _build(spec, tiny, seed)
    finally:
        torch.set_default_dtype(previous)


def _build(spec: Spec, tiny: bool, seed: int):
    from diffill.model.families.serving import _model_class

    torch.manual_seed(seed)
    cls = _model_class(spec.family)
    if spec.family == "diffusion_gemma":
        from transformers import DiffusionGemmaConfig

        cfg = _merged(DiffusionGemmaConfig().to_dict(), {k: v for k, v in spec.config.items() if k != "model_type"})
        if tiny:
            cfg = _merged(cfg, spec.tiny)
        config = DiffusionGemmaConfig(**{k: v for k, v in cfg.items() if k not in ("model_type", "transformers_version")})
    else:
        keys = {**spec.config, **(spec.tiny if tiny else {})}
        config = cls.config_class(**{k: v for k, v in keys.items() if k != "model_type"})
    return cls(config)


def init_model(out: str | Path, like: str, tiny: bool = False, seed: int = 0) -> Path:
    """Write a random-init checkpoint shaped like ``like`` (``SPECS``) to the new folder ``out``
    (written beside it and moved into place, so a failure leaves nothing half written)."""
    if like not in SPECS:
        raise ValueError(f"unknown model {like!r} (choose from {', '.join(SPECS)})")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder")
    spec = SPECS[like]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model = build_model(spec, tiny, seed)
        model.save_pretrained(str(tmp), safe_serialization=True)
        standin_tokenizer(spec).save_pretrained(str(tmp))
        config = json.loads((tmp / "config.json").read_text())
        config["diffill_shape_only"] = {"like": like, "tiny": tiny, "seed": seed}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "README.md").write_text(
            f"# Shape-only {like}{' (tiny)' if tiny else ''}\n\nRandom weights with the architecture, config and "
            "special tokens of the published model; the project's BPE stands in for its vocabulary. "
            "For tests and latency measurements only: its fills are noise.\n")
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote %s (%s%s, %d parameters)", out, like, ", tiny" if tiny else "",
             sum(p.numel() for p in model.parameters()))
    return out
