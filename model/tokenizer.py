"""Byte-level BPE tokenizer for code, trained with `tokenizers`; wrapped as a transformers
PreTrainedTokenizerFast only where transformers is used (training, export), not for serving.

Byte-level BPE round-trips any UTF-8 text exactly. The GPT-2 pre-tokenizer regex keeps a
newline and the indentation after it together, so indentation runs merge into single tokens.
Special tokens are never matched inside user text (``encode_special_tokens``), so a file that
contains the literal string ``<mask>`` still round-trips.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, MASK, EOI, BOS = "<pad>", "<mask>", "<eoi>", "<bos>"
SPECIAL_TOKENS = [PAD, MASK, EOI, BOS]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8192) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``; special tokens take ids 0..3."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return wrap(backend)


def wrap(backend: Tokenizer) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    backend.encode_special_tokens = True
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        mask_token=MASK,
        bos_token=BOS,
        eos_token=EOI,
        clean_up_tokenization_spaces=False,
    )
    return tok


def read_tokenizer(path: str | Path) -> Tokenizer:
    """The raw ``tokenizers`` tokenizer of a folder's (or a file's) tokenizer.json."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no tokenizer.json in {path}")
    return Tokenizer.from_file(str(file))


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    return wrap(read_tokenizer(path))


class CodeTokenizer:
    """Fast encode/decode on the raw backend, with the special ids at hand."""

    def __init__(self, tokenizer: Tokenizer | PreTrainedTokenizerFast):
        """``tokenizer``: the raw ``tokenizers`` one, or a transformers fast tokenizer around it."""
        is_raw = isinstance(tokenizer, Tokenizer)
        self.backend: Tokenizer = tokenizer if is_raw else tokenizer.backend_tokenizer
        self._hf = None if is_raw else tokenizer
        self.backend.encode_special_tokens = True
        self.pad_id = self.backend.token_to_id(PAD)
        self.mask_id = self.backend.token_to_id(MASK)
        self.eoi_id = self.backend.token_to_id(EOI)
        self.bos_id = self.backend.token_to_id(BOS)
        self.vocab_size = self.backend.get_vocab_size()
        self.special_ids = frozenset((self.pad_id, self.mask_id, self.eoi_id, self.bos_id))

    @classmethod
    def from_dir(cls, path: str | Path) -> CodeTokenizer:
        return cls(read_tokenizer(path))

    @property
    def hf(self) -> PreTrainedTokenizerFast:
        """The transformers tokenizer around the same backend (made on first use)."""
        if self._hf is None:
            self._hf = wrap(self.backend)
        return self._hf

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        ids = [i for i in ids if i not in self.special_ids]
        return self.backend.decode(ids, skip_special_tokens=False) if ids else ""

    def token_text(self, token_id: int) -> str:
        return self.decode([token_id])

    def token_texts(self) -> list[str]:
        """Every id's text alone ("" for the special tokens; computed once)."""
        texts = self.__dict__.get("_token_texts")
        if texts is None:
            texts = ["" if i in self.special_ids else self.backend.decode([i]) for i in range(self.vocab_size)]
            self._token_texts = texts
        return texts

    def line_break_ids(self) -> frozenset[int]:
        """Ids of the tokens that end a line: a newline with nothing but blanks before it
        (computed once). In a one-line hole such a token ends the fill, as <eoi> does."""
        ids = self.__dict__.get("_line_break_ids")
        if ids is None:
            ids = frozenset(i for i, text in enumerate(self.token_texts())
                            if "\n" in text and not text.split("\n", 1)[0].strip())
            self._line_break_ids = ids
        return ids

    def unspaced_ids(self) -> dict[int, int]:
        """For each token that starts with a space, the token without it, where the vocabulary has
        one (computed once): in a file's tokens a line's first token follows its indentation token
        with a space of its own; a hole that starts after the indentation starts without it."""
        ids = self.__dict__.get("_unspaced_ids")
        if ids is None:
            vocab = self.backend.get_vocab()
            ids = {i: vocab[text[1:]] for text, i in vocab.items() if text.startswith("\u0120") and text[1:] in vocab}
            self._unspaced_ids = ids
        return ids
