"""Configuration of the diffill network (a transformers PretrainedConfig)."""

from __future__ import annotations

from transformers import PretrainedConfig


class DiffillConfig(PretrainedConfig):
    model_type = "diffill"

    def __init__(
        self,
        vocab_size: int = 8192,
        hidden_size: int = 256,
        num_hidden_layers: int = 6,
        num_attention_heads: int = 4,
        intermediate_size: int = 704,
        max_position_embeddings: int = 1024,
        rope_theta: float = 10000.0,
        rms_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        pad_token_id: int = 0,
        mask_token_id: int = 1,
        eoi_token_id: int = 2,
        bos_token_id: int = 3,
        logits_shifted: bool = False,
        prefix_tokens: int = 112,
        suffix_tokens: int = 48,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        self.mask_token_id = mask_token_id
        self.eoi_token_id = eoi_token_id
        self.logits_shifted = logits_shifted
        # the context window the model was trained with, and reads at inference (model.context.Window):
        # tokens of prefix and of suffix around the hole
        self.prefix_tokens = prefix_tokens
        self.suffix_tokens = suffix_tokens
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, **kwargs)
