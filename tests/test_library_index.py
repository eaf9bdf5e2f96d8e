"""The library index (model.library_index): the backward suffix array, matches as a TokenCache
finds them, refusal of damaged or foreign indexes, the engine and ``diffill index`` using one."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest

from diffill.model.library_index import MIN_MATCH, LibraryIndex, backward_suffix_array, build_index, default_folder
from diffill.model.ngram import END, LONGEST, SPACED, TokenCache, continuation, fold_breaks, fold_spaces, line_bridge


def test_the_suffix_array_sorts_positions_on_the_tokens_before_them():
    rng = np.random.default_rng(0)
    for n, values in ((50, 3), (200, 2), (300, 6), (40, 60_000)):  # codes above n as well
        canon = rng.integers(0, values, size=n).astype(np.uint16)
        order = backward_suffix_array(canon, depth=16)

        def back(j):
            return [int(canon[j - k]) + 1 if j - k >= 0 else 0 for k in range(16)]

        keys = [back(int(j)) for j in order]
        assert keys == sorted(keys) and sorted(order.tolist()) == list(range(n))


@pytest.fixture(scope="module")
def streams(shipped_engine):
    from conftest import STDLIB, TINY_SOURCES

    tok = shipped_engine.tok
    return tok.encode_batch([(STDLIB / name).read_text(encoding="utf-8") for name in TINY_SOURCES[:6]])


@pytest.fixture(scope="module")
def index(shipped_engine, streams, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lib") / "index"
    meta = build_index(shipped_engine.tok, streams, folder, ["stdlib sample"])
    space = shipped_engine.tok.backend.token_to_id("\u0120")
    assert meta["files"] == len(streams)
    breaks = list(shipped_engine.tok.line_break_ids())

    def folded(ids):  # lone spaces folded into the next token, runs of line breaks into one
        ids = fold_spaces(np.asarray(ids), space)
        return fold_breaks(np.where(np.isin(ids & ~SPACED, breaks), END, ids))

    assert meta["tokens"] == sum(len(folded(s)) for s in streams)
    return folder


def test_matches_are_a_token_cache_s(shipped_engine, streams, index):
    tok = shipped_engine.tok
    lib, cache = LibraryIndex(index, tok), TokenCache.for_tokenizer(tok).extend(streams)
    assert len(cache) * 0.98 < len(lib) <= len(cache)
    rng = random.Random(0)
    for _ in range(300):
        s = rng.choice(streams)
        i = rng.randrange(1, len(s))
        ctx = list(s[max(0, i - 60) : i])
        if rng.random() < 0.3:  # a context the streams do not hold as it is
            ctx[-1 - rng.randrange(min(5, len(ctx)))] = rng.randrange(tok.vocab_size)
        raw, ctx = ctx, fold_breaks([t for t in cache.canonical(ctx).tolist() if t != cache.space]).tolist()[-LONGEST:]  # as ``continuation`` does
        m, counts = cache.match(ctx)
        if m < MIN_MATCH:  # the library's shorter matches are not copied from
            assert lib.match(ctx) == (0, {})
        elif sum(counts.values()) <= 4096:  # the index counts at most SAMPLE occurrences
            assert lib.match(ctx) == (m, counts)
            assert continuation((cache,), raw)[1] == continuation((TokenCache.for_tokenizer(tok), lib), raw)[1]


def test_damaged_or_foreign_indexes_are_refused(shipped_engine, index, tmp_path, tiny_checkpoint):
    import shutil

    from diffill.model.tokenizer import CodeTokenizer

    tok = shipped_engine.tok
    with pytest.raises(ValueError, match="not a library index"):
        LibraryIndex(tmp_path / "missing", tok)
    with pytest.raises(ValueError, match="another tokenizer"):
        LibraryIndex(index, CodeTokenizer.from_dir(tiny_checkpoint))
    broken = tmp_path / "broken"
    shutil.copytree(index, broken)
    np.save(broken / "suffixes.npy", np.load(broken / "suffixes.npy")[:-3])
    with pytest.raises(ValueError, match="do not fit together"):
        LibraryIndex(broken, tok)
    # arrays of the right types and lengths whose positions point past the tokens (a fill would
    # raise IndexError in the middle of a search)
    suffixes = np.load(index / "suffixes.npy")
    np.save(broken / "suffixes.npy", (suffixes + np.uint32(len(suffixes))).astype(np.uint32))
    with pytest.raises(ValueError, match="do not fit together"):
        LibraryIndex(broken, tok)
    buckets = np.load(index / "buckets.npy")
    np.save(broken / "suffixes.npy", suffixes)
    np.save(broken / "buckets.npy", buckets[::-1].copy())
    with pytest.raises(ValueError, match="do not fit together"):
        LibraryIndex(broken, tok)
    (broken / "tokens.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a library index"):
        LibraryIndex(broken, tok)


def test_the_engine_copies_from_a_library_and_says_which(shipped_engine, tmp_path, monkeypatch):
    from diffill.engine import Engine, InfillRequest
    from diffill.errors import DiffillError

    lib = "def first(parcels, cargo):\n    total = weigh_all(parcels, cargo.rate)\n"
    tok = shipped_engine.tok
    build_index(tok, [tok.encode(lib)], tmp_path / "index", ["test"])
    text = "def second(parcels, cargo):\n    total = \n    return total\n"
    hole = text.index("= ") + 2
    assert shipped_engine.library is None and shipped_engine.info()["library"] == "none"
    engine = Engine(replace(shipped_engine.config, library=str(tmp_path / "index")))
    assert engine.info()["library"] == str(tmp_path / "index")
    assert engine.infill(InfillRequest(text, hole, hole, path="b.py")).text == "weigh_all(parcels, cargo.rate)"
    assert shipped_engine.infill(InfillRequest(text, hole, hole, path="b.py")).text != "weigh_all(parcels, cargo.rate)"
    with pytest.raises(DiffillError, match="library index"):
        Engine(replace(shipped_engine.config, library=str(tmp_path / "nowhere")))
    # the default: used when built, nothing when not
    monkeypatch.setenv("DIFFILL_LIBRARY_INDEX", str(tmp_path / "index"))
    assert default_folder(tok) == tmp_path / "index"
    assert Engine(replace(shipped_engine.config, library="default")).library is not None
    monkeypatch.setenv("DIFFILL_LIBRARY_INDEX", str(tmp_path / "unbuilt"))
    assert Engine(replace(shipped_engine.config, library="default")).library is None
    # a damaged default is skipped (the model still serves); named, it is an error
    (tmp_path / "index" / "suffixes.npy").write_bytes(b"damaged")
    monkeypatch.setenv("DIFFILL_LIBRARY_INDEX", str(tmp_path / "index"))
    assert Engine(replace(shipped_engine.config, library="default")).library is None
    with pytest.raises(DiffillError, match="not a library index"):
        Engine(replace(shipped_engine.config, library=str(tmp_path / "index")))


def test_diffill_index_builds_from_a_corpus(shipped_engine, tmp_path, tiny_sources, capsys):
    from diffill.cli import main
    from diffill.model.loading import DEFAULT_CHECKPOINT

    corpus = tmp_path / "corpus"
    assert main(["corpus", "build", str(corpus), "--source", str(tiny_sources),
                 "--tokenizer", str(DEFAULT_CHECKPOINT)]) == 0
    capsys.readouterr()
    out = tmp_path / "index"
    assert main(["index", "--corpus", str(corpus), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert report["files"] == manifest["splits"]["train"]["files"]
    # less each file's <bos>, and the lone spaces folded into the next token
    assert 0.98 * manifest["splits"]["train"]["tokens"] < report["tokens"] < manifest["splits"]["train"]["tokens"]
    assert len(LibraryIndex(out, shipped_engine.tok)) == report["tokens"]
    assert main(["index", "--corpus", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["index", "--corpus", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    source = tmp_path / "a.py"
    source.write_text("def f(x):\n    return x\n")
    assert main(["infill", str(source), "--at", "2:5", "--library", str(tmp_path / "nowhere")]) == 2
    assert "library index" in capsys.readouterr().err
    assert main(["infill", str(source), "--at", "2:5", "--library", str(out)]) == 0


def _bridge_index(tok, folder, middles):
    files = [f"def f{i}(cargo):\n    rate = cargo.rate\n    {m}\n    return total\n" for i, m in enumerate(middles)]
    files.append("def g(cargo):\n    rate = cargo.rate\n    other = 1\n    print(other)\n")  # another next line
    build_index(tok, tok.encode_batch(files), folder, ["test"])
    return LibraryIndex(folder, tok)


def test_a_line_is_bridged_when_most_places_with_both_neighbours_agree(shipped_engine, tmp_path):
    from diffill.model.ngram import END

    tok = shipped_engine.tok
    doc = TokenCache.for_tokenizer(tok)
    line = "total = weigh_all(parcels, rate)"
    before = doc.canonical(tok.encode("def h(cargo):\n    rate = cargo.rate\n    ")).tolist()
    before = [t for t in before if t != doc.space]
    after = doc.canonical(tok.encode("\n    return total\n")).tolist()
    assert after[0] == END
    agree = _bridge_index(tok, tmp_path / "a", [line, line, "total = 0"])
    assert agree.bridge(before, after, 24)[1:] == (2, 3)  # two places of three have it
    prefix, suffix = "def h(cargo):\n    rate = cargo.rate\n    ", "\n    return total\n"
    bridged = line_bridge((TokenCache.for_tokenizer(tok), agree), tok.encode(prefix), tok.encode(suffix), 24)
    assert tok.decode(bridged) == line
    assert agree.bridge(before, after, 3) is None  # the line does not fit in 3 tokens
    assert agree.bridge(before, doc.canonical(tok.encode(" # no line break\n")).tolist(), 24) is None
    split = _bridge_index(tok, tmp_path / "b", [line, "total = 0", "total = 1"])
    assert split.bridge(before, after, 24) is None  # one place in three: no agreement
    tie = _bridge_index(tok, tmp_path / "c", [line, "total = weigh_all(parcels,rate)"])
    assert tie.bridge(before, after, 24) is None  # one place each: a tie is no agreement either


def test_the_engine_fills_a_bridged_line_without_a_forward_pass(shipped_engine, tmp_path):
    from diffill.engine import Engine, InfillRequest

    line = "total = weigh_all(parcels, rate)"
    _bridge_index(shipped_engine.tok, tmp_path / "index", [line, line])
    engine = Engine(replace(shipped_engine.config, library=str(tmp_path / "index")))
    text = "def h(cargo):\n    rate = cargo.rate\n    \n    return total\n"
    hole = text.index("rate\n") + 9
    filled = engine.infill(InfillRequest(text, hole, hole, path="h.py", multiline=False))
    assert filled.text == line and filled.forward_passes == 0
    assert shipped_engine.infill(InfillRequest(text, hole, hole, path="h.py", multiline=False)).forward_passes > 0


def test_a_line_is_bridged_from_the_next_lines_when_the_lines_before_are_new(shipped_engine, tmp_path):
    """No place has the line before the hole; where the next two or three lines occur, the line
    before them (past blank lines) is the fill when most places agree and it starts as the hole's
    line does."""
    tok = shipped_engine.tok
    line = "total = weigh_all(parcels, rate)"

    def index(folder, middles):
        files = [f"def f{i}(cargo):\n    x{i} = {i}\n    {m}\n\n    print(total)\n    return total\n"
                 for i, m in enumerate(middles)]
        build_index(tok, tok.encode_batch(files), folder, ["test"])
        return LibraryIndex(folder, tok)

    def fill(idx, prefix, suffix="\n    print(total)\n    return total\n"):
        found = line_bridge((TokenCache.for_tokenizer(tok), idx), tok.encode(prefix), tok.encode(suffix), 24)
        return None if found is None else tok.decode(found)

    new = "def h(cargo):\n    zz = 5\n    "  # a line before that no place has
    agree = index(tmp_path / "a", [line, line, "total = 0"])
    assert fill(agree, new) == line
    assert fill(agree, new + "total = ") == "weigh_all(parcels, rate)"  # the rest of the hole's line
    assert fill(agree, new + "count = ") is None  # the places' line does not start as the hole's
    assert fill(agree, new, "\n    return total\n") is None  # one next line alone says too little
    assert fill(index(tmp_path / "b", [line, "total = 0", "total = 1"]), new) is None  # no agreement


def test_a_hole_after_a_blank_line_is_bridged_as_its_file_has_it(shipped_engine, tmp_path):
    """A prefix that ends in a blank line ends in one token ("\\n\\n"), where the same text inside a
    file is two ("\\n", "\\n"): runs of line breaks are matched as one, so the places still match."""
    tok = shipped_engine.tok
    prefix = "from pyperf import Runner\nfrom jsonschema import Validator\n\n"
    line, suffix = "schema = Validator.SCHEMA", "\nprint(schema)\n"  # one next line: no bridge from the next lines
    files = [prefix + line + suffix] * 2
    breaks = tok.line_break_ids()
    assert sum(t in breaks for t in tok.encode(prefix)) < sum(t in breaks for t in tok.encode(files[0][: len(prefix) + 1]))
    build_index(tok, tok.encode_batch(files), tmp_path / "index", ["test"])
    found = line_bridge((TokenCache.for_tokenizer(tok), LibraryIndex(tmp_path / "index", tok)),
                        tok.encode(prefix), tok.encode(suffix), 24)
    assert found is not None and tok.decode(found) == line
