"""The syntax constraint inside the sampler, and the engine's repair / truncate / drop path."""

from __future__ import annotations

import logging
import math
import sysconfig
from functools import partial
from pathlib import Path

import pytest
import torch

from diffill.engine import Engine, EngineConfig, InfillRequest
from diffill.postprocess import HoleContext, postprocess
from diffill.syntax import ensure_valid, guard_for
from diffill.grammar.constraint import RowConstraints, SyntaxConstraint, Verdict, slots_in_errors, token_bytes
from diffill.grammar.registry import grammar
from diffill.grammar.validity import HoleChecker
from diffill.model.decoders import Decoder
from diffill.model.decoding import Request, SamplerConfig

PAD, MASK, EOI, BOS = 0, 1, 2, 3
PIECES = [b"", b"", b"", b"", b"x", b" +", b" 1", b")", b"(", b"2", b" 3", b" 4", b"\n    ", b"y", b" ="]
TOK = {p.decode(): i for i, p in enumerate(PIECES) if p}
V = len(PIECES)


class RankedBackend:
    """A fake model: at slot i it wants ``script[i]`` (token ids, best first, probabilities
    0.95, 0.04, ...); past the script it wants <eoi>."""

    mask_id, eoi_id, shifted = MASK, EOI, False
    banned_ids = [PAD, MASK, BOS]

    def __init__(self, script):
        self.script = script

    def prepare(self, prefixes, suffixes, length, cache=False, refresh=0):
        return None

    def logits(self, state, canvas, slots=None):
        b, length = canvas.shape
        out = torch.full((b, length, V), -30.0)
        for i in range(length):
            ranked = self.script[i] if i < len(self.script) else [EOI]
            for rank, t in enumerate(ranked):
                out[:, i, t] = math.log(0.95 if rank == 0 else 0.04 / rank)
        if slots is not None:
            out = out.gather(1, slots[..., None].expand(-1, -1, V))
        return out


def python_hole(doc: str) -> SyntaxConstraint:
    prefix, suffix = doc.split("<|>")
    return SyntaxConstraint(HoleChecker(grammar("python"), prefix, suffix), PIECES, MASK, EOI)


def sample(script, constraint=None, length=6):
    (out,) = Decoder(RankedBackend(script), SamplerConfig()).sample(
        [Request([], [])], length, constraint=RowConstraints({0: constraint}) if constraint else None)
    return b"".join(PIECES[t] for t in out.tokens).decode()


def ranked(*names):
    return [TOK.get(n, EOI) if n != "<eoi>" else EOI for n in names]


def test_the_constraint_keeps_the_refined_canvas_valid():
    doc = "def f(x):\n    return <|>\n"
    script = [ranked("x", "y"), ranked(" +", "<eoi>")]
    assert sample(script) == "x +"  # what the model wants is broken
    c = python_hole(doc)
    got = sample(script, c)
    assert c.checker.is_valid(got) and got
    assert c.checks > 0


def test_mid_edit_documents_with_errors_outside_the_hole_are_left_alone():
    doc = "def broken(:\n    pass\n\n\ndef f(x):\n    return <|>\n\n\nitems = [1, 2]]\n"
    assert grammar("python").parser().parse(doc.replace("<|>", "x").encode()).root_node.has_error
    script = [ranked("x", "y"), ranked(" +", "<eoi>"), ranked(" 1", "<eoi>")]
    c = python_hole(doc)
    assert sample(script, c) == sample(script) == "x + 1"


def test_a_hole_whose_only_valid_fill_is_short():
    c = python_hole("value = 1<|>\nprint(value)\n")
    script = [ranked("2", "<eoi>"), ranked(" 3", "<eoi>"), ranked(" 4", "<eoi>")]
    assert sample(script) == "2 3 4"
    got = sample(script, c)
    assert got == "2" and c.checker.is_valid(got)


def test_the_last_slot_of_an_error_is_blamed():
    c = python_hole("def f(x):\n    return <|>\n")
    x, plus, close, one = TOK["x"], TOK[" +"], TOK[")"], TOK[" 1"]
    # a proposal at the error is banned; an earlier proposal in the same error is only held
    verdict = c.check(0, [x, close, EOI, EOI], [False, False, False, False], [True, True, False, False])
    assert isinstance(verdict, Verdict)
    assert verdict.ban == {1} and verdict.hold <= {0} and not verdict.remask
    # an error that runs past the fill blames the <eoi> that ended it too early
    early = c.check(0, [x, plus, EOI, EOI], [True, True, False, False], [False, False, True, False])
    assert early.ban == {2}
    assert not c.check(0, [x, plus, one, EOI], [True, True, False, False], [False, False, True, False]).ban


def test_proposals_held_only_by_later_open_guesses_go_through():
    c = python_hole("def f(x):\n    return <|>\n")
    x, close = TOK["x"], TOK[")"]
    # the error is at slot 1, an open guess; slot 0 is the only proposal: it is committed, not
    # banned (the guess after it changes once it is), so left-to-right decoding moves on
    verdict = c.check(0, [x, close, EOI, EOI], [False, False, False, False], [True, False, False, False])
    assert verdict == Verdict(set(), set(), set())


def test_a_committed_token_at_an_error_with_no_open_guess_is_remasked():
    c = python_hole("def f(x):\n    return <|>\n")
    x, close, one = TOK["x"], TOK[")"], TOK[" 1"]
    verdict = c.check(0, [x, close, one, EOI], [True, True, False, False], [False, False, True, False])
    assert 1 in verdict.remask and 0 not in verdict.remask


def test_sampling_repairs_a_committed_error_inside_the_loop():
    # slot 1 is committed first (very confident) and is wrong; the loop must undo it
    c = python_hole("def f(x):\n    return <|>\n")
    script = [ranked("x", "y"), ranked(")", " +", "<eoi>"), ranked(" 1", "<eoi>")]
    got = sample(script, c)
    assert c.checker.is_valid(got) and ")" not in got


def test_repair_resamples_with_the_error_tokens_banned():
    guard = guard_for("def f(x):\n    return \n", 21, 21, _FakeTok(), path="a.py")
    seen = []

    def resample(bans):
        seen.append({k: set(v) for k, v in bans.items()})
        return [TOK["x"], TOK[" +"], TOK[" 1"]], "x + 1"

    text = ensure_valid(guard, [TOK["x"], TOK[" +"]], "x +", resample, repairs=2)
    assert text == "x + 1" and guard.outcome == "repaired"
    assert seen and any(TOK[" +"] in ids for ids in seen[0].values())


def test_errors_of_a_post_processed_fill_are_blamed_on_the_right_token():
    doc = "def f(x):\n    y = \n"
    guard = guard_for(doc, len("def f(x):\n    y = "), len("def f(x):\n    y = "), _FakeTok(), path="a.py")
    tokens = [TOK[" 1"], TOK[")"]]  # rendered " 1)", delivered "1)" (no double space after "= ")
    assert slots_in_errors(guard.constraint, tokens, b"1)") == [1]
    assert slots_in_errors(guard.constraint, tokens) == [1]


def test_truncation_keeps_the_longest_valid_prefix_at_a_line_boundary_then_nothing():
    doc = "def f(xs):\n    s = 0\n    \n    return s\n"
    at = doc.index("    \n") + 4
    guard = guard_for(doc, at, at, _FakeTok(), language="python")
    failing = lambda bans: ([TOK["("]], "s = (")  # noqa: E731 - a repair that fails again
    assert ensure_valid(guard, [TOK["y"]], "s += 1\n    s = (s", failing, repairs=1) == "s += 1"
    assert guard.outcome == "truncated"
    assert ensure_valid(guard, [TOK["("]], "s = (", None, repairs=0) == ""
    assert guard.outcome == "empty"
    assert ensure_valid(guard, [TOK["y"]], "s += 1", None, repairs=0) == "s += 1"
    assert guard.outcome == "valid"


class _FakeTok:
    mask_id, eoi_id, vocab_size = MASK, EOI, V
    special_ids = frozenset((PAD, MASK, EOI, BOS))


@pytest.fixture(autouse=True)
def _fake_token_bytes(monkeypatch):
    import diffill.syntax

    real = token_bytes
    monkeypatch.setattr(diffill.syntax, "token_bytes",
                        lambda tok: PIECES if isinstance(tok, _FakeTok) else real(tok))


def test_token_bytes_concatenate_to_the_decoded_text(tiny_engine):
    tok = tiny_engine.tok
    text = "def naïve(x):\n    return x  # é → ü\n"
    ids = tok.encode(text)
    pieces = token_bytes(tok)
    assert b"".join(pieces[i] for i in ids).decode() == tok.decode(ids) == text
    assert pieces[tok.mask_id] == pieces[tok.eoi_id] == b""


def test_each_tokenizer_gets_its_own_byte_table(tiny_checkpoint):
    """A table is never another tokenizer's, even one that lived at the same address before."""
    from conftest import SHIPPED
    from diffill.model.tokenizer import CodeTokenizer, load_tokenizer

    tiny_hf, shipped_hf = load_tokenizer(tiny_checkpoint), load_tokenizer(SHIPPED)
    for _ in range(3):  # a freed tokenizer's address is soon taken by the next one made
        tiny = CodeTokenizer(tiny_hf)
        assert len(token_bytes(tiny)) == tiny.vocab_size
        del tiny
        shipped = CodeTokenizer(shipped_hf)
        assert len(token_bytes(shipped)) == shipped.vocab_size
        del shipped


def _holes(n):
    text = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    lines = text.split("\n")
    out, pos = [], 0
    for i, line in enumerate(lines):
        if line.strip() and i % 7 == 0 and len(out) < n:
            indent = len(line) - len(line.lstrip())
            start = pos + indent
            out.append(InfillRequest(text, start, start + len(line.strip()), path="textwrap.py",
                                     max_tokens=8 + 4 * (i % 3), multiline=bool(i % 2)))
        pos += len(line) + 1
    return text, out


@pytest.fixture(scope="module")
def free_engine(tiny_checkpoint):
    return Engine(EngineConfig(model=str(tiny_checkpoint), constrained=False, adapter=None))


def test_constrained_engine_results_are_always_valid_on_a_random_model(tiny_engine, free_engine):
    text, reqs = _holes(24)
    constrained = tiny_engine.infill_many(reqs)
    free = free_engine.infill_many(reqs)
    invalid_free = 0
    for r, c, f in zip(reqs, constrained, free):
        check = HoleChecker(grammar("python"), text[: r.start], text[r.end :])
        assert check.is_valid(c.text), (c.raw, c.text)
        assert c.syntax in ("valid", "repaired", "truncated", "empty") and f.syntax == "unconstrained"
        invalid_free += not check.is_valid(f.text)
    assert invalid_free > 0  # the random model alone does break the code


def test_unknown_language_is_filled_unconstrained_with_a_notice(tiny_engine, caplog):
    with caplog.at_level(logging.WARNING, logger="diffill.grammar.registry"):
        r = tiny_engine.infill(InfillRequest("a b c\n", 2, 2, path="notes.zzz-unknown", max_tokens=4))
    assert isinstance(r.text, str)
    assert any("zzz-unknown" in rec.getMessage() for rec in caplog.records)


def test_no_constraint_flag_turns_the_constraint_off(monkeypatch, tmp_path):
    import diffill.engine
    from diffill.cli import main

    seen = []

    class Spy:
        def __init__(self, config):
            seen.append(config)
            raise diffill.engine.DiffillError("stop here")

    monkeypatch.setattr(diffill.engine, "Engine", Spy)
    f = tmp_path / "a.py"
    f.write_text("x = 1\n")
    assert main(["infill", str(f), "--at", "1:5", "--no-constraint"]) == 2
    assert main(["infill", str(f), "--at", "1:5"]) == 2
    assert [c.constrained for c in seen] == [False, True]


def test_a_document_too_large_to_reparse_at_every_step_is_filled_unconstrained(monkeypatch, caplog):
    import diffill.syntax

    doc = "x = [" + "1, " * 100 + "]\ny = \n"
    at = doc.index("y = ") + 4
    assert guard_for(doc, at, at, _FakeTok(), language="python") is not None
    monkeypatch.setattr(diffill.syntax, "MAX_CHECKED_CHARS", len(doc) - 1)
    with caplog.at_level(logging.WARNING):
        assert guard_for(doc, at, at, _FakeTok(), language="python") is None
    assert "without the syntax constraint" in caplog.text


def test_beam_search_judges_a_whole_fill_as_the_user_gets_it():
    """The likeliest fill repeats the ``)`` after the cursor: post-processing drops the repeat, so
    it is valid and must not lose to a less likely fill (the constraint used to cost exact matches)."""
    script = [ranked("x", "y"), ranked(")", "<eoi>")]

    class Rows:  # beam search copies the backend's state per candidate; this one holds nothing
        def take(self, rows):
            return self

    class Backend(RankedBackend):
        def prepare(self, prefixes, suffixes, length, cache=False, refresh=0):
            return Rows()

    def beam(constraint):
        (out,) = Decoder(Backend(script), SamplerConfig(beam=3)).sample(
            [Request([], [])], 6, constraint=RowConstraints({0: constraint}))
        return b"".join(PIECES[t] for t in out.tokens).decode()

    raw = python_hole("f(<|>)\n")
    assert beam(raw) == "x"  # "x)" judged raw: f(x)) is broken
    finished = python_hole("f(<|>)\n")
    finished.finish = partial(postprocess, ctx=HoleContext("f(", ")\n", multiline=False))
    assert beam(finished) == "x)"  # post-processed to "x": f(x)
    assert finished.accepts(ranked("x", ")")) and not raw.accepts(ranked("x", ")"))
