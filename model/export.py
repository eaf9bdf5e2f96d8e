"""Export a training checkpoint as the shipped model: bf16 safetensors, config, tokenizer.

    python -m diffill.model.export RUN model/checkpoints/diffill-base

RUN is a run folder (its furthest-trained checkpoint: ``checkpoint/``, or a wsd schedule's
``cooldown/checkpoint/`` past it) or one checkpoint folder. The model card (README.md) in the
destination is kept; optimizer state is not copied.
"""

from __future__ import annotations

import copy
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from diffill.model.corpus import LANGUAGES as CORPUS_LANGUAGES
from diffill.model.network import DiffillForMaskedLM
from diffill.model.runs import latest_checkpoint
from diffill.model.tokenizer import load_tokenizer


def export(src: Path, dst: Path) -> Path:
    if not (src / "config.json").is_file():
        src = latest_checkpoint(src)
    model = DiffillForMaskedLM.from_pretrained(str(src), dtype=torch.float32)
    return write_model(model, load_tokenizer(src), dst)


def write_model(model, tok, dst: Path) -> Path:
    """``model`` (a ``DiffillForMaskedLM``; left as it is) in bf16 with its tokenizer ``tok``: a
    model folder the engine serves."""
    model = copy.deepcopy(model).cpu().to(torch.bfloat16)
    if not getattr(model.config, "languages", None):  # trained before the config recorded them
        model.config.languages = list(CORPUS_LANGUAGES)
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        for f in Path(tmp).iterdir():
            shutil.move(str(f), dst / f.name)
    return dst


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m diffill.model.export RUN|CHECKPOINT DEST")
    print(export(Path(sys.argv[1]), Path(sys.argv[2])))
