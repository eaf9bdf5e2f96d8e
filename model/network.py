"""The diffill network as a transformers model, for training, export and growth (peft, ``save_pretrained``,
the Auto classes). Its modules and methods are those of ``model.layers``, where the architecture is
described; serving loads the plain ``model.layers.DiffillNetwork`` without importing transformers.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from diffill.model.configuration import DiffillConfig
from diffill.model.layers import NetworkMethods


class DiffillPreTrainedModel(PreTrainedModel):
    config_class = DiffillConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.RMSNorm):
            nn.init.ones_(module.weight)


class DiffillForMaskedLM(NetworkMethods, DiffillPreTrainedModel):
    """The network as a transformers model (training, export, growth); serving uses
    ``model.layers.DiffillNetwork``, the same modules without transformers."""

    def __init__(self, config: DiffillConfig):
        super().__init__(config)
        self._build(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        logits, loss = self._forward(input_ids, attention_mask, position_ids, logits_at, labels)
        return MaskedLMOutput(loss=loss, logits=logits)


AutoConfig.register("diffill", DiffillConfig)
AutoModelForMaskedLM.register(DiffillConfig, DiffillForMaskedLM)
