"""Published shapes of open diffusion code models, for shape-only checkpoints (``init_model``).

Each entry holds the config.json keys of the published checkpoint that fix its architecture, its
special tokens (text and id in the real vocabulary), and how its family lays out an infill. The
values are those of the public config files and generation scripts:

* ``dream-coder-7b``: Dream-Coder-v0 7B (Qwen2.5-Coder-7B shape; ``<|mask|>`` 151666,
  ``<|beginoftext|>`` 151665, ``<|endoftext|>`` 151643).
* ``dreamon-v0-7b``: DreamOn-v0 7B (Dream-Coder's shape and specials, fine-tuned from it; its
  tokenizer adds ``<|expand|>`` at 151667, the id its published training and evaluation code use;
  the delete state is ``<|endoftext|>`` 151643, which that code appends to training middles and
  removes from the canvas where it is predicted).
* ``open-dcoder-0.5b``: Open-dCoder 0.5B (Qwen2.5-Coder-0.5B shape, ``model_type: qwen2``, tied
  embeddings; its training adds the mask token ``<M>`` after Qwen's specials: 151665).
* ``llada-8b``: LLaDA-8B (``<|mdm_mask|>`` 126336, ``<|startoftext|>`` 126080,
  ``<|endoftext|>`` 126081).
* ``diffusiongemma``: DiffusionGemma 26B-A4B (a Gemma 4 mixture of experts; Gemma vocabulary of
  262144; ``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<mask>`` 4).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Tokens:
    """A family's special tokens: role -> (text, id in the published vocabulary)."""

    mask: tuple[str, int]
    eos: tuple[str, int]
    bos: tuple[str, int] | None = None
    pad: tuple[str, int] | None = None
    extra: tuple[tuple[str, int], ...] = ()  # other reserved tokens the vocabulary holds

    def all(self) -> list[tuple[str, int]]:
        named = [self.mask, self.eos, self.bos, self.pad, *self.extra]
        seen: dict[str, int] = {}
        for item in named:
            if item is not None:
                seen.setdefault(item[0], item[1])
        return list(seen.items())


@dataclass(frozen=True)
class Spec:
    family: str  # model.families.FAMILIES key
    config: dict  # the published config.json's architecture keys
    tokens: Tokens
    tiny: dict = field(default_factory=dict)  # overrides for --tiny (layers, width)
    base_offset: int = 0  # where the stand-in BPE's ids start (clear of the family's special ids)


_QWEN_SPECIALS = (("<|im_start|>", 151644), ("<|im_end|>", 151645), ("<|fim_prefix|>", 151659),
                  ("<|fim_middle|>", 151660), ("<|fim_suffix|>", 151661), ("<|fim_pad|>", 151662),
                  ("<|repo_name|>", 151663), ("<|file_sep|>", 151664))

_QWEN_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2)

_DREAM_CODER = dict(model_type="Dream", architectures=["DreamModel"], vocab_size=152064, hidden_size=3584,
                    intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                    hidden_act="silu", max_position_embeddings=131072, rms_norm_eps=1e-6, rope_theta=1000000.0,
                    tie_word_embeddings=False, mask_token_id=151666, pad_token_id=151643, bos_token_id=151665,
                    eos_token_id=151643)
_DREAM_TOKENS = Tokens(mask=("<|mask|>", 151666), eos=("<|endoftext|>", 151643), bos=("<|beginoftext|>", 151665),
                       pad=("<|endoftext|>", 151643), extra=_QWEN_SPECIALS)

SPECS: dict[str, Spec] = {
    "dream-coder-7b": Spec(family="dream", config=_DREAM_CODER, tokens=_DREAM_TOKENS, tiny=_QWEN_TINY),
    "dreamon-v0-7b": Spec(family="dreamon", config=_DREAM_CODER,
                          tokens=replace(_DREAM_TOKENS, extra=(*_QWEN_SPECIALS, ("<|expand|>", 151667))),
                          tiny=_QWEN_TINY),
    "open-dcoder-0.5b": Spec(
        family="open_dcoder",
        config=dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], vocab_size=151936, hidden_size=896,
                    intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                    hidden_act="silu", max_position_embeddings=131072, rms_norm_eps=1e-6, rope_theta=1000000.0,
                    tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151643, pad_token_id=151643,
                    use_sliding_window=False),
        tokens=Tokens(mask=("<M>", 151665), eos=("<|endoftext|>", 151643), pad=("<|endoftext|>", 151643),
                      extra=_QWEN_SPECIALS),
        tiny=_QWEN_TINY),
    "llada-8b": Spec(
        family="llada",
        config=dict(model_type="llada", architectures=["LLaDAModelLM"], d_model=4096, n_heads=32, n_kv_heads=32,
                    n_layers=32, mlp_hidden_size=12288, mlp_ratio=4, vocab_size=126464, embedding_size=126464,
                    max_sequence_length=4096, rope_theta=500000.0, rms_norm_eps=1e-5, include_bias=False,
                    include_qkv_bias=False, weight_tying=False, activation_type="silu", block_type="llama",
                    layer_norm_type="rms", rope=True, rope_full_precision=True, alibi=False, mask_token_id=126336,
                    eos_token_id=126081, pad_token_id=126081, use_cache=False),
        tokens=Tokens(mask=("<|mdm_mask|>", 126336), eos=("<|endoftext|>", 126081),
                      bos=("<|startoftext|>", 126080), pad=("<|endoftext|>", 126081),
                      extra=(("<|start_header_id|>", 126346), ("<|end_header_id|>", 126347), ("<|eot_id|>", 126348))),
        tiny=dict(d_model=32, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=64)),
    "diffusiongemma": Spec(
        family="diffusion_gemma",
        # diffusiongemma-26B-A4B: transformers' DiffusionGemma defaults with the released model's width and
        # mixture of experts (128 experts, 8 active)
        config=dict(model_type="diffusion_gemma",
                    text_config=dict(hidden_size=2816, intermediate_size=2112, num_attention_heads=16,
                                     num_key_value_heads=8, num_experts=128, top_k_experts=8, moe_intermediate_size=704,
                                     max_position_embeddings=262144, final_logit_softcapping=30.0)),
        tokens=Tokens(mask=("<mask>", 4), eos=("<eos>", 1), bos=("<bos>", 2), pad=("<pad>", 0),
                      extra=(("<unk>", 3),)),
        tiny=dict(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                   num_key_value_heads=1, head_dim=16, sliding_window=32,
                                   max_position_embeddings=2048, layer_types=["sliding_attention", "full_attention"],
                                   per_layer_config={"1": {"head_dim": 32}}, num_experts=2, top_k_experts=1,
                                   moe_intermediate_size=32),
                  vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=2, head_dim=8, position_embedding_size=64),
                  canvas_length=32),
        base_offset=256),
}

LIKE_NAMES = tuple(SPECS)
