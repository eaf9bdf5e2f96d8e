"""Grow a trained model deeper without changing what it computes (block expansion, as LLaMA Pro does):

    python -m diffill.model.grow SRC DEST --layers N

SRC is a run folder (its furthest-trained checkpoint) or a checkpoint folder. Each new block is a
copy of an existing one, inserted right after it, with its two output projections (``o_proj``,
``down_proj``) zeroed: it adds nothing to the residual stream until training moves it, so the
grown model's logits are the source's. The copies are spread evenly over the depth. DEST gets
float32 weights, the config, the tokenizer and the source's training record (``trainer_state.json``
or ``training_log.json``), ready for ``diffill train --init DEST``: the step, token and CPU-time
counts go on from the source's, so the learning curve counts what the source cost.

Why deeper: the shipped model (6.9M parameters) has seen about 32 tokens per parameter, past the
compute-optimal ~20, and told each held-out line's length it fills hardly more of them
(docs/decoding.md): what it lacks is capacity, which depth adds while keeping what it learnt.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
from pathlib import Path

import torch

from diffill.model.network import DiffillForMaskedLM
from diffill.model.runs import STATE, latest_checkpoint
from diffill.model.tokenizer import load_tokenizer

RECORDS = (STATE, "training_log.json")  # where model.train.init_state reads the counts


def copies_after(old: int, new: int) -> list[int]:
    """Indices of the source blocks that get a copy right after them, spread over the depth
    (6 -> 10: blocks 1, 2, 3, 4)."""
    n = new - old
    return sorted(min(old - 1, (i + 1) * old // (n + 1)) for i in range(n)) if n > 0 else []


def grow_model(model: DiffillForMaskedLM, layers: int) -> DiffillForMaskedLM:
    """``model`` with ``layers`` blocks, computing the same function (see the module docstring)."""
    old = model.config.num_hidden_layers
    if layers <= old:
        raise ValueError(f"the model has {old} layers; growing needs more than that, not {layers}")
    if model.fused:
        model.unfuse_projections()
    after, blocks = copies_after(old, layers), []
    for i, block in enumerate(model.layers):
        blocks.append(block)
        for _ in range(after.count(i)):
            twin = copy.deepcopy(block)
            with torch.no_grad():
                twin.self_attn.o_proj.weight.zero_()
                twin.mlp.down_proj.weight.zero_()
            blocks.append(twin)
    model.layers = torch.nn.ModuleList(blocks)
    model.config.num_hidden_layers = layers
    return model


def grow(src: Path, dst: Path, layers: int) -> Path:
    if not (src / "config.json").is_file():
        src = latest_checkpoint(src)
    model = grow_model(DiffillForMaskedLM.from_pretrained(str(src), dtype=torch.float32), layers)
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(src).save_pretrained(tmp)
        for record in RECORDS:
            if (src / record).is_file():
                shutil.copy(src / record, Path(tmp) / record)
        for f in Path(tmp).iterdir():
            shutil.move(str(f), dst / f.name)
    return dst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m diffill.model.grow", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path, help="run folder or checkpoint folder")
    ap.add_argument("dst", type=Path)
    ap.add_argument("--layers", type=int, required=True, help="blocks the grown model has")
    args = ap.parse_args(argv)
    try:
        print(grow(args.src, args.dst, args.layers))
    except (ValueError, FileNotFoundError) as e:
        ap.exit(2, f"model.grow: error: {e}\n")


if __name__ == "__main__":
    main()
