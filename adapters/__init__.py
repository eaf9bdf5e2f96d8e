"""LoRA adapters (peft) on the diffill base model or an open family's checkpoint: train, save, load,
list, switch, merge.

- ``adapters.lora``: settings, the base fingerprint, save/read/list adapter folders.
- ``adapters.serving``: ``AdaptedModel``, several adapters on one base, the active one merged.
- ``adapters.training``: training with the project's masked-diffusion objective.
- ``adapters.family``: training rows in an open family's own infill layout (``model.families``).
- ``adapters.sources``: a repository's source files for a workspace adapter.
"""

from diffill.adapters.lora import (
    SHIPPED,
    SHIPPED_ADAPTER,
    TARGET_MODULES,
    WORKSPACE_ADAPTER,
    AdapterError,
    AdapterInfo,
    LoraSettings,
    attach,
    base_fingerprint,
    list_adapters,
    read_info,
    save_adapter,
    workspace_adapter,
)
from diffill.adapters.serving import AdaptedModel

__all__ = ["SHIPPED", "SHIPPED_ADAPTER", "TARGET_MODULES", "WORKSPACE_ADAPTER", "AdaptedModel", "AdapterError",
           "AdapterInfo", "LoraSettings", "attach", "base_fingerprint", "list_adapters", "read_info",
           "save_adapter", "workspace_adapter"]
