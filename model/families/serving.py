"""Serve a checkpoint of an open family through the engine's backend interface.

``FamilyBackend`` lays each row out as its family was trained (``FAMILIES``), runs the project's own
network on the chosen device, computes logits only at the canvas slots asked for, and undoes a
shifted family's shift. Ids the tokenizer does not know (a published vocabulary is padded past its
last token) and special tokens other than the end of infill are never proposed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from diffill.model.backend import ForeignTokenizer, Layout, layout_rows
from diffill.model.context import Window
from diffill.model.families import FAMILIES, Family, _registered, read_config

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
UNKNOWN_LOGIT = -1e9  # finite, so that entropies and beam sums stay numbers


class DeviceError(ValueError):
    """A device that is not there (``cuda`` without a GPU) or not known."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; ``cuda`` without a GPU is an error."""
    if name not in DEVICES:
        raise DeviceError(f"device must be one of {', '.join(DEVICES)}, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is visible to torch")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class FamilyTokenizer(ForeignTokenizer):
    """A family checkpoint's tokenizer: ``vocab_size`` is the model's (its logits' width), and every
    special token of the tokenizer decodes to nothing."""

    def __init__(self, hf, mask_id: int, eoi_id: int, pad_id: int | None, bos_id: int | None, vocab_size: int):
        super().__init__(hf, mask_id, eoi_id, pad_id, bos_id)
        self.backend.encode_special_tokens = True  # "<|mask|>" in a file is text, not the mask
        self.vocab_size = vocab_size
        self.special_ids = frozenset({*self.special_ids, *hf.all_special_ids,
                                      *(i for i, t in hf.added_tokens_decoder.items() if t.special)})

    def allowed(self) -> torch.Tensor:
        """(V,) bool: the ids a fill may hold (known, not special, or the end of infill)."""
        ok = torch.zeros(self.vocab_size, dtype=torch.bool)
        known = [i for i in self.hf.get_vocab().values() if i < self.vocab_size]
        ok[torch.tensor(known, dtype=torch.long)] = True
        special = [i for i in self.special_ids if i < self.vocab_size]
        if special:
            ok[torch.tensor(special, dtype=torch.long)] = False
        ok[self.eoi_id] = True
        return ok


class FamilyBackend:
    """One of ``FAMILIES``' networks (``model.families.qwen2`` / ``model.families.llada``).

    Every call runs the whole row (the context cache is the diffill network's; these networks run
    exact), on ``device``; inputs arrive and logits leave on the CPU, as the sampler keeps them.
    """

    window = Window()

    def __init__(self, model, tokenizer: FamilyTokenizer, family: Family, device: torch.device | str = "cpu"):
        self.model = model.eval()
        self.tok = tokenizer
        self.family = family
        self.shifted = family.shifted
        self.device = torch.device(device)
        self.mask_id, self.eoi_id = tokenizer.mask_id, tokenizer.eoi_id
        self.banned_ids = sorted({tokenizer.mask_id, tokenizer.pad_id, tokenizer.bos_id} - {tokenizer.eoi_id})
        self._blocked = ~tokenizer.allowed().to(self.device)
        roles = {"bos": tokenizer.bos_id, "eos": tokenizer.eoi_id}
        self.lead = [roles[r] for r in family.lead]
        self.tail = [roles[r] for r in family.tail]

    def prepare(self, prefixes, suffixes, length, cache=False, refresh=0) -> Layout:
        lay = layout_rows([self.lead + p for p in prefixes], [s + self.tail for s in suffixes], length,
                          self.mask_id, self.tok.pad_id, self.shifted)
        lay.input_ids = lay.input_ids.to(self.device)
        lay.canvas_index = lay.canvas_index.to(self.device)
        if lay.attention_mask is not None:
            lay.attention_mask = lay.attention_mask.to(self.device)
        return lay

    @torch.inference_mode()
    def logits(self, state: Layout, canvas: torch.Tensor, slots: torch.Tensor | None = None) -> torch.Tensor:
        positions = state.canvas_index + (1 if self.shifted else 0)
        ids = state.input_ids.scatter(1, positions, canvas.to(self.device))
        at = state.canvas_index if slots is None else state.canvas_index.gather(1, slots.to(self.device))
        out = self.model(input_ids=ids, attention_mask=state.attention_mask, logits_at=at).logits.float()
        return out.masked_fill(self._blocked, UNKNOWN_LOGIT).cpu()


def _token_id(hf, name: str) -> int | None:
    value = getattr(hf, f"{name}_token_id", None)
    return value if isinstance(value, int) else None


def load_family(kind: str, folder: str | Path, device: str = "auto",
                dtype: torch.dtype | None = None) -> tuple[object, ForeignTokenizer]:
    """(backend, tokenizer) for a local checkpoint folder of family ``kind``, on ``device`` (bfloat16
    on a GPU, else ``dtype`` or float32). Runs none of the folder's own code."""
    from transformers import AutoTokenizer

    from diffill.model.loading import ModelLoadError, quiet_loading

    _registered()  # before the tokenizer: AutoTokenizer reads config.json through AutoConfig
    family = FAMILIES[kind]
    folder = Path(folder)
    try:
        where = resolve_device(device)
        config = read_config(folder)
    except ValueError as e:
        raise ModelLoadError(str(e)) from e
    dtype = torch.bfloat16 if where.type == "cuda" else (dtype or torch.float32)
    try:
        hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        with quiet_loading():
            model = _model_class(kind).from_pretrained(str(folder), dtype=dtype, local_files_only=True,
                                                       use_safetensors=True)
    except Exception as e:  # safetensors, tokenizers and transformers raise many kinds on a damaged folder
        raise ModelLoadError(f"cannot load {kind} model from {folder}: {e}") from e
    model.to(where)
    mask = _token_id(hf, "mask") if _token_id(hf, "mask") is not None else config.get("mask_token_id")
    eos = _token_id(hf, "eos")
    if mask is None or eos is None:
        raise ModelLoadError(f"{folder}: the tokenizer names no mask or end token")
    vocab = int(config.get("embedding_size") or config.get("vocab_size") or len(hf))
    tok = FamilyTokenizer(hf, mask, eos, _token_id(hf, "pad"), _token_id(hf, "bos"), vocab)
    if kind == "diffusion_gemma":
        from diffill.model.backend import DiffusionGemmaBackend

        return DiffusionGemmaBackend(model, tok), tok
    log.info("%s model from %s on %s (%s)", kind, folder, where, str(dtype).removeprefix("torch."))
    return FamilyBackend(model, tok, family, where), tok


def _model_class(kind: str):
    _registered()
    if kind == "dream":
        from diffill.model.families.qwen2 import DreamModel

        return DreamModel
    if kind == "open_dcoder":
        from diffill.model.families.qwen2 import OpenDCoderModel

        return OpenDCoderModel
    if kind == "llada":
        from diffill.model.families.llada import LLaDAModelLM

        return LLaDAModelLM
    from transformers import DiffusionGemmaForBlockDiffusion

    return DiffusionGemmaForBlockDiffusion
