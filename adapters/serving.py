"""Serving a base model with LoRA adapters: load several, switch between them, keep the
active one merged into the base weights so inference costs the same as the bare model.

``AdaptedModel.model`` is always the same module object (the base network, with peft's LoRA
layers injected once the first adapter is loaded), so a backend built on it keeps working
across switches. Switching is not thread-safe: do not switch while the model is running.

Unmerging restores the base weights from a copy taken before the first merge instead of
subtracting the LoRA product: in bfloat16 ``(W + d) - d`` is not ``W``, and a server that
switches between workspace adapters would drift its base a little at every switch.

An adapter trained with a wider context window than the base's (``AdapterInfo.window``) is served
with it: switching sets the window the model reads (``model.context.window_of``), and switching
back to the bare base restores the base's.

Loading an adapter unfuses the network's projections; every switch fuses them again from the
weights now served (``DiffillForMaskedLM.fuse_projections``), except while an adapter runs unmerged.
The open families' networks (``model.families``) have no fused projections and serve adapters as they are.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from diffill.adapters.lora import (
    SHIPPED,
    SHIPPED_ADAPTER,
    AdapterError,
    AdapterInfo,
    base_fingerprint,
    check_base,
    read_info,
)
from diffill.adapters.merged import MergedWeights
from diffill.model.context import set_window, window_of
from diffill.model.loading import one_thread

if TYPE_CHECKING:  # imported when an adapter is loaded through peft, not for the cached merge
    from peft import PeftModel

log = logging.getLogger(__name__)


def _fused(model: torch.nn.Module, on: bool) -> None:
    """Fuse (or unfuse) the network's projections, where it has any."""
    step = getattr(model, "fuse_projections" if on else "unfuse_projections", None)
    if step is not None:
        step()


class AdaptedModel:
    """``weights``: the base's weights file; given, the shipped adapter's merge is kept in the
    user's cache (``adapters.merged``) and served from there, without peft, when it is found."""

    def __init__(self, model: torch.nn.Module, base_sha256: str | None = None, weights: Path | None = None,
                 dtype: str = "float32"):
        self.model = model
        self._base_sha256 = base_sha256
        self._peft: PeftModel | None = None
        self._loaded: dict[Path, tuple[str, AdapterInfo]] = {}  # folder -> (peft name, info)
        self.active: AdapterInfo | None = None
        self._merged = False
        self._pristine: dict[str, torch.Tensor] = {}  # base weights under LoRA layers, before any merge
        self._base_window = window_of(model.config)
        self._weights, self._dtype = weights, dtype
        self._replaced: dict[str, torch.Tensor] = {}  # base weights that a cached merge overwrote

    @property
    def base_sha256(self) -> str:
        """Fingerprint of the bare base, computed once, before any adapter is attached."""
        if self._base_sha256 is None:
            self._base_sha256 = base_fingerprint(self.model, self._replaced)
        return self._base_sha256

    def load(self, path: str | Path) -> AdapterInfo:
        """Load an adapter folder (once) without activating it; refuses one made for another base."""
        path = Path(path).resolve()
        if path in self._loaded:
            return self._loaded[path][1]
        info = read_info(path)
        check_base(info, self.base_sha256)
        _fused(self.model, False)  # peft is about to inject LoRA layers; switch() fuses again
        name = f"a{len(self._loaded)}"
        from peft import PeftModel

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                if self._peft is None:
                    self._peft = PeftModel.from_pretrained(self.model, str(path), adapter_name=name,
                                                           is_trainable=False)
                else:
                    self._peft.load_adapter(str(path), adapter_name=name, is_trainable=False)
        except Exception as e:  # peft and safetensors raise many kinds on a damaged folder
            raise AdapterError(f"cannot load adapter {path}: {e}") from e
        self.model.eval()
        self._loaded[path] = (name, info)
        return info

    def switch(self, path: str | Path | None, merge: bool = True) -> AdapterInfo | None:
        """Make ``path`` the active adapter, merged into the weights (or, ``merge=False``, applied
        as separate LoRA matmuls: exact, slower); None: the bare base."""
        if path is not None and Path(path).resolve() not in self._loaded:
            check_base(read_info(path), self.base_sha256)  # refuse before touching the served weights
        _fused(self.model, False)  # the weights are about to change
        self._restore_replaced()
        if self._merged:
            self._unmerge()  # peft loads and switches adapters on unmerged weights only
        info = self.load(path) if path is not None else None
        if self._peft is not None:
            if info is None:
                self._peft.base_model.disable_adapter_layers()
            else:
                self._peft.base_model.enable_adapter_layers()
                self._peft.set_adapter(self._loaded[info.path][0])
                if merge:
                    self._merge()
        self.active = info
        set_window(self.model.config, info.window if info is not None and info.window else self._base_window)
        _fused(self.model, True)  # from the weights now served (refused while LoRA runs unmerged)
        return info

    def _lora_base_weights(self) -> dict[str, torch.Tensor]:
        from peft.tuners.lora import LoraLayer

        return {name: m.get_base_layer().weight for name, m in self._peft.named_modules()
                if isinstance(m, LoraLayer)}

    def _merge(self) -> None:
        for name, w in self._lora_base_weights().items():  # unmerged here, so these are the base's
            if name not in self._pristine:
                self._pristine[name] = w.detach().clone()
        self._peft.merge_adapter()
        self._merged = True

    def _unmerge(self) -> None:
        self._peft.unmerge_adapter()  # peft's bookkeeping; the weights are then restored exactly
        with torch.no_grad():
            for name, w in self._lora_base_weights().items():
                w.copy_(self._pristine[name])
        self._merged = False

    def use(self, spec: str | Path | None) -> AdapterInfo | None:
        """``"shipped"``: the shipped infill adapter when it exists and was made for this base (else
        the bare base); a folder: that adapter (refused on another base); None or ``"none"``: bare."""
        if spec is None or str(spec).lower() == "none":
            return self.switch(None)
        if str(spec) == SHIPPED:
            if not (SHIPPED_ADAPTER / "adapter_model.safetensors").is_file():
                return self.switch(None)
            cache = self._merge_cache()
            if cache is not None and (info := self._use_cached(cache)) is not None:
                return info
            try:
                check_base(read_info(SHIPPED_ADAPTER), self.base_sha256)
            except AdapterError as e:
                log.warning("not using the shipped adapter: %s", e)
                return self.switch(None)
            info = self.switch(SHIPPED_ADAPTER)
            if cache is not None:
                self._keep_merge(cache)
            return info
        return self.switch(Path(spec))

    def _merge_cache(self) -> MergedWeights | None:
        """Where the shipped adapter's merge into this base is kept; None without a weights file."""
        if self._weights is None or not Path(self._weights).is_file():
            return None
        return MergedWeights.locate(Path(self._weights), SHIPPED_ADAPTER, self._dtype)

    def _use_cached(self, cache: MergedWeights) -> AdapterInfo | None:
        """Serve the shipped adapter from its cached merge (None: not cached, or peft already holds
        adapters). The cache is keyed on the exact files, and was written only after the adapter
        passed the base check, so that check is not repeated."""
        if self._peft is not None:
            return None
        with one_thread():
            return self._apply_cached(cache)

    def _apply_cached(self, cache: MergedWeights) -> AdapterInfo | None:
        tensors = cache.load(self.model)
        if tensors is None:
            return None
        if self._base_sha256 is None and not self._replaced:
            self._base_sha256 = cache.base_sha256  # recorded with the merge, for these very files
        try:
            info = read_info(Path(SHIPPED_ADAPTER).resolve())  # the path peft's loading reports
        except AdapterError:
            return None
        if cache.base_sha256 is None:  # kept before merges recorded it: record it now, once
            cache.save(tensors, base_sha256=self.base_sha256)
        _fused(self.model, False)
        self._restore_replaced()
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, t in tensors.items():
                self._replaced[name] = params[name].detach().clone()
                params[name].copy_(t)
        self.active = info
        set_window(self.model.config, info.window or self._base_window)
        _fused(self.model, True)
        log.info("shipped adapter served from its cached merge %s", cache.path)
        return info

    def _keep_merge(self, cache: MergedWeights) -> None:
        """Write the shipped adapter's merge to the cache, when it is merged, LoRA layers are all
        it changes, and the cache does not hold it yet (a damaged file was deleted when read)."""
        if not self._merged or self.active is None or cache.path.is_file():
            return
        config = self._peft.peft_config[self._loaded[self.active.path][0]]
        if getattr(config, "modules_to_save", None) or getattr(config, "trainable_token_indices", None):
            return
        from peft.tuners.lora import LoraLayer

        cache.save({f"{name}.weight": m.get_base_layer().weight for name, m in self.model.named_modules()
                    if isinstance(m, LoraLayer)}, base_sha256=self._base_sha256)

    def _restore_replaced(self) -> None:
        """The base weights back where a cached merge overwrote them."""
        if not self._replaced:
            return
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, w in self._replaced.items():
                params[name].copy_(w)
        self._replaced.clear()
        self.active = None
        set_window(self.model.config, self._base_window)

    def loaded(self) -> list[AdapterInfo]:
        return [info for _, info in self._loaded.values()]
