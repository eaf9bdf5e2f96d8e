"""The token caches fills copy from (model.ngram): longest matches, blind to indentation,
never the context's own end; the mixing weight; save and load; the engine copying a line."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from diffill.model.ngram import END, MIN_MATCH, SEP, WEIGHT, TokenCache, continuation

BREAKS = frozenset({90, 91})  # two line-break tokens: a newline with two indentations
SPACED = {50: 5}  # token 50 is " x", token 5 is "x"


def cache(*streams) -> TokenCache:
    return TokenCache(BREAKS, SPACED).extend(streams)


def test_the_longest_match_decides_and_counts_what_follows():
    c = cache([1, 2, 3, 4, 7], [9, 2, 3, 4, 8], [3, 4, 8])
    assert c.match([1, 2, 3, 4]) == (4, {7: 1})
    m, counts = c.match([6, 2, 3, 4])  # only "2 3 4" matches: what follows it in both streams
    assert m == 3 and counts == {7: 1, 8: 1}
    assert c.match([6]) == (0, {})


def test_matching_is_blind_to_indentation_and_to_a_line_s_leading_space():
    c = cache([1, 2, 90, 50, 6, 90, 3])  # "1 2 <newline, indented> x 6 <newline> 3"
    # the hole's side: another indentation, and the line's first token without its space
    m, counts = c.match(c.canonical([1, 2, 91, 5]).tolist())
    assert m == 4 and counts == {6: 1}
    assert c.match(c.canonical([2, 91, 5, 6]).tolist()) == (4, {END: 1})  # a line break is END


def test_the_context_s_own_end_is_not_a_match():
    prefix = [1, 2, 3, 4, 5]
    c = cache(prefix, [3, 4, 5, 6])  # the document's prefix is a stream of its own
    assert c.match(prefix) == (3, {6: 1})


def test_continuation_needs_min_match_tokens_and_weighs_longer_matches_more():
    c = cache(list(range(10, 40)))
    assert continuation([c], [20, 21]) == ({}, 0.0)
    short, lam_short = continuation([c], list(range(10, 10 + MIN_MATCH)))
    long, lam_long = continuation([c], list(range(10, 30)))
    assert short == {10 + MIN_MATCH: 1.0} and long == {30: 1.0}
    assert 0 < lam_short < lam_long < WEIGHT


def test_a_line_s_first_token_comes_without_its_space():
    c = cache([1, 2, 3, 90, 50, 6])
    dist, _ = continuation([c], [1, 2, 3, 91])
    assert dist == {5: 1.0}  # " x" after the indentation becomes "x": the hole starts after it


def test_caches_pool_the_counts_of_equally_long_matches():
    a, b = cache([1, 2, 3, 4, 7]), cache([1, 2, 3, 4, 8], [0, 1, 2, 3, 4, 9])
    dist, _ = continuation([a, b], [1, 2, 3, 4])
    assert dist == pytest.approx({7: 1 / 3, 8: 1 / 3, 9: 1 / 3})  # three places, two caches
    dist, _ = continuation([a, b], [0, 1, 2, 3, 4])
    assert dist == {9: 1.0}


def test_save_and_load_keep_the_streams(tmp_path, shipped_engine):
    tok = shipped_engine.tok
    c = TokenCache.for_tokenizer(tok).extend(tok.encode_batch(["def f(x):\n    return x\n", "y = 1\n"]))
    c.save(tmp_path / "t.npy")
    back = TokenCache.load(tmp_path / "t.npy", tok)
    assert len(back) == len(c) and [p.tolist() for p in back._parts] == [p.tolist() for p in c._parts]
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="not a token cache"):
        TokenCache.load(tmp_path / "bad.npy", tok)
    np.save(tmp_path / "ids.npy", np.array([1, 2, tok.vocab_size + 5, SEP], dtype=np.int32))
    with pytest.raises(ValueError, match="not a token cache"):
        TokenCache.load(tmp_path / "ids.npy", tok)


def test_the_engine_copies_a_line_from_elsewhere_in_the_document(shipped_engine):
    from diffill.engine import Engine, InfillRequest

    body = "    total = weigh_all(parcels, cargo.rate)\n    return total\n"
    text = f"def first(parcels, cargo):\n{body}\n\ndef second(parcels, cargo):\n    total = "
    hole = len(text)  # code before the cursor on its line: a one-line hole
    text += "\n    return total\n"
    filled = shipped_engine.infill(InfillRequest(text, hole, hole, path="a.py"))
    assert filled.text == "weigh_all(parcels, cargo.rate)"
    alone = Engine(replace(shipped_engine.config, copy=False))
    assert alone.infill(InfillRequest(text, hole, hole, path="a.py")).text != filled.text


def test_the_engine_copies_from_an_indexed_workspace(shipped_engine, tmp_path):
    from diffill.engine import Engine, InfillRequest

    lib = "def first(parcels, cargo):\n    total = weigh_all(parcels, cargo.rate)\n"
    (tmp_path / "lib.py").write_text(lib)
    (tmp_path / "notes.txt").write_text("not source\n")
    engine = Engine(replace(shipped_engine.config))
    text = "def second(parcels, cargo):\n    total = \n    return total\n"
    hole = text.index("= ") + 2
    before = engine.infill(InfillRequest(text, hole, hole, path="b.py")).text
    indexed = engine.index_workspace([str(tmp_path), str(tmp_path / "missing")])  # a missing folder is skipped
    assert indexed == {"files": 1, "tokens": len(engine.tok.encode(lib))}
    assert engine.infill(InfillRequest(text, hole, hole, path="b.py")).text == "weigh_all(parcels, cargo.rate)" != before
    # the file being edited is left out of the workspace's streams: its saved copy would only give
    # back the selection being regenerated
    own = "def second(parcels, cargo):\n    total = weigh_all(parcels, cargo.rate)\n    return total\n"
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "b.py").write_text(own)
    engine.index_workspace([str(tmp_path / "ws")])
    start = own.index("weigh_all")
    end = own.index("\n", start)
    assert engine.infill(InfillRequest(own, start, end, path=str(tmp_path / "c.py"))).text == own[start:end]
    assert engine.infill(InfillRequest(own, start, end, path=str(tmp_path / "ws" / "b.py"))).text != own[start:end]
    assert engine.index_workspace([]) == {"files": 0, "tokens": 0} and engine.workspace is None


def test_the_workspace_copy_follows_files_changed_on_disk(shipped_engine, tmp_path):
    """A saved change, a new file and a deleted one reach the workspace index through
    ``refresh_workspace``: fills copy the line as it is now, not as it was."""
    from diffill.engine import Engine, InfillRequest

    lib = tmp_path / "lib.py"
    lib.write_text("def first(parcels, cargo):\n    total = weigh_all(parcels, cargo.rate)\n")
    engine = Engine(replace(shipped_engine.config))
    assert engine.refresh_workspace([str(lib)]) is None  # no workspace indexed yet
    engine.index_workspace([str(tmp_path)])
    text = "def second(parcels, cargo):\n    total = \n    return total\n"
    hole = text.index("= ") + 2
    assert engine.infill(InfillRequest(text, hole, hole, path="b.py")).text == "weigh_all(parcels, cargo.rate)"
    lib.write_text("def first(parcels, cargo):\n    total = measure_each(parcels, cargo.rate)\n")
    assert engine.refresh_workspace([str(lib)])["updated"] == 1
    assert engine.infill(InfillRequest(text, hole, hole, path="b.py")).text == "measure_each(parcels, cargo.rate)"
    lib.unlink()
    (tmp_path / "new.py").write_text("def third(parcels, cargo):\n    total = count_up(parcels, cargo.rate)\n")
    (tmp_path / "skip.txt").write_text("total = nothing\n")
    outside = tmp_path.parent / "elsewhere.py"
    outside.write_text("x = 1\n")
    done = engine.refresh_workspace([str(lib), str(tmp_path / "new.py"), str(tmp_path / "skip.txt"), str(outside)])
    assert (done["removed"], done["added"], done["updated"], done["files"]) == (1, 1, 0, 1)
    assert engine.infill(InfillRequest(text, hole, hole, path="b.py")).text == "count_up(parcels, cargo.rate)"


def test_runs_of_line_breaks_match_as_one():
    # a file's "x 6 <nl> <nl> 3 4": its blank line tokenized as two line breaks, a prefix's as one
    c = cache([1, 2, 5, 6, 90, 91, 3, 4])
    assert c.match(c.canonical([1, 2, 5, 6, 90]).tolist()) == (5, {3: 1})
    dist, _ = continuation([c], [1, 2, 5, 6, 91, 90])
    assert dist == {3: 1.0}


def test_a_line_is_bridged_from_the_document_s_own_repeated_code(shipped_engine):
    from diffill.model.ngram import hole_caches, line_bridge

    tok = shipped_engine.tok

    def bridged(bodies, prefix_body="    x = self.load()\n    ", suffix="\n    return x\n"):
        text = "".join(f"def f{i}(self):\n    x = self.load()\n    {b}\n    return x\n\n" for i, b in enumerate(bodies))
        prefix = text + "def g(self):\n" + prefix_body
        found = line_bridge(hole_caches(tok, prefix, suffix), tok.encode(prefix), tok.encode(suffix), 24)
        return None if found is None else tok.decode(found)

    assert bridged(["self.check(x)", "self.check(x)"]) == "self.check(x)"
    assert bridged(["self.check(x)", "self.check(x)", "self.audit(x)"]) == "self.check(x)"  # two places of three
    assert bridged(["self.check(x)", "self.audit(x)"]) is None  # a tie is no agreement
    assert bridged(["self.check(x)", "self.check(x)"], suffix="\n    return y\n") is None  # another next line
    assert bridged(["self.check(x)"] * 2, prefix_body="    x = self.load()\n    self.") == "check(x)"  # the rest of the line


def test_a_workspace_bridges_from_its_other_files_only(shipped_engine):
    """A repository's cache bridges too; the document's own saved copy is left out (``Without``)."""
    from diffill.model.ngram import Without, hole_caches, line_bridge

    tok = shipped_engine.tok
    prefix, suffix = "def g(self):\n    x = self.load()\n    ", "\n    return x\n"
    saved = prefix + "self.audit(x)" + suffix
    other = "def f(self):\n    x = self.load()\n    self.check(x)\n    return x\n"
    workspace = TokenCache.for_tokenizer(tok).extend([tok.encode(saved), tok.encode(other)])

    def bridged(repo):
        found = line_bridge(hole_caches(tok, prefix, suffix, (repo,)), tok.encode(prefix), tok.encode(suffix), 24)
        return None if found is None else tok.decode(found)

    assert bridged(Without(workspace, 0)) == "self.check(x)"
    assert bridged(Without(workspace, 1)) == "self.audit(x)"
    assert bridged(workspace) is None  # the two files disagree


def test_the_document_bridges_from_its_next_lines_when_the_lines_before_are_new(shipped_engine):
    from diffill.model.ngram import hole_caches, line_bridge

    tok = shipped_engine.tok
    suffix = "\n    self.save(x)\n    return x\n"

    def bridged(bodies, prefix_body="    zz = 5\n    "):
        text = "".join(f"def f{i}(self):\n    x{i} = {i}\n    {b}\n    self.save(x)\n    return x\n\n"
                       for i, b in enumerate(bodies))
        prefix = text + "def g(self):\n" + prefix_body
        found = line_bridge(hole_caches(tok, prefix, suffix), tok.encode(prefix), tok.encode(suffix), 24)
        return None if found is None else tok.decode(found)

    assert bridged(["x = self.check()", "x = self.check()"]) == "x = self.check()"
    assert bridged(["x = self.check()", "x = self.check()"], "    zz = 5\n    x = ") == "self.check()"
    assert bridged(["x = self.check()", "x = self.check()"], "    zz = 5\n    y = ") is None  # starts otherwise
    assert bridged(["x = self.check()", "x = self.audit()"]) is None  # a tie


def test_a_cursor_on_a_blank_line_gets_the_line_both_sides_bridge(shipped_engine):
    """A blank line between two lines is filled by threshold decoding, which has no bridges: the
    engine asks the caches first, from both sides only (the next lines alone would give the last
    line of a missing block)."""
    from diffill.engine import Engine, InfillRequest

    engine = Engine(replace(shipped_engine.config, library="none"))
    body = "def f{i}(self):\n    x = self.load()\n    self.check(x)\n    return x\n\n"
    text = "".join(body.format(i=i) for i in range(2)) + "def g(self):\n    x = self.load()\n    \n    return x\n"
    at = text.rindex("    \n") + 4  # after the blank line's indentation
    filled = engine.infill(InfillRequest(text, at, at, path="a.py"))
    assert filled.multiline and filled.text == "self.check(x)" and filled.forward_passes == 0
    # at the start of a line inside a block the indentation is unknown: decoded as before
    assert engine.infill(InfillRequest(text, at - 4, at - 4, path="a.py")).forward_passes > 0
    # a new line before the next lines that the document has elsewhere after another line: not bridged
    other = "".join(body.format(i=i) for i in range(2)) + "def g(self):\n    y = 2\n    \n    self.check(x)\n    return x\n"
    at = other.rindex("    \n    self.check") + 4
    assert engine.infill(InfillRequest(other, at, at, path="a.py")).forward_passes > 0
