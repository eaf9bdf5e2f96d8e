"""Qwen2-shaped bidirectional transformers: the Dream family (Dream, Dream-Coder, DiffuCoder, DreamOn)
and Open-dCoder.

Both are Qwen2 networks (biased q/k/v projections, RoPE, RMSNorm, SwiGLU) with the causal mask
removed, trained so that position ``i`` predicts token ``i + 1`` (logits shifted by one). Parameter
names follow their checkpoints (``model.layers.N.self_attn.q_proj`` ..., ``lm_head``), so published
weights load here with no code from the checkpoint. Dream checkpoints say ``model_type: "Dream"``;
Open-dCoder's say ``qwen2`` (transformers' causal Qwen2 config), so it is loaded by class, not by
the Auto classes, whose ``qwen2`` entry stays the causal one.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, Qwen2Config
from transformers.modeling_outputs import MaskedLMOutput

from diffill.model.families.layers import (RMSNorm, apply_rope, attend, init_weights, key_mask_of, pick_positions, rope, swiglu,
                                           with_past)


class DreamConfig(PretrainedConfig):
    """A Dream checkpoint's config.json (its published keys and defaults)."""

    model_type = "Dream"

    def __init__(self, vocab_size: int = 151936, hidden_size: int = 4096, intermediate_size: int = 22016,
                 num_hidden_layers: int = 32, num_attention_heads: int = 32, num_key_value_heads: int | None = 32,
                 hidden_act: str = "silu", max_position_embeddings: int = 32768, initializer_range: float = 0.02,
                 rms_norm_eps: float = 1e-6, rope_theta: float = 10000.0, attention_dropout: float = 0.0,
                 tie_word_embeddings: bool = False, mask_token_id: int = 151666, pad_token_id: int = 151643,
                 **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.attention_dropout = attention_dropout
        self.mask_token_id = mask_token_id
        super().__init__(tie_word_embeddings=tie_word_embeddings, pad_token_id=pad_token_id, **kwargs)


def _theta(config) -> float:
    """RoPE base: a top-level ``rope_theta`` (Dream, older Qwen2 files) or transformers 5's
    ``rope_parameters``."""
    theta = getattr(config, "rope_theta", None)
    if theta is None:
        params = getattr(config, "rope_parameters", None) or {}
        theta = params.get("rope_theta", 10000.0)
    return float(theta)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.hidden_size // self.heads
        self.q_proj = nn.Linear(config.hidden_size, self.heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, x, cos, sin, key_mask, past=None, keep=None):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin, full_precision=False), apply_rope(k, cos, sin, full_precision=False)
        if keep is not None:
            keep.append((k, v))
        k, v, key_mask = with_past(k, v, key_mask, past)
        return self.o_proj(attend(q, k, v, key_mask))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, key_mask, past=None, keep=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, key_mask, past, keep)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.theta = _theta(config)
        self.gradient_checkpointing = False  # set by PreTrainedModel.gradient_checkpointing_enable

    def forward(self, input_ids, attention_mask=None, position_ids=None, past=None, keep=None):
        """Hidden states of ``input_ids``; ``past``: per layer (k, v, mask) of a cached context the
        tokens also attend to; ``keep``: a list that gets every layer's (k, v)."""
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
        cos, sin = rope(position_ids, self.head_dim, self.theta)
        key_mask = key_mask_of(attention_mask)
        x = self.embed_tokens(input_ids)
        for n, layer in enumerate(self.layers):
            if self.gradient_checkpointing and self.training and past is None and keep is None:
                x = self._gradient_checkpointing_func(layer.__call__, x, cos, sin, key_mask)
            else:
                x = layer(x, cos, sin, key_mask, None if past is None else past[n], keep)
        return self.norm(x)


class _Qwen2Bidirectional(PreTrainedModel):
    """``model`` (the body) and ``lm_head``; ``forward`` gives logits at every position, or at
    ``logits_at`` (B, K) only (the output projection is most of a step's cost on a 152k vocabulary)."""

    base_model_prefix = "model"
    supports_gradient_checkpointing = True  # adapter training on a GPU (adapters.family)
    _no_split_modules = ["Block"]
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        self.model = Body(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head

    def _init_weights(self, module):
        init_weights(module, self.config.initializer_range)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, logits_at: torch.Tensor | None = None,
                past: list | None = None, keep: list | None = None, **kwargs) -> MaskedLMOutput:
        """Logits at every position or at ``logits_at``; ``past`` / ``keep``: see ``Body.forward``
        (the context cache of ``model.families.serving``)."""
        hidden = self.model(input_ids, attention_mask, position_ids, past, keep)
        return MaskedLMOutput(logits=self.lm_head(pick_positions(hidden, logits_at)))


class DreamModel(_Qwen2Bidirectional):
    """The Dream family's network (``architectures: ["DreamModel"]`` in its checkpoints)."""

    config_class = DreamConfig


class OpenDCoderModel(_Qwen2Bidirectional):
    """Open-dCoder: a Qwen2 checkpoint (``Qwen2ForCausalLM`` names, tied embeddings) run bidirectionally."""

    config_class = Qwen2Config
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
