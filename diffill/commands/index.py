"""``diffill index [--corpus DIR] [--out PATH] [--json]``: the library index fills copy from."""

from __future__ import annotations

import json
import time
from pathlib import Path

from diffill.commands.common import path_text


def register(sub) -> None:
    p = sub.add_parser("index", help="build the library index fills copy from (model/library_index.py)")
    p.add_argument("--corpus", default=None, metavar="DIR",
                   help="index this corpus's training split (default: this interpreter's standard library and "
                        "site-packages, the files the content-hash split trains on)")
    p.add_argument("--model", type=path_text, default=None, metavar="PATH",
                   help="the model whose tokenizer the index is for (default: the shipped model)")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="output folder (default: where the engine looks, $DIFFILL_LIBRARY_INDEX or the user's "
                        "cache folder)")
    p.add_argument("--unless-built", action="store_true",
                   help="do nothing when the output folder already holds an index for this tokenizer")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)


def _corpus_streams(corpus: Path, tok):
    from diffill.model.corpus import file_streams, load_tokens

    from diffill.errors import DiffillError

    if not corpus.is_dir():
        raise DiffillError(f"--corpus {corpus}: no such folder")
    manifest = corpus / "manifest.json"
    if not manifest.is_file():
        raise DiffillError(f"--corpus {corpus}: no manifest.json there (build one with `diffill corpus build`)")
    return file_streams(load_tokens(corpus, "train"), tok.bos_id), [f"{corpus} (training split)"]


def _library_streams(tok, chunk: int = 256):
    """This interpreter's library files that the content-hash split trains on, tokenized a chunk of
    files at a time (kept as uint16: a whole library's token lists would take gigabytes)."""
    import numpy as np

    from diffill.model.corpus import collect, default_roots, is_heldout

    roots = default_roots()

    def streams():
        texts = []
        for f in collect(roots, processes=2):
            if not is_heldout(f.text):
                texts.append(f.text)
            if len(texts) == chunk:
                yield from (np.asarray(ids, dtype=np.uint16) for ids in tok.encode_batch(texts))
                texts = []
        yield from (np.asarray(ids, dtype=np.uint16) for ids in tok.encode_batch(texts))

    return streams(), [str(r) for r in roots]


def run(args) -> int:
    from diffill.errors import DiffillError
    from diffill.model.library_index import LibraryIndex, build_index, default_folder
    from diffill.model.loading import DEFAULT_CHECKPOINT
    from diffill.model.tokenizer import CodeTokenizer

    model = Path(args.model) if args.model else DEFAULT_CHECKPOINT
    if not (model / "tokenizer.json").is_file():
        raise DiffillError(f"{model}: no tokenizer.json there (pass --model CHECKPOINT)")
    tok = CodeTokenizer.from_dir(model)
    out = Path(args.out) if args.out else default_folder(tok)
    if out is None:
        raise DiffillError("DIFFILL_LIBRARY_INDEX is 'none': pass --out PATH")
    if args.unless_built and (out / "index.json").is_file():
        try:
            meta = {**LibraryIndex(out, tok).meta, "folder": str(out), "seconds": 0.0}
        except ValueError as e:
            print(f"rebuilding the library index: {e}")
        else:
            print(json.dumps(meta) if args.json else f"library index: already built ({meta['files']} files, "
                  f"{meta['tokens']} tokens) at {out}")
            return 0
    t0 = time.perf_counter()
    streams, sources = _corpus_streams(Path(args.corpus), tok) if args.corpus else _library_streams(tok)
    try:
        meta = build_index(tok, streams, out, sources)
    except ValueError as e:
        raise DiffillError(f"no source files to index ({e})") from e
    except OSError as e:
        raise DiffillError(f"cannot write the library index to {out}: {e}") from e
    meta = {**meta, "folder": str(out), "seconds": round(time.perf_counter() - t0, 1)}
    if args.json:
        print(json.dumps(meta))
    else:
        print(f"library index: {meta['files']} files, {meta['tokens']} tokens, {meta['seconds']} s -> {out}")
    return 0
