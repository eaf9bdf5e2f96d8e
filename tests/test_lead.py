"""Fills that start with the typed part of a word (model/lead.py, token healing): the word at a
cursor, the tokens that agree with it, the beam honouring it, the engine filling from mid-word."""

from __future__ import annotations

from dataclasses import replace

import pytest

from diffill.model.lead import Lead, Spellings, typed_word


def test_the_typed_word_is_the_identifier_before_the_cursor():
    text = "x = proc\ny = a.b_c2 + 1\n"
    assert typed_word(text, text.index("proc") + 4) == "proc"
    assert typed_word(text, text.index("proc") + 2) == ""  # the word goes on after the cursor
    assert typed_word(text, text.index("b_c2") + 4) == "b_c2"
    assert typed_word(text, text.index("= a") + 2) == ""  # after a space
    assert typed_word(text, text.index("1")) == ""  # at a word's start
    assert typed_word("x = 12", 6) == ""  # a number is not a word being typed
    assert typed_word("", 0) == "" and typed_word("abc\n", 4) == ""  # nothing before, or a new line


def test_the_agreeing_tokens_are_those_a_brute_force_finds(shipped_engine):
    spellings = Spellings.of(shipped_engine.tok)
    assert Spellings.of(shipped_engine.tok) is spellings  # built once
    for left in ("proc", "p", "self_", "xyzq", "_"):
        brute = sorted(i for i, t in enumerate(spellings.texts) if t and (t.startswith(left) or left.startswith(t)))
        assert sorted(spellings.agreeing(left)) == brute


def test_a_lead_is_covered_token_by_token(shipped_engine):
    tok = shipped_engine.tok
    lead = Lead("proc", Spellings.of(tok))
    pro, process = tok.backend.token_to_id("pro"), tok.backend.token_to_id("process")
    assert lead.left([]) == "proc" and lead.left([pro]) == "c" and lead.left([process]) == ""
    assert lead.starts([process]) and not lead.starts([pro])
    allowed = lead.allowed("proc", tok.vocab_size)
    assert allowed[process] and allowed[pro] and not allowed[tok.backend.token_to_id("\u0120process")]
    assert not allowed[tok.eoi_id]  # a fill cannot end before the lead
    with pytest.raises(ValueError):
        Lead("", Spellings.of(tok))


DOC = ("def process_item(item, rate):\n    return item * rate\n\n\ndef run(items, rate):\n"
       "    out = [process_item(x, rate) for x in items]\n    first = proc\n    return out\n")


def test_a_cursor_inside_a_word_gets_the_rest_of_it(shipped_engine):
    from diffill.engine import Engine, InfillRequest

    engine = Engine(replace(shipped_engine.config, library="none"))
    at = DOC.index("proc\n") + 4
    healed = engine.infill(InfillRequest(DOC, at, at, path="a.py", multiline=False))
    assert healed.text.startswith("ess_item(") and (healed.start, healed.end) == (at, at)
    assert all(not a.startswith("proc") for a in healed.alternatives)  # the typed part is not repeated
    engine.config = replace(engine.config, heal_words=False)
    plain = engine.infill(InfillRequest(DOC, at, at, path="a.py", multiline=False))
    assert not plain.text.startswith("ess_item(")  # the word cut short: the model and caches miss it
