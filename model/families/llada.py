"""LLaDA: a LLaMA-shaped bidirectional transformer (OLMo-style config keys), logits not shifted.

Parameter names follow the published checkpoints (``model.transformer.wte``,
``model.transformer.blocks.N.q_proj`` ... ``attn_out``, ``ff_proj`` / ``up_proj`` / ``ff_out``,
``attn_norm`` / ``ff_norm``, ``model.transformer.ln_f``, ``model.transformer.ff_out``), so their
weights load here without the checkpoint's own code. Rotary embeddings are applied in float32, as
the published ``rope_full_precision`` asks. The mask is token 126336 of the real vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from diffill.model.families.layers import (RMSNorm, apply_rope, attend, init_weights, key_mask_of, pick_positions, rope, swiglu,
                                           with_past)


class LLaDAConfig(PretrainedConfig):
    """A LLaDA checkpoint's config.json: the keys this network reads, with the 8B model's values as
    defaults; the rest of the published keys are kept as they are."""

    model_type = "llada"

    def __init__(self, d_model: int = 4096, n_heads: int = 32, n_kv_heads: int | None = 32, n_layers: int = 32,
                 mlp_hidden_size: int = 12288, vocab_size: int = 126464, embedding_size: int | None = 126464,
                 max_sequence_length: int = 4096, rope_theta: float = 500000.0, rms_norm_eps: float = 1e-5,
                 include_bias: bool = False, include_qkv_bias: bool = False, weight_tying: bool = False,
                 activation_type: str = "silu", block_type: str = "llama", layer_norm_type: str = "rms",
                 rope_full_precision: bool = True, init_std: float = 0.02, mask_token_id: int = 126336,
                 eos_token_id: int = 126081, pad_token_id: int = 126081, **kwargs):
        self.d_model, self.n_heads, self.n_layers = d_model, n_heads, n_layers
        self.n_kv_heads = n_kv_heads or n_heads
        self.mlp_hidden_size = mlp_hidden_size
        self.vocab_size, self.embedding_size = vocab_size, embedding_size or vocab_size
        self.max_sequence_length = max_sequence_length
        self.rope_theta, self.rms_norm_eps = rope_theta, rms_norm_eps
        self.include_bias, self.include_qkv_bias = include_bias, include_qkv_bias
        self.weight_tying = weight_tying
        self.activation_type, self.block_type, self.layer_norm_type = activation_type, block_type, layer_norm_type
        self.rope_full_precision = rope_full_precision
        self.init_std = init_std
        self.mask_token_id = mask_token_id
        kwargs.pop("tie_word_embeddings", None)
        super().__init__(eos_token_id=eos_token_id, pad_token_id=pad_token_id, tie_word_embeddings=weight_tying,
                         **kwargs)


class LLaDABlock(nn.Module):
    def __init__(self, config: LLaDAConfig):
        super().__init__()
        d, heads, kv = config.d_model, config.n_heads, config.n_kv_heads
        self.heads, self.kv_heads, self.head_dim = heads, kv, d // heads
        qkv_bias = config.include_bias or config.include_qkv_bias
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, kv * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d, kv * self.head_dim, bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=config.include_bias)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=config.include_bias)
        self.up_proj = nn.Linear(d, config.mlp_hidden_size, bias=config.include_bias)
        self.ff_out = nn.Linear(config.mlp_hidden_size, d, bias=config.include_bias)
        self.full_precision_rope = config.rope_full_precision

    def forward(self, x, cos, sin, key_mask, past=None, keep=None):
        b, t, _ = x.shape
        h = self.attn_norm(x)
        q = self.q_proj(h).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin, self.full_precision_rope)
        k = apply_rope(k, cos, sin, self.full_precision_rope)
        if keep is not None:
            keep.append((k, v))
        k, v, key_mask = with_past(k, v, key_mask, past)
        x = x + self.attn_out(attend(q, k, v, key_mask))
        h = self.ff_norm(x)
        return x + self.ff_out(swiglu(self.ff_proj(h), self.up_proj(h)))


class LLaDATransformer(nn.Module):
    """Holds ``transformer``, a ModuleDict named as in the checkpoints."""

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        parts = {"wte": nn.Embedding(config.embedding_size, config.d_model),
                 "blocks": nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers)),
                 "ln_f": RMSNorm(config.d_model, config.rms_norm_eps)}
        if not config.weight_tying:
            parts["ff_out"] = nn.Linear(config.d_model, config.embedding_size, bias=config.include_bias)
        self.transformer = nn.ModuleDict(parts)
        self.head_dim = config.d_model // config.n_heads
        self.theta = float(config.rope_theta)
        self.gradient_checkpointing = False  # set by PreTrainedModel.gradient_checkpointing_enable

    def forward(self, input_ids, attention_mask=None, position_ids=None, past=None, keep=None):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
        cos, sin = rope(position_ids, self.head_dim, self.theta)
        key_mask = key_mask_of(attention_mask)
        x = self.transformer.wte(input_ids)
        for n, block in enumerate(self.transformer.blocks):
            if self.gradient_checkpointing and self.training and past is None and keep is None:
                x = self._gradient_checkpointing_func(block.__call__, x, cos, sin, key_mask)
            else:
                x = block(x, cos, sin, key_mask, None if past is None else past[n], keep)
        return self.transformer.ln_f(x)


class LLaDAModelLM(PreTrainedModel):
    """LLaDA's network under its published class name; ``forward`` gives logits at every position or
    at ``logits_at`` (B, K) only."""

    config_class = LLaDAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True  # adapter training on a GPU (adapters.family)
    _no_split_modules = ["LLaDABlock"]
    _supports_sdpa = True

    def __init__(self, config: LLaDAConfig):
        super().__init__(config)
        self.model = LLaDATransformer(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.transformer.wte

    def _init_weights(self, module):
        init_weights(module, self.config.init_std)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, logits_at: torch.Tensor | None = None,
                past: list | None = None, keep: list | None = None, **kwargs) -> MaskedLMOutput:
        """As the Qwen2 networks' ``forward`` (``past`` / ``keep``: the context cache)."""
        hidden = pick_positions(self.model(input_ids, attention_mask, position_ids, past, keep), logits_at)
        t = self.model.transformer
        logits = t.ff_out(hidden) if "ff_out" in t else hidden @ t.wte.weight.T
        return MaskedLMOutput(logits=logits)
