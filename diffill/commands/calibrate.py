"""``diffill calibrate --corpus DIR [--cases N]``: fit the confidence of the loaded model and adapter.

Holes are drawn from the corpus's training split as ``bench abstain`` draws them (one-line holes at
a line's start and at a word boundary inside it), each filled through the engine with the other
files of its package as documents to copy from (as a workspace would give), without the library
index (which holds these very files). A logistic regression of exactness on the fills' and
runners-up's signals (``diffill.confidence``) is written to ``confidence.json`` beside the model,
with the model and adapter it is valid for.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from diffill.commands.common import add_model_options, non_negative_int, positive_int
from diffill.errors import DiffillError
from diffill.loading import engine_config_from

log = logging.getLogger(__name__)

PACKAGE_SHARE = 20  # percent of the training split's packages whose files holes are drawn from
NEIGHBORS = 8  # other files of a hole's package it copies from, at most
NEIGHBOR_CHARS = 400_000  # ... and at most this many characters of them


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="fit the fills' confidence on training-split holes of a corpus")
    p.add_argument("--corpus", required=True, metavar="DIR", help="a corpus folder (diffill corpus build)")
    p.add_argument("--cases", type=positive_int, default=500, help="holes of each kind (default 500)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--out", default=None, metavar="PATH",
                   help="where to write the calibration (default: confidence.json in the model's folder)")
    add_model_options(p)
    p.set_defaults(run=run, library="none")
    p.add_argument("--json", action="store_true", help="print one JSON summary")


def package_of(path: str) -> str:
    """A corpus file's package: its path's first folder ("" for a top-level module)."""
    return path.split("/", 1)[0] if "/" in path else ""


def training_files(corpus: str, seed: int) -> dict[str, list[tuple[str, str]]]:
    """Package -> its (path, text) files, for a share of the training split's packages (chosen by
    a hash of the package's name and ``seed``)."""
    folder = Path(corpus)
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        shards = manifest["splits"]["train"]["shards"]
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise DiffillError(f"--corpus {corpus}: not a corpus folder ({e})") from e
    out: dict[str, list[tuple[str, str]]] = {}
    for shard in shards:
        with open(folder / shard["text"], encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                package = package_of(row["path"])
                if int(hashlib.sha256(f"{seed}:{package}".encode()).hexdigest()[:8], 16) % 100 < PACKAGE_SHARE:
                    out.setdefault(package, []).append((row["path"], row["text"]))
    if not out:
        raise DiffillError(f"--corpus {corpus}: no training files")
    return out


def run(args) -> int:
    from diffill.bench.abstain import KINDS, draw, fill
    from diffill.confidence import CALIBRATION_FILE, Calibration, fit
    from diffill.engine import Engine

    engine = Engine(engine_config_from(args))
    if engine.adapters is None:
        raise DiffillError("confidence is calibrated for the diffill backend only")
    packages = training_files(args.corpus, args.seed)
    files = [f for group in packages.values() for f in group]
    texts = [t for _, t in files]
    neighbors: dict[int, tuple[str, ...]] = {}
    index = {path: i for i, (path, _) in enumerate(files)}
    for group in packages.values():
        for path, _ in group:
            others, chars = [], 0
            folder = path.rpartition("/")[0]
            for other, text in sorted(group, key=lambda f: f[0].rpartition("/")[0] != folder):  # its folder's first
                if other != path and len(others) < NEIGHBORS and chars + len(text) <= NEIGHBOR_CHARS:
                    others.append(text)
                    chars += len(text)
            neighbors[index[path]] = tuple(others)
    rows, counts = [], {}
    for kind in KINDS:
        filled = fill(engine, draw(texts, args.cases, engine.tok, args.seed, kind), neighbors=neighbors)
        counts[kind] = len(filled)
        for f in filled:
            rows += [(sig, y) for _, y, sig in [f.fill, *f.alternatives] if sig is not None]
    models = fit(rows)
    if not models:
        raise DiffillError("no hole was filled both right and wrong: nothing to fit (more --cases?)")
    out = Path(args.out) if args.out else engine.model_folder / CALIBRATION_FILE
    fitted_on = {"corpus": Path(args.corpus).name, "split": "train", "packages": len(packages), "files": len(files),
                 "holes": counts, "rows": len(rows), "seed": args.seed, "copy": args.copy,
                 "command": "diffill calibrate --corpus DIR" + (f" --cases {args.cases}" if args.cases != 500 else "")}
    Calibration(engine.fingerprint(), models, fitted_on).save(out)
    summary = {"out": str(out), **fitted_on, "positives": {k: m.positives for k, m in models.items()}}
    print(json.dumps(summary) if args.json else f"confidence calibration written to {out}: {summary}")
    return 0
