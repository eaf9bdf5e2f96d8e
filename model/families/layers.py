"""Building blocks shared by the open families' networks: RMSNorm, rotary embeddings, bidirectional
grouped-query attention and the SwiGLU feed-forward. Each family's module names its parameters as
its published checkpoints do; these blocks only compute."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 and scaled in the input's dtype."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def rope(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin (B, 1, T, head_dim) of ``positions`` (B, T): the half-split rotary embedding
    (the first half of each head rotates with the second), frequencies ``theta ** (-2i / d)``."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.float()[..., None] * inv
    angles = torch.cat((angles, angles), dim=-1)[:, None]
    return angles.cos(), angles.sin()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, full_precision: bool) -> torch.Tensor:
    """``x`` (B, H, T, D) rotated; ``full_precision``: in float32 (LLaDA), else in ``x``'s dtype (Qwen2)."""
    if full_precision:
        y = x.float()
        return (y * cos + _rotate_half(y) * sin).to(x.dtype)
    return x * cos.to(x.dtype) + _rotate_half(x) * sin.to(x.dtype)


def with_past(k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, past) -> tuple:
    """Keys, values and key mask with a cached context's in front: ``past`` is None or
    ``(k, v, mask)``, (B, Hkv, C, D) twice and a (B, C) bool mask or None."""
    if past is None:
        return k, v, key_mask
    pk, pv, pmask = past
    if pmask is not None or key_mask is not None:
        b, c, t = k.shape[0], pk.shape[2], k.shape[2]
        pmask = pmask if pmask is not None else torch.ones(b, c, dtype=torch.bool, device=k.device)
        key_mask = torch.cat((pmask, key_mask if key_mask is not None else torch.ones(b, t, dtype=torch.bool,
                                                                                        device=k.device)), 1)
    return torch.cat((pk, k), 2), torch.cat((pv, v), 2), key_mask


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """Bidirectional attention of (B, H, T, D) queries over (B, Hkv, T, D) keys and values (grouped
    heads repeated); ``key_mask`` (B, T) bool: the real (unpadded) positions. Returns (B, T, H * D)."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)
    return out.transpose(1, 2).flatten(2)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def key_mask_of(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """A (B, T) 0/1 padding mask as bool, or None when nothing is padded."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask.bool()


def pick_positions(hidden: torch.Tensor, logits_at: torch.Tensor | None) -> torch.Tensor:
    """The hidden states at ``logits_at`` (B, K) positions, or all of them."""
    if logits_at is None:
        return hidden
    return hidden.gather(1, logits_at[..., None].expand(-1, -1, hidden.shape[-1]))


def init_weights(module: nn.Module, std: float) -> None:
    """Random initialisation of one module, as the published families initialise theirs."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
    elif isinstance(module, RMSNorm):
        nn.init.ones_(module.weight)
