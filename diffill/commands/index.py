"""``diffill index [--corpus DIR] [--out PATH] [--json]``: the library index fills copy from."""

from __future__ import annotations

import json
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("index", help="build the library index fills copy from (model/library_index.py)")
    p.add_argument("--corpus", default=None, metavar="DIR",
                   help="index this corpus's training split (default: this interpreter's standard library and "
                        "site-packages, the files the content-hash split trains on)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="the model whose tokenizer the index is for (default: the shipped model)")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="output folder (default: where the engine looks, $DIFFILL_LIBRARY_INDEX or the user's "
                        "cache folder)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def _corpus_streams(corpus: Path, tok):
    import numpy as np

    from model.corpus import load_tokens

    manifest = corpus / "manifest.json"
    if not manifest.is_file():
        from diffill.errors import DiffillError

        raise DiffillError(f"--corpus {corpus}: no manifest.json there (build one with `diffill corpus build`)")
    flat = load_tokens(corpus, "train")
    streams = [piece[1:] for piece in np.split(flat, np.flatnonzero(flat == tok.bos_id)) if len(piece) > 1]
    return streams, [f"{corpus} (training split)"]


def _library_streams(tok):
    from model.corpus import collect, default_roots, is_heldout

    roots = default_roots()
    texts = [f.text for f in collect(roots, processes=2) if not is_heldout(f.text)]
    return tok.encode_batch(texts), [str(r) for r in roots]


def run(args) -> int:
    from diffill.errors import DiffillError
    from model.library_index import build_index, default_folder
    from model.loading import ModelLoadError, load_checkpoint

    try:
        _, tok = load_checkpoint(args.model)
    except ModelLoadError as e:
        raise DiffillError(str(e)) from e
    out = Path(args.out) if args.out else default_folder(tok)
    if out is None:
        raise DiffillError("DIFFILL_LIBRARY_INDEX is 'none': pass --out PATH")
    t0 = time.perf_counter()
    streams, sources = _corpus_streams(Path(args.corpus), tok) if args.corpus else _library_streams(tok)
    if not streams:
        raise DiffillError("no source files to index")
    try:
        meta = build_index(tok, streams, out, sources, len(streams))
    except OSError as e:
        raise DiffillError(f"cannot write the library index to {out}: {e}") from e
    meta = {**meta, "folder": str(out), "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        print(json.dumps(meta))
    else:
        print(f"library index: {meta['files']} files, {meta['tokens']} tokens, {meta['seconds']} s -> {out}")
    return 0
