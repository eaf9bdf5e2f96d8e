"""LoRA adapters (peft) on the diffill network: attach, fingerprint the base, save, read, list.

An adapter folder is a peft folder (``adapter_config.json`` + ``adapter_model.safetensors``)
plus ``diffill_adapter.json``, which records the sha256 of the base model's weights it was
trained on, and a ``README.md`` card (Hugging Face form: YAML front matter, then the text).
Loading an adapter onto any other base is refused. A workspace adapter also keeps its
repository's tokens (``repository_tokens.npy``, model/ngram.py), which fills copy from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from diffill.model.context import Window

if TYPE_CHECKING:  # peft (and transformers' heavy modules with it) is imported where an adapter is used
    from peft import LoraConfig, PeftModel

log = logging.getLogger(__name__)

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SHIPPED_ADAPTER = Path(__file__).resolve().parent / "checkpoints" / "infill"
SHIPPED = "shipped"  # the name that asks for SHIPPED_ADAPTER (served only when asked: docs/adapters.md)
WORKSPACE_ADAPTER = Path(".diffill") / "adapter"  # where `diffill adapt DIR` saves, relative to DIR
META_FILE = "diffill_adapter.json"
CARD_FILE = "README.md"
REPOSITORY_TOKENS = "repository_tokens.npy"  # a workspace adapter's repository, as a token cache
FORMAT_VERSION = 1


class AdapterError(Exception):
    """An adapter folder is missing, damaged, or made for another base model."""


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    # module names (matched at the end of a module's name), or one peft regex over whole names
    targets: str | tuple[str, ...] = TARGET_MODULES
    # modules trained whole and saved with the adapter (peft's modules_to_save), e.g. the tied
    # token embeddings, which a repository's own identifiers move most
    whole: tuple[str, ...] = ()

    def peft_config(self) -> LoraConfig:
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.targets if isinstance(self.targets, str) else list(self.targets),
                          bias="none", init_lora_weights=True,
                          modules_to_save=list(self.whole) or None)


    def record(self) -> dict:
        """The settings as a training record's "lora" entry."""
        targets = self.targets if isinstance(self.targets, str) else list(self.targets)
        return {"r": self.r, "alpha": self.alpha, "targets": targets, "whole": list(self.whole)}


@dataclass
class AdapterInfo:
    path: Path
    base_sha256: str
    base_model: str = ""  # a label for people: the base's folder when it was trained
    created: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    # the context window it was trained with, served with it; None: the base's own
    window: Window | None = None

    def as_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def base_fingerprint(model: torch.nn.Module, replaced: dict[str, torch.Tensor] | None = None) -> str:
    """sha256 over the names, shapes and values (rounded to bfloat16) of a bare model's state dict.

    Independent of file layout and of the dtype the model was loaded in: float32 weights loaded
    as bfloat16 for inference (``EngineConfig.dtype``) keep their fingerprint. Compute it before
    any adapter is attached: LoRA layers change the state dict. ``replaced``: the base's values of
    weights that a merge loaded from the cache overwrote (``adapters.merged``)."""
    state = {**model.state_dict(), **(replaced or {})}
    if any("lora_" in k or ".base_layer." in k for k in state):
        raise AdapterError("cannot fingerprint a model that already has LoRA layers attached")
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu")
        t = (t.to(torch.bfloat16) if t.is_floating_point() else t).to(torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def attach(model: torch.nn.Module, settings: LoraSettings | None = None, name: str = "default",
           seed: int = 0) -> PeftModel:
    """A fresh trainable LoRA adapter on ``model`` (modified in place); only the LoRA weights and
    copies of the modules in ``settings.whole`` train. The LoRA A matrices are drawn from ``seed``
    so training is reproducible."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, (settings or LoraSettings()).peft_config(), adapter_name=name)


def _check_folder(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise AdapterError(f"{path} is a file, not an adapter folder (pass the folder that holds adapter_config.json)")
    if not path.is_dir():
        raise AdapterError(f"adapter folder not found: {path}")
    for name in ("adapter_config.json", "adapter_model.safetensors", META_FILE):
        if not (path / name).is_file():
            raise AdapterError(f"{path} is not a diffill adapter folder (no {name})")


def read_info(path: str | Path) -> AdapterInfo:
    """The metadata of an adapter folder; raises AdapterError when it is not one."""
    path = Path(path)
    _check_folder(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
        window = meta.get("window")
        return AdapterInfo(path=path, base_sha256=meta["base_sha256"], base_model=meta.get("base_model", ""),
                           created=meta.get("created", ""), training=meta.get("training", {}),
                           metrics=meta.get("metrics", {}),
                           window=Window(int(window["prefix_tokens"]), int(window["suffix_tokens"])) if window else None)
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise AdapterError(f"corrupt {META_FILE} in {path}: {e}") from e


def check_base(info: AdapterInfo, base_sha256: str) -> None:
    if info.base_sha256 != base_sha256:
        raise AdapterError(
            f"adapter {info.path} was trained on another base model (base sha256 {info.base_sha256[:12]}, "
            f"loaded model {base_sha256[:12]}); load the base it was made for, or train a new adapter "
            "on this one (`diffill adapt`)")


def list_adapters(root: str | Path) -> list[AdapterInfo]:
    """Every adapter folder directly in ``root`` (and ``root`` itself if it is one), by path."""
    root = Path(root)
    found = []
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []:
        try:
            found.append(read_info(d))
        except AdapterError:
            continue
    return found


def workspace_adapter(folder: str | Path) -> Path | None:
    """The adapter ``diffill adapt`` saved for a workspace folder, if there is a complete one."""
    path = Path(folder) / WORKSPACE_ADAPTER
    try:
        _check_folder(path)
    except AdapterError:
        return None
    return path


def card_front_matter(info: AdapterInfo, name: str) -> str:
    """A Hugging Face card's YAML front matter for an adapter: peft, its base, and a model-index
    with its held-out line-infill figures after training, where it has them."""
    import yaml

    meta = {"license": "mit", "language": ["code"], "library_name": "peft",
            "base_model": Path(info.base_model).name or "diffill-base", "pipeline_tag": "fill-mask",
            "tags": ["code", "code-infilling", "lora", "diffill"]}
    after = info.metrics.get("after") or {}
    metrics = [{"type": "exact_match", "name": "line infill exact match", "value": after["line_infill_exact_match"]}
               ] if "line_infill_exact_match" in after else []
    if metrics and "masked_token_accuracy" in after:
        metrics.append({"type": "accuracy", "name": "masked-token accuracy", "value": after["masked_token_accuracy"]})
    if metrics:
        meta["model-index"] = [{"name": name, "results": [{
            "task": {"type": "fill-mask", "name": "Code infilling"},
            "dataset": {"type": "heldout-lines", "name": "Held-out lines of the training files' held-out split"},
            "metrics": metrics}]}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n"


def write_card(path: Path, title: str, body: str, front_matter: str = "") -> None:
    (path / CARD_FILE).write_text(f"{front_matter}# {title}\n\n{body.strip()}\n", encoding="utf-8")


def _relax_permissions(folder: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for p in folder.iterdir():
        p.chmod(0o666 & ~umask)


def save_adapter(model: PeftModel, out: str | Path, base_sha256: str, base_model: str = "",
                 training: dict | None = None, metrics: dict | None = None,
                 card: tuple[str, str] | None = None, name: str = "default",
                 write_extra: Callable[[Path], None] | None = None, window: Window | None = None) -> AdapterInfo:
    """Write adapter ``name`` of ``model`` to ``out`` atomically: a temporary folder next to it
    is filled (peft config, safetensors weights, metadata, card, and what ``write_extra`` writes
    into the folder it is given) and then swapped in. ``window``: the context window it was
    trained with, when not the base's."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.peft_config[name].base_model_name_or_path = base_model or None
        # modules trained whole (``LoraSettings.whole``) are saved either way; this only skips
        # peft's look for a hub config to decide whether to save the base embeddings too
        model.save_pretrained(str(tmp), selected_adapters=[name], safe_serialization=True, save_embedding_layers=False)
        nested = tmp / name  # peft nests every adapter but "default" in a sub-folder
        if name != "default" and nested.is_dir():
            for p in nested.iterdir():
                os.replace(p, tmp / p.name)
            nested.rmdir()
        info = AdapterInfo(path=out, base_sha256=base_sha256, base_model=base_model,
                           created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           training=training or {}, metrics=metrics or {}, window=window)
        meta = {"format": FORMAT_VERSION, **{k: v for k, v in info.as_json().items() if k != "path"}}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        title, body = card or ("diffill LoRA adapter", f"Trained on base sha256 `{base_sha256}`.")
        write_card(tmp, title, body, card_front_matter(info, out.name))
        if write_extra is not None:
            write_extra(tmp)
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            os.replace(out, old)
        _relax_permissions(tmp)  # mkdtemp makes the folder private
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("saved adapter to %s", out)
    return info
