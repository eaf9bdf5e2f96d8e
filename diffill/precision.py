"""Inference precision: the weight dtypes the engine runs, and what ``auto`` means on this CPU.

Kept free of a module-level torch import, so the CLI can offer the choices without loading torch.
"""

from __future__ import annotations

DTYPES = ("auto", "float32", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")  # auto: a CUDA GPU where one is, for the families that use it


def resolve_dtype(dtype: str) -> str:
    """``auto``: bfloat16 where the CPU has native bf16 kernels (oneDNN), else float32."""
    if dtype != "auto":
        return dtype
    import torch

    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bfloat16" if native else "float32"
