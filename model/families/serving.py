"""Serve a checkpoint of an open family through the engine's backend interface.

``FamilyBackend`` lays each row out as its family was trained (``FAMILIES``), runs the project's own
network on the chosen device, computes logits only at the canvas slots asked for, and undoes a
shifted family's shift. Ids the tokenizer does not know (a published vocabulary is padded past its
last token) and special tokens other than the end of infill are never proposed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from diffill.model.backend import ForeignTokenizer, Layout, layout_rows
from diffill.model.context import Window
from diffill.model.families import EXPAND_TOKEN, FAMILIES, Family, _registered, detect_family, read_config
from diffill.precision import DEVICES

log = logging.getLogger(__name__)

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

    Exact path: the whole row every call. Cached path (Fast-dLLM's dual cache, as
    ``model.backend.DiffillBackend``): the first call runs the whole row and keeps every layer's
    keys and values of the prefix and suffix; later calls run only the canvas (and, shifted, the
    token before it) against them. Runs on ``device``; inputs arrive and logits leave on the CPU,
    as the sampler keeps them.
    """

    # these models read long contexts; a function's signature and docstring must fit (512 + 128)
    window = Window(prefix_tokens=512, suffix_tokens=128)

    def __init__(self, model, tokenizer: FamilyTokenizer, family: Family, device: torch.device | str = "cpu"):
        self.model = model.eval()
        self.tok = tokenizer
        self.family = family
        self.shifted = family.shifted
        self.device = torch.device(device)
        self.mask_id, self.eoi_id = tokenizer.mask_id, tokenizer.eoi_id
        self.banned_ids = sorted({tokenizer.mask_id, tokenizer.pad_id, tokenizer.bos_id} - {tokenizer.eoi_id})
        self._blocked = ~tokenizer.allowed().to(self.device)
        # DreamOn: a slot predicted <|expand|> becomes two masked slots and one predicted <|endoftext|> is
        # removed (model.variable_length, which the sampler hands such a backend to); decoders of a fixed
        # canvas (beam search) never propose the expand token
        self.expand_id = self.delete_id = None
        if family.name == "dreamon":
            self.expand_id, self.delete_id = tokenizer.hf.convert_tokens_to_ids(EXPAND_TOKEN), tokenizer.eoi_id
            self._blocked[self.expand_id] = False
            self.banned_ids = sorted({*self.banned_ids, self.expand_id})
        roles = {"bos": tokenizer.bos_id, "eos": tokenizer.eoi_id}
        self.lead = [roles[r] for r in family.lead]
        self.tail = [roles[r] for r in family.tail]

    def rows(self, prefixes: list[list[int]], suffixes: list[list[int]], length: int) -> Layout:
        """The family's infill layout on the CPU: lead + prefix + ``length`` mask slots + suffix + tail,
        and where each slot's logits are (one to the left when shifted). Adapter training lays its
        rows out with it too (``adapters.family``)."""
        return layout_rows([self.lead + p for p in prefixes], [s + self.tail for s in suffixes], length,
                           self.mask_id, self.tok.pad_id, self.shifted)

    def prepare(self, prefixes, suffixes, length, cache=False, refresh=0) -> FamilyLayout:
        base = self.rows(prefixes, suffixes, length)
        d = self.device
        lay = FamilyLayout(base.input_ids.to(d), None if base.attention_mask is None else base.attention_mask.to(d),
                           base.canvas_index.to(d), cache, refresh)
        if cache:
            # the active block: the canvas and, for a shifted family, the token before it (whose logits
            # are the first slot's); everything else real is the context, computed once
            width = length + (1 if self.shifted else 0)
            lay.active = lay.canvas_index[:, :1] + torch.arange(width, device=d)[None]
            keep = torch.ones_like(lay.input_ids, dtype=torch.bool)
            if lay.attention_mask is not None:
                keep &= lay.attention_mask.bool()
            keep.scatter_(1, lay.active, False)
            counts = keep.sum(1)
            order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept positions first, in order
            lay.context_index = order[:, : int(counts.max())]
            cmask = torch.arange(lay.context_index.shape[1], device=d)[None] < counts[:, None]
            lay.context_mask = None if bool(cmask.all()) else cmask
        return lay

    @torch.inference_mode()
    def logits(self, state: FamilyLayout, canvas: torch.Tensor, slots: torch.Tensor | None = None) -> torch.Tensor:
        state.calls += 1
        positions = state.canvas_index + (1 if self.shifted else 0)
        ids = state.input_ids.scatter(1, positions, canvas.to(self.device))
        at = state.canvas_index if slots is None else state.canvas_index.gather(1, slots.to(self.device))
        fresh = state.refresh and (state.calls - 1) % state.refresh == 0
        if state.cache and state.context is not None and not fresh:
            # the active block alone, attending to the context's cached keys and values (approximate:
            # they were computed with the canvas as it was then)
            out = self.model(input_ids=ids.gather(1, state.active), position_ids=state.active,
                             past=state.context, logits_at=at - state.active[:, :1]).logits
        else:
            keep: list | None = [] if state.cache else None
            out = self.model(input_ids=ids, attention_mask=state.attention_mask, logits_at=at, keep=keep).logits
            if keep:
                state.context = [(*(_rows(t, state.context_index) for t in kv), state.context_mask) for kv in keep]
        return out.float().masked_fill(self._blocked, UNKNOWN_LOGIT).cpu()


@dataclass
class FamilyLayout(Layout):
    active: torch.Tensor | None = None  # (B, A) positions run every step under the context cache

    def take(self, rows: torch.Tensor) -> FamilyLayout:
        base = super().take(rows)
        out = FamilyLayout(**{f.name: getattr(base, f.name) for f in fields(Layout)})
        out.active = None if self.active is None else self.active.index_select(0, rows.to(self.active.device))
        return out


def _rows(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, H, T, D) keys or values at positions ``index`` (B, C)."""
    return t.gather(2, index[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[3]))


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
    found = detect_family(folder)
    if kind == "dreamon" and found == "dream":
        raise ModelLoadError(f"{folder} does not hold a dreamon model: its tokenizer has no <|expand|> token "
                             "(--backend dream, or leave --backend out)")
    # refused before its shape is built; a DreamOn folder may be served as dream (a fixed canvas)
    if found != kind and (found in FAMILIES or found == "diffill") and (kind, found) != ("dream", "dreamon"):
        raise ModelLoadError(f"{folder} does not hold a {kind} model: its config.json says model_type "
                             f"{config.get('model_type')!r} (--backend {found}, or leave --backend out)")
    dtype = torch.bfloat16 if where.type == "cuda" else (dtype or torch.float32)
    try:
        hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        with quiet_loading():
            model, info = _model_class(kind).from_pretrained(str(folder), dtype=dtype, local_files_only=True,
                                                             use_safetensors=True, output_loading_info=True)
    except Exception as e:  # safetensors, tokenizers and transformers raise many kinds on a damaged folder
        raise ModelLoadError(f"cannot load {kind} model from {folder}: {e}") from e
    missing = sorted(info.get("missing_keys") or ())
    if missing:  # another family's folder (or a damaged one) would otherwise serve random weights
        raise ModelLoadError(f"{folder} does not hold a {kind} model: {len(missing)} of its weights are missing "
                             f"(such as {missing[0]}); its config.json says model_type "
                             f"{config.get('model_type')!r}")
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
    if kind in ("dream", "dreamon"):
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
