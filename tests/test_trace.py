"""``--trace``: masks as a placeholder, fresh tokens highlighted on colour terminals, the threshold."""

from __future__ import annotations

import io

from diffill.cli import main
from diffill.trace import FRESH, MASK_GLYPH, RESET, TracePrinter, colour_wanted
from diffill.model.sampler import StepTrace
from diffill.model.tokenizer import CodeTokenizer, load_tokenizer


def _tok(tiny_corpus) -> CodeTokenizer:
    return CodeTokenizer(load_tokenizer(tiny_corpus / "tokenizer"))


def test_masks_show_as_a_placeholder_and_the_end_is_hidden(tiny_corpus):
    tok = _tok(tiny_corpus)
    ids = tok.encode("return x")
    canvas = [tok.mask_id] + ids + [tok.mask_id, tok.eoi_id, tok.eoi_id]
    trace = StepTrace(2, [canvas], [[1]], 0.9)
    text = TracePrinter(tok, io.StringIO(), colour=False).render(trace)
    assert text == MASK_GLYPH + "return x" + MASK_GLYPH


def test_fresh_tokens_are_highlighted_only_with_colour(tiny_corpus):
    tok = _tok(tiny_corpus)
    old, new = tok.encode("x = "), tok.encode("42")
    trace = StepTrace(3, [old + new + [tok.mask_id]], [list(range(len(old), len(old) + len(new)))], 0.8)
    coloured = TracePrinter(tok, io.StringIO(), colour=True).render(trace)
    assert coloured == f"x = {FRESH}42{RESET}{MASK_GLYPH}"
    plain = TracePrinter(tok, io.StringIO(), colour=False).render(trace)
    assert plain == f"x = 42{MASK_GLYPH}" and "\x1b" not in plain


def test_each_step_prints_its_threshold_and_counts(tiny_corpus):
    tok = _tok(tiny_corpus)
    out = io.StringIO()
    TracePrinter(tok, out, colour=False)(StepTrace(1, [[tok.mask_id] * 3 + tok.encode("y")], [[3]], 0.75))
    head, body, _ = out.getvalue().split("\n")
    assert head.split() == ["step", "1", "threshold", "0.75", "+1", "committed", "3", "masked"]
    assert body == MASK_GLYPH * 3 + "y"


def test_a_beam_search_step_names_the_beam_instead_of_a_threshold(tiny_corpus):
    tok = _tok(tiny_corpus)
    out = io.StringIO()
    TracePrinter(tok, out, colour=False)(StepTrace(2, [tok.encode("y") + [tok.mask_id] * 2], [[0]], 0.0, beam=4))
    head, body, _ = out.getvalue().split("\n")
    assert head.split() == ["step", "2", "beam", "of", "4,", "the", "likeliest", "2", "masked"]
    assert body == "y" + MASK_GLYPH * 2


def test_colour_only_on_a_terminal_without_no_color(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert colour_wanted(Tty()) and not colour_wanted(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not colour_wanted(Tty())


def test_infill_trace_prints_every_step_on_stderr(tiny_checkpoint, tmp_path, capsys):
    src = tmp_path / "a.py"
    src.write_text("def add(a, b):\n    return a + b\n")
    rc = main(["infill", str(src), "--at", "2:12", "--max-tokens", "6", "--trace", "--model", str(tiny_checkpoint),
               "--adapter", "none", "--no-constraint"])
    assert rc == 0
    err = capsys.readouterr().err
    steps = [line for line in err.splitlines() if line.startswith("step ")]
    assert steps and steps[0].startswith("step   1  beam of 4")  # a one-line hole is beam-searched
    assert MASK_GLYPH in err  # the first canvases still hold masks
    assert "\x1b" not in err  # captured stderr is not a terminal
