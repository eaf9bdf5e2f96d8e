"""The shipped adapter merged into its base, kept in the user's cache: serving it then needs
neither peft nor a merge, only safetensors.

One file per base weights file, adapter and dtype, named by a hash of their bytes:
``<cache>/diffill/merged/<key>/model.safetensors``. It holds the weights the merge changed (the
LoRA-targeted projections) exactly as peft's merge left them, so fills are the same bit for bit.
It is written atomically after the first merge. Its header records a digest of its tensors; a
file that does not parse, does not match the model or fails the digest is refused (and deleted,
so the next merge writes it again).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from diffill.adapters.lora import META_FILE

log = logging.getLogger(__name__)

FORMAT = "1"
WEIGHTS = "model.safetensors"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", META_FILE)


def cache_root() -> Path | None:
    """``$DIFFILL_MERGED_CACHE`` ("none": no cache), else the user's cache folder."""
    given = os.environ.get("DIFFILL_MERGED_CACHE")
    if given:
        return None if given == "none" else Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "diffill" / "merged"


def merged_key(base_weights: Path, adapter: Path, dtype: str) -> str:
    """sha256 over the base's weights file, the adapter's files and the dtype served."""
    h = hashlib.sha256(f"diffill-merged {FORMAT} {dtype}\n".encode())
    for path in (base_weights, *(adapter / name for name in ADAPTER_FILES)):
        h.update(f"{path.name}\n".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()[:32]


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class MergedWeights:
    """Where one merge is kept (``path``, which may not exist yet)."""

    path: Path
    base_sha256: str | None = None  # the bare base's fingerprint, as recorded when the merge was kept

    @classmethod
    def locate(cls, base_weights: Path, adapter: Path, dtype: str) -> MergedWeights | None:
        """None when there is no cache folder or a file to key on is missing."""
        root = cache_root()
        if root is None:
            return None
        try:
            return cls(root / merged_key(base_weights, adapter, dtype) / WEIGHTS)
        except OSError as e:
            log.info("no merged-weights cache: %s", e)
            return None

    def load(self, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        """The cached merged weights, checked against ``model``'s parameters; None when there are
        none, or when the file is damaged (then it is deleted)."""
        if not self.path.is_file():
            return None
        try:
            return self._read(model)
        except Exception as e:  # safetensors raises several kinds on a damaged file
            log.warning("merged weights %s are damaged (%s); merging again", self.path, e)
            self.path.unlink(missing_ok=True)
            return None

    def _read(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        if meta.get("format") != f"diffill-merged-{FORMAT}":
            raise ValueError(f"not a diffill merged-weights file (format {meta.get('format')!r})")
        if meta.get("sha256") != tensors_digest(tensors):
            raise ValueError("its tensors do not match their recorded digest")
        params = dict(model.named_parameters())
        for name, t in tensors.items():
            p = params.get(name)
            if p is None or p.shape != t.shape or p.dtype != t.dtype:
                raise ValueError(f"{name} does not fit the model")
        if not tensors:
            raise ValueError("it holds no tensors")
        self.base_sha256 = meta.get("base_sha256")
        return tensors

    def save(self, tensors: dict[str, torch.Tensor], base_sha256: str | None = None) -> None:
        """Write atomically (a temporary file in the same folder, then renamed); a cache that
        cannot be written is only logged. ``base_sha256`` is kept beside the tensors: the key
        covers the base's file, so a later load need not fingerprint its weights again."""
        from safetensors.torch import save_file

        tensors = {name: t.detach().contiguous() for name, t in tensors.items()}
        meta = {"format": f"diffill-merged-{FORMAT}", "sha256": tensors_digest(tensors)}
        if base_sha256:
            meta["base_sha256"] = base_sha256
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{WEIGHTS}.", dir=self.path.parent)
            os.close(fd)
            save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, self.path)
            tmp = None
            log.info("merged weights kept in %s", self.path)
        except OSError as e:
            log.warning("cannot keep the merged weights in %s: %s", self.path, e)
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
