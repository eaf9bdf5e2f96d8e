"""The diffill network's configuration as a transformers PretrainedConfig (training, export, the
Auto classes); its fields and defaults are ``model.layers.NetworkConfig``'s."""

from __future__ import annotations

from dataclasses import asdict

from transformers import PretrainedConfig

from diffill.model.layers import NetworkConfig

# fields that PretrainedConfig itself takes
_BASE_FIELDS = ("pad_token_id", "bos_token_id", "tie_word_embeddings")


class DiffillConfig(PretrainedConfig):
    model_type = "diffill"

    def __init__(self, **kwargs):
        values = asdict(NetworkConfig())
        values.update({k: kwargs.pop(k) for k in list(kwargs) if k in values})
        base = {k: values.pop(k) for k in _BASE_FIELDS}
        for name, value in values.items():
            setattr(self, name, value)
        super().__init__(**base, **kwargs)
