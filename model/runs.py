"""A training run's folder: its trunk checkpoint and, past a wsd schedule's decay start, the
cooldown branch beside it; each checkpoint's ``trainer_state.json`` says how far it was trained."""

from __future__ import annotations

import json
from pathlib import Path

COOLDOWN = "cooldown"  # a wsd run's branch folder, beside checkpoint/
STATE = "trainer_state.json"  # a checkpoint's training record: step, tokens, CPU time


def state_of(ckpt: Path) -> dict:
    """A checkpoint's training record."""
    return json.loads((ckpt / STATE).read_text())


def latest_checkpoint(run: Path) -> Path:
    """The furthest-trained checkpoint of a run folder: the trunk, or a wsd branch beyond it."""
    found = [c for c in (run / "checkpoint", run / COOLDOWN / "checkpoint") if (c / STATE).is_file()]
    if not found:
        raise FileNotFoundError(f"{run} holds no checkpoint")
    return max(found, key=lambda c: state_of(c)["step"])
