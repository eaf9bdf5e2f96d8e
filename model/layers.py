"""The diffill network in plain torch: a bidirectional Llama-style transformer for masked diffusion.

RoPE, RMSNorm, SwiGLU, ``scaled_dot_product_attention`` with no causal mask, tied input and
output embeddings. With ``causal`` set in its config the same network attends only to earlier
positions: the autoregressive fill-in-the-middle peer of the same size (``model.peer``). Logits are computed only where asked (``logits_at``): with an 8k vocabulary
the output projection is about half the FLOPs of a small model.

Two paths for the sampler:
* exact: ``forward(prefix + canvas + suffix)`` every step;
* cached: ``encode_context`` runs the whole row once (its canvas logits are the first step's,
  exact) and returns each layer's keys and values; the backend keeps those of the prefix and
  suffix, then ``forward_canvas`` runs only the canvas through the layers, attending to that
  cache (Fast-dLLM's dual cache; approximate, since under bidirectional attention the context
  states would in truth change as the canvas fills).

For inference the q/k/v and gate/up projections can run fused (``fuse_projections``); the
checkpoint keeps them separate, so training and peft's LoRA layers see the usual modules.

Serving loads ``DiffillNetwork`` (``model.loading.load_network``) without importing transformers,
whose modelling code alone takes longer to import than torch; training, export and growth use the
transformers model of ``model.network``, which shares every method and parameter name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

KV = tuple[torch.Tensor, torch.Tensor]


@dataclass
class NetworkConfig:
    """The fields of a checkpoint's config.json that the network reads."""

    vocab_size: int = 8192
    hidden_size: int = 256
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    intermediate_size: int = 704
    max_position_embeddings: int = 1024
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    pad_token_id: int = 0
    mask_token_id: int = 1
    eoi_token_id: int = 2
    bos_token_id: int = 3
    logits_shifted: bool = False
    # the context window the model was trained with, and reads at inference (model.context.Window)
    prefix_tokens: int = 112
    suffix_tokens: int = 48
    tie_word_embeddings: bool = True
    # attend only to earlier positions (an autoregressive model) rather than to the whole row
    causal: bool = False

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict:
        """As config.json has it (peft reads a base model's config through this)."""
        return {**asdict(self), "model_type": "diffill"}


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> KV:
    """cos and sin tables of shape (B, 1, T, head_dim) for integer ``positions`` (B, T)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    angles = positions.float()[..., None] * inv_freq  # (B, T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)[:, None]
    return angles.cos(), angles.sin()


def with_room(kv: list[KV], index: torch.Tensor, extra: int) -> list[KV]:
    """Per layer, the keys and values of ``kv`` (B, H, T, D) at positions ``index`` (B, C), then
    ``extra`` positions to be overwritten: ``forward_canvas``'s ``room``."""
    index = torch.cat([index, index.new_zeros((index.shape[0], extra))], 1)
    if index.shape[0] == 1:  # one row: index_select, much cheaper than gather
        return [(k.index_select(2, index[0]), v.index_select(2, index[0])) for k, v in kv]
    g = index[:, None, :, None]
    return [tuple(t.gather(2, g.expand(-1, t.shape[1], -1, t.shape[3])) for t in pair) for pair in kv]


def packed(weight: torch.Tensor) -> torch.Tensor | None:
    """oneDNN's prepacked copy of a bfloat16 CPU weight for ``linear`` (None elsewhere, or where this
    torch has no oneDNN): F.linear repacks a bfloat16 weight at every call, which on the small
    matmuls of a canvas pass costs about a tenth of the pass; the products are the same bit for bit."""
    if weight.dtype != torch.bfloat16 or weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
    except (AttributeError, RuntimeError):
        return None


def linear(x: torch.Tensor, weight: torch.Tensor, pack: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight)``, through ``pack`` (``packed(weight)``) when there is one."""
    if pack is None:
        return F.linear(x, weight)
    return torch.ops.mkldnn._linear_pointwise(x, pack, None, "none", [], "")


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        h = config.hidden_size
        self.q_proj = nn.Linear(h, h, bias=False)
        self.k_proj = nn.Linear(h, h, bias=False)
        self.v_proj = nn.Linear(h, h, bias=False)
        self.o_proj = nn.Linear(h, h, bias=False)
        self.fused: torch.Tensor | None = None  # q, k, v in one matrix (NetworkMethods.fuse_projections)
        self.packs: tuple | None = None  # the fused and o_proj weights prepacked (``packed``), with ``fused``

    def forward(self, x, cos, sin, attn_mask=None, context: KV | None = None, room: KV | None = None,
                rows: torch.Tensor | None = None):
        b, t, _ = x.shape
        pack, o_pack = self.packs or (None, None)
        qkv = (linear(x, self.fused, pack).chunk(3, dim=-1) if self.fused is not None
               else (self.q_proj(x), self.k_proj(x), self.v_proj(x)))
        q, k, v = (y.reshape(b, t, self.n_heads, self.head_dim).transpose(1, 2) for y in qkv)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if rows is not None:  # only these positions' outputs are wanted; every key and value still is
            q = q.gather(2, rows[:, None, :, None].expand(-1, q.shape[1], -1, q.shape[3]))
        own = (k, v)
        if room is not None:  # the context's keys and values, then room for these: no concatenation
            room[0][:, :, -t:], room[1][:, :, -t:] = k, v
            k, v = room
        elif context is not None:
            k = torch.cat([context[0].to(k.dtype), k], dim=2)
            v = torch.cat([context[1].to(v.dtype), v], dim=2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask).transpose(1, 2).reshape(b, q.shape[2], -1)
        return (self.o_proj(out) if o_pack is None else linear(out, self.o_proj.weight, o_pack)), own


class MLP(nn.Module):
    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.fused: torch.Tensor | None = None  # gate and up in one matrix (NetworkMethods.fuse_projections)
        self.packs: tuple | None = None  # the fused and down_proj weights prepacked (``packed``), with ``fused``

    def forward(self, x):
        pack, down_pack = self.packs or (None, None)
        if self.fused is not None:
            gate, up = linear(x, self.fused, pack).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        h = F.silu(gate) * up
        return self.down_proj(h) if down_pack is None else linear(h, self.down_proj.weight, down_pack)


class Block(nn.Module):
    def __init__(self, config: NetworkConfig):
        super().__init__()
        self.input_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, attn_mask=None, context: KV | None = None, room: KV | None = None,
                rows: torch.Tensor | None = None):
        """``rows`` (B, K): the output at these positions only (a key mask only, not a causal one)."""
        a, kv = self.self_attn(self.input_layernorm(x), cos, sin, attn_mask, context, room, rows)
        if rows is not None:
            x = _rows(x, rows)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, kv


def _rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(B, T, H) -> (B, K, H) at positions ``rows`` (B, K)."""
    return x.gather(1, rows[..., None].expand(-1, -1, x.shape[-1]))


def _applied_weight(proj: nn.Module) -> torch.Tensor | None:
    """The weight a projection applies: a plain Linear's, or the base weight of a peft LoRA layer
    whose adapter is merged in or inactive. None while LoRA matmuls run beside the base."""
    base = getattr(proj, "base_layer", None)
    if base is None:
        return proj.weight
    live = [a for a in proj.active_adapters if a in proj.lora_A]
    if proj.merged or proj.disable_adapters or not live:
        return base.weight
    return None


def _key_mask(attention_mask: torch.Tensor | None, extra: int = 0) -> torch.Tensor | None:
    """(B, T) 1/0 padding mask -> boolean SDPA mask (B, 1, 1, extra + T)."""
    if attention_mask is None:
        return None
    return attention_mask.bool()[:, None, None, :]


def _causal_mask(attention_mask: torch.Tensor | None, length: int, past: int, device) -> torch.Tensor:
    """Boolean SDPA mask (B or 1, 1, length, past + length): query i (at position past + i) sees the
    ``past`` cached keys and its own row up to itself, and no padding key."""
    keys = torch.arange(past + length, device=device)
    mask = (keys[None, :] <= past + torch.arange(length, device=device)[:, None])[None, None]
    if attention_mask is not None:
        mask = mask & attention_mask.bool()[:, None, None, :]
    return mask


class NetworkMethods:
    """What the plain network and the transformers model share (``_build`` makes the modules)."""

    def _build(self, config) -> None:
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    @torch.no_grad()
    def fuse_projections(self) -> bool:
        """For inference: q/k/v, and gate/up, each become one matmul on a concatenated copy of the
        current weights (fewer, larger kernels: one canvas pass of the shipped model on 2 threads,
        timed alone, 7.4 -> 5.5 ms; the copies hold 3.4M parameters). Call again after changing
        the weights; training, ``.to()`` and ``unfuse_projections`` drop the copies. Refused
        (False, left unfused) while LoRA matmuls run beside the base."""
        self.unfuse_projections()
        fused = []
        for block in self.layers:
            a, m = block.self_attn, block.mlp
            qkv = [_applied_weight(p) for p in (a.q_proj, a.k_proj, a.v_proj)]
            gate_up = [_applied_weight(p) for p in (m.gate_proj, m.up_proj)]
            if any(w is None for w in qkv + gate_up):
                return False
            fused.append((torch.cat(qkv).detach(), torch.cat(gate_up).detach()))
        for block, (qkv, gate_up) in zip(self.layers, fused):
            block.self_attn.fused, block.mlp.fused = qkv, gate_up
            a, m = block.self_attn, block.mlp
            packs = (packed(qkv), packed(a.o_proj.weight)), (packed(gate_up), packed(m.down_proj.weight))
            if all(p is not None for pair in packs for p in pair):  # bfloat16 on a CPU with oneDNN
                a.packs, m.packs = packs
        self.__dict__["_embed_pack"] = packed(self.embed_tokens.weight) if self.layers[0].self_attn.packs else None
        return True

    def unfuse_projections(self) -> None:
        for block in getattr(self, "layers", ()):
            block.self_attn.fused = block.mlp.fused = None
            block.self_attn.packs = block.mlp.packs = None
        self.__dict__["_embed_pack"] = None

    @property
    def fused(self) -> bool:
        return any(block.self_attn.fused is not None for block in getattr(self, "layers", ()))

    def train(self, mode: bool = True):
        if mode:
            self.unfuse_projections()  # the copies would not follow the optimiser's updates
        return super().train(mode)

    def _apply(self, fn, recurse=True):
        self.unfuse_projections()  # .to(), .half(), ...: the copies would keep the old dtype/device
        return super()._apply(fn, recurse)

    def _forward(self, input_ids, attention_mask=None, position_ids=None, logits_at=None, labels=None):
        """(logits, loss): logits at every position, or only at ``logits_at``: a boolean (B, T)
        mask gives (N, V), an index tensor (B, K) gives (B, K, V). ``labels`` (same selection) adds
        a plain CE loss."""
        x = self.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(self._positions(input_ids, position_ids), self.head_dim, self.config.rope_theta)
        if getattr(self.config, "causal", False):
            mask = _causal_mask(attention_mask, input_ids.shape[1], 0, input_ids.device)
        else:
            mask = _key_mask(attention_mask)
        for layer in self.layers:
            x, _ = layer(x, cos, sin, mask)
        logits = self._logits(x, logits_at)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
        return logits, loss

    @property
    def head_dim(self) -> int:
        return self.config.hidden_size // self.config.num_attention_heads

    def _positions(self, input_ids, position_ids):
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand_as(input_ids)
        return position_ids

    def _logits(self, hidden: torch.Tensor, logits_at: torch.Tensor | None) -> torch.Tensor:
        if logits_at is not None:
            if logits_at.dtype == torch.bool:
                hidden = hidden[logits_at]  # (N, H)
            else:
                hidden = torch.gather(hidden, 1, logits_at[..., None].expand(-1, -1, hidden.shape[-1]))
        return linear(self.norm(hidden), self.embed_tokens.weight, self.__dict__.get("_embed_pack"))

    @torch.inference_mode()
    def encode_context(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
    ) -> list[KV] | tuple[list[KV], torch.Tensor]:
        """Per-layer keys and values of every position of ``input_ids`` (prefix + canvas + suffix).

        With ``logits_at`` (B, K) the same pass also returns the logits there: the canvas slots of
        this pass are exact, so the first denoising step costs no extra forward."""
        x = self.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(position_ids, self.head_dim, self.config.rope_theta)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # once, not in every layer
        mask = _key_mask(attention_mask)
        cache = []
        last = len(self.layers) - 1
        for n, layer in enumerate(self.layers):
            # the last layer's outputs are wanted only where the logits are (its keys and values everywhere)
            x, kv = layer(x, cos, sin, mask, rows=logits_at if n == last else None)
            cache.append(kv)
        if logits_at is None:
            return cache
        return cache, self._logits(x, None)

    @torch.inference_mode()
    def forward_canvas(
        self,
        canvas_ids: torch.Tensor,
        canvas_positions: torch.Tensor,
        context: list[KV],
        context_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
        rope: KV | None = None,
        room: list[KV] | None = None,
    ) -> torch.Tensor:
        """Logits of the canvas only, attending to the cached context and itself: (B, L, V), or
        (B, K, V) at the canvas slots ``logits_at`` (B, K). ``rope``: precomputed
        ``rope_cos_sin(canvas_positions)``, which does not change between steps. ``room``: per
        layer, the context's keys and values followed by L free positions (``with_room``), into
        which the canvas's own are written, in place of ``context``."""
        x = self.embed_tokens(canvas_ids)
        cos, sin = rope if rope is not None else rope_cos_sin(canvas_positions, self.head_dim, self.config.rope_theta)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # once, not in every layer
        mask = None
        if context_mask is not None:
            own = torch.ones(canvas_ids.shape, dtype=context_mask.dtype, device=context_mask.device)
            mask = _key_mask(torch.cat([context_mask, own], dim=1))
        last = len(self.layers) - 1
        for n, layer in enumerate(self.layers):
            rows = logits_at if n == last else None  # the last layer's outputs only where the logits are
            kv, slot = (context[n], None) if room is None else (None, room[n])
            x, _ = layer(x, cos, sin, mask, kv, slot, rows)
        return self._logits(x, None)

    @torch.inference_mode()
    def forward_causal(self, input_ids: torch.Tensor, past: list[KV] | None = None) -> tuple[torch.Tensor, list[KV]]:
        """A causal network's incremental pass: the logits at the last of ``input_ids`` (B, V), which
        go on after the ``past`` keys and values (those of every earlier position), and the keys
        and values of all positions so far (the prompt in one call, then one call per new token)."""
        if not getattr(self.config, "causal", False):
            raise ValueError("forward_causal needs a causal network (config.causal)")
        done = 0 if past is None else past[0][0].shape[2]
        t = input_ids.shape[1]
        positions = torch.arange(done, done + t, device=input_ids.device)[None].expand_as(input_ids)
        cos, sin = rope_cos_sin(positions, self.head_dim, self.config.rope_theta)
        mask = _causal_mask(None, t, done, input_ids.device) if t > 1 else None  # one query sees everything
        x = self.embed_tokens(input_ids)
        cache = []
        for i, layer in enumerate(self.layers):
            context = None if past is None else past[i]
            x, (k, v) = layer(x, cos, sin, mask, context)
            if context is not None:
                k, v = torch.cat([context[0], k], dim=2), torch.cat([context[1], v], dim=2)
            cache.append((k, v))
        return self._logits(x[:, -1], None), cache

    @torch.inference_mode()
    def extend_context(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        context: list[KV],
        logits_at: torch.Tensor | None = None,
    ) -> tuple[list[KV], torch.Tensor]:
        """Per-layer keys and values of new tokens ``input_ids`` at ``position_ids``, attending to
        a cached ``context`` (unpadded) and themselves, and their logits at ``logits_at`` (B, K):
        how a context kept from an earlier request is completed (``model.context_reuse``)."""
        x = self.embed_tokens(input_ids)
        cos, sin = rope_cos_sin(position_ids, self.head_dim, self.config.rope_theta)
        own = []
        for layer, kv in zip(self.layers, context):
            x, new = layer(x, cos, sin, None, kv)
            own.append(new)
        return own, self._logits(x, logits_at)



class Output(NamedTuple):
    logits: torch.Tensor
    loss: torch.Tensor | None = None


class DiffillNetwork(NetworkMethods, nn.Module):
    """The network for inference, built from a ``NetworkConfig`` without transformers."""

    def __init__(self, config: NetworkConfig):
        nn.Module.__init__(self)
        self.config = config
        self._build(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, logits_at: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, **kwargs) -> Output:
        return Output(*self._forward(input_ids, attention_mask, position_ids, logits_at, labels))

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device
