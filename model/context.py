"""The context window: the token budget around a hole, split between prefix and suffix.

Prefix and suffix are tokenized separately (as at a cursor), then cut to their budgets at line
boundaries, keeping the text nearest the hole. Training and inference share this one function,
so the model sees the same boundaries in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diffill.model.tokenizer import CodeTokenizer

CHARS_PER_TOKEN_BOUND = 6  # generous: read this many characters per budget token before cutting


@dataclass(frozen=True)
class Window:
    prefix_tokens: int = 112
    suffix_tokens: int = 48


def window_of(config) -> Window:
    """The context window a model was trained with, from its config (the default for configs
    written before the window was recorded, and for models that do not record one)."""
    return Window(getattr(config, "prefix_tokens", Window.prefix_tokens),
                  getattr(config, "suffix_tokens", Window.suffix_tokens))


def set_window(config, window: Window) -> None:
    """Make ``window`` the one a model reads with (``window_of``): an adapter trained with a wider
    window than its base's is served with it."""
    config.prefix_tokens, config.suffix_tokens = window.prefix_tokens, window.suffix_tokens


def _starts(tok: CodeTokenizer) -> np.ndarray:
    """Which vocabulary entries begin with a newline (tokens that start a line), computed once
    per tokenizer and kept on it."""
    flags = getattr(tok, "_line_start_flags", None)
    if flags is None:
        flags = np.array([text.startswith("\n") for text in tok.token_texts()])
        tok._line_start_flags = flags
    return flags


def encode_prefix(tok: CodeTokenizer, prefix: str, budget: int) -> list[int]:
    """Tokens of the end of ``prefix``: at most ``budget``, starting at a line boundary when cut.
    A window that reaches the start of the file begins with ``<bos>``."""
    if budget <= 0:
        return []
    tail = prefix[-budget * CHARS_PER_TOKEN_BOUND :]
    whole = len(tail) == len(prefix)
    if not whole:
        nl = tail.find("\n")
        tail = tail[nl:] if nl >= 0 else tail
    ids = tok.encode(tail)
    if whole and len(ids) < budget:
        return [tok.bos_id] + ids
    if len(ids) > budget:
        flags = _starts(tok)
        cut = len(ids) - budget
        starts = np.nonzero(flags[np.asarray(ids[cut:])])[0]
        ids = ids[cut + int(starts[0]) :] if starts.size else ids[cut:]
    return ids


def encode_suffix(tok: CodeTokenizer, suffix: str, budget: int) -> list[int]:
    """Tokens of the start of ``suffix``: at most ``budget``, ending at a line boundary when cut."""
    if budget <= 0:
        return []
    head = suffix[: budget * CHARS_PER_TOKEN_BOUND]
    ids = tok.encode(head)
    if len(ids) > budget:
        flags = _starts(tok)
        starts = np.nonzero(flags[np.asarray(ids[1 : budget + 1])])[0]
        ids = ids[: int(starts[-1]) + 1] if starts.size else ids[:budget]
    return ids


def encode_window(tok: CodeTokenizer, prefix: str, suffix: str, window: Window) -> tuple[list[int], list[int]]:
    return encode_prefix(tok, prefix, window.prefix_tokens), encode_suffix(tok, suffix, window.suffix_tokens)
