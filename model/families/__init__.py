"""Open diffusion code model families served through the project's own implementations.

``FAMILIES`` says, per family, how its checkpoints are read and how an infill is laid out as it
was trained (what goes before the prefix, after the suffix, which token ends an infill, whether
logits are shifted by one). ``detect_family`` names the family of a checkpoint folder from its
config.json (and, for Open-dCoder, whose config is plain Qwen2, its tokenizer's mask token; for DreamOn,
whose config is Dream's, its tokenizer's ``<|expand|>`` token).
The networks register with transformers' Auto classes under their published ``model_type`` names
(``Dream``, ``llada``), so ``AutoModel.from_pretrained`` on a published folder builds them here,
without the folder's own code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    name: str
    shifted: bool  # logits[:, i] predicts token i + 1
    lead: tuple[str, ...]  # token roles before the prefix ("bos")
    tail: tuple[str, ...]  # token roles after the suffix ("eos")
    infill_trained: bool  # whether the published model was trained on infill layouts
    note: str
    # LoRA targets: its attention and MLP projections by their checkpoint names (a peft regex where a
    # name alone would also match the output layer); empty: adapters are not trained on it
    lora_targets: str | tuple[str, ...] = ()


_QWEN2_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

FAMILIES: dict[str, Family] = {
    "dream": Family("dream", shifted=True, lead=("bos",), tail=("eos",), infill_trained=True,
                    note="Dream, Dream-Coder, DiffuCoder: <bos> prefix canvas suffix <eos>, as DreamOn's "
                         "infilling lays it out; unused canvas slots become <|endoftext|>",
                    lora_targets=_QWEN2_TARGETS),
    "dreamon": Family("dreamon", shifted=True, lead=("bos",), tail=("eos",), infill_trained=True,
                      note="DreamOn: Dream's layout and network; its canvas grows where a slot is predicted "
                           "<|expand|> and shrinks where it is predicted <|endoftext|> (model.variable_length)",
                      lora_targets=_QWEN2_TARGETS),
    "open_dcoder": Family("open_dcoder", shifted=True, lead=(), tail=(), infill_trained=False,
                          note="Open-dCoder: prefix canvas suffix with no special tokens, as its infill "
                               "evaluation lays it out (pretrained on plain masked diffusion only)",
                          lora_targets=_QWEN2_TARGETS),
    "llada": Family("llada", shifted=False, lead=("bos",), tail=(), infill_trained=False,
                    note="LLaDA: <|startoftext|> prefix canvas suffix; no infill training, unused slots become "
                         "<|endoftext|> as in its answers' padding",
                    # ff_out is also the name of its output layer (transformer.ff_out): only the blocks'
                    lora_targets=r".*\.blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)"),
    "diffusion_gemma": Family("diffusion_gemma", shifted=False, lead=(), tail=(), infill_trained=False,
                              note="DiffusionGemma: block diffusion continuing the prefix; it reads no suffix"),
}


# the families LoRA adapters train on (diffill adapt --model) and load on
ADAPTABLE = tuple(name for name, f in FAMILIES.items() if f.lora_targets)


def _registered() -> None:
    """Register the own networks with the Auto classes (once)."""
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

    from diffill.model.families.llada import LLaDAConfig, LLaDAModelLM
    from diffill.model.families.qwen2 import DreamConfig, DreamModel

    for config, model in ((DreamConfig, DreamModel), (LLaDAConfig, LLaDAModelLM)):
        try:
            AutoConfig.register(config.model_type, config)
        except ValueError:  # registered already
            continue
        AutoModel.register(config, model)
        AutoModelForMaskedLM.register(config, model)


def read_config(folder: str | Path) -> dict:
    """config.json of ``folder`` as a dict; ValueError when it is missing or not a JSON object."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a JSON object")
    return config


def _has_mask_token(folder: Path) -> bool:
    try:
        tc = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(tc, dict) and bool(tc.get("mask_token"))


EXPAND_TOKEN = "<|expand|>"  # DreamOn's: a masked slot predicted as it becomes two masked slots


def _added_tokens(folder: Path) -> set[str]:
    """The texts of the tokens the tokenizer files of ``folder`` add to the vocabulary."""
    found: set[str] = set()
    try:
        tc = json.loads((folder / "tokenizer_config.json").read_text())
        found |= {t.get("content") for t in tc.get("added_tokens_decoder", {}).values() if isinstance(t, dict)}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        pass
    try:
        tj = json.loads((folder / "tokenizer.json").read_text())
        found |= {t.get("content") for t in tj.get("added_tokens", []) if isinstance(t, dict)}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        pass
    return found


def detect_family(folder: str | Path) -> str:
    """The backend that serves checkpoint ``folder``: ``diffill``, a ``FAMILIES`` name, or ``masked_lm``
    (any other transformers masked LM)."""
    config = read_config(folder)
    kind = str(config.get("model_type", "")).lower()
    if kind == "diffill":
        return "diffill"
    if kind in ("dream", "diffucoder"):
        return "dreamon" if EXPAND_TOKEN in _added_tokens(Path(folder)) else "dream"
    if kind == "llada":
        return "llada"
    if kind == "diffusion_gemma":
        return "diffusion_gemma"
    if kind == "qwen2" and _has_mask_token(Path(folder)):
        return "open_dcoder"
    return "masked_lm"
