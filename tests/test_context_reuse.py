"""Context reused across requests (model/context_reuse.py): what is reused, when, and that the
reused keys sit where a fresh encoding puts them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from diffill.engine import Engine, InfillOptions, InfillRequest
from diffill.model.backend import DiffillBackend
from diffill.model.context import Window, encode_window
from diffill.model.context_reuse import ContextReuse, ReuseConfig, rotate_keys
from diffill.model.layers import apply_rope, rope_cos_sin
from diffill.model.loading import load_checkpoint

L = 6  # canvas slots
DOC = ("import os\n\n\ndef total(values):\n    result = 0\n    for v in values:\n        result += v\n"
       "    return result\n\n\ndef mean(values):\n    n = len(values)\n    \n    return total(values) / n\n\n\n"
       "def main():\n    print(mean([1, 2, 3]))\n")
CURSOR = DOC.index("    \n    return total") + 4


@pytest.fixture(scope="module")
def network(tiny_checkpoint):
    model, tok = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():  # a random init is nearly uniform; sharpen it so that paths can differ
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(20.0)
    return model, tok


def _backends(network, **config):
    model, tok = network
    return DiffillBackend(model, tok, reuse=ContextReuse(ReuseConfig(**config))), DiffillBackend(model, tok)


def _window(tok, text: str, at: int, window: Window = Window()) -> tuple[list[int], list[int]]:
    return encode_window(tok, text[:at], text[at:], window)


def _first(be, prefix, suffix, length=L):
    """A request's first pass (all masks), its state and logits."""
    state = be.prepare([prefix], [suffix], length, cache=True)
    logits = be.logits(state, torch.full((1, length), be.mask_id))
    return state, logits


def _typed(text: str, at: int, typed: str) -> tuple[str, int]:
    return text[:at] + typed + text[at:], at + len(typed)


def test_rope_rotations_compose_so_shifted_keys_are_re_rotated():
    torch.manual_seed(0)
    raw = torch.randn(1, 2, 5, 16)
    at = torch.tensor([[0, 3, 7, 50, 200]])
    for delta in (4, -3, 117):
        keys = apply_rope(raw, *rope_cos_sin(at, 16, 10000.0))
        moved = apply_rope(raw, *rope_cos_sin(at + delta, 16, 10000.0))
        assert torch.allclose(rotate_keys(keys, delta, 10000.0), moved, atol=1e-5)
        assert not torch.allclose(keys, moved, atol=1e-2)


def test_an_unchanged_window_reuses_its_context_exactly(network):
    reusing, plain = _backends(network)
    tok = network[1]
    prefix, suffix = _window(tok, DOC, CURSOR)
    _first(reusing, prefix, suffix)
    state, logits = _first(reusing, prefix, suffix)  # the same window again
    fresh, expected = _first(plain, prefix, suffix)
    assert reusing.reuse.counts() == {"encoded": 1, "reused": 0, "unchanged": 1}
    assert torch.allclose(logits, expected, atol=1e-5)
    for (k, v), (fk, fv) in zip(state.context, fresh.context):
        assert torch.equal(k, fk) and torch.equal(v, fv)
    canvas = torch.full((1, L), tok.mask_id)
    canvas[0, 0] = int(expected[0, 0].argmax())  # later steps run on the same context: the same logits
    assert torch.equal(reusing.logits(state, canvas), plain.logits(fresh, canvas))


def _assert_first_layer_as_fresh(state, fresh):
    # a first layer's keys and values depend only on each token and its position, so there the
    # built context must equal a fresh encoding's (deeper layers saw the old window: approximate)
    (k, v), (fk, fv) = state.context[0], fresh.context[0]
    assert k.shape == fk.shape
    assert torch.allclose(k, fk, atol=1e-4) and torch.allclose(v, fv, atol=1e-5)


def test_typing_at_the_cursor_builds_on_the_kept_context(network):
    reusing, plain = _backends(network)
    tok = network[1]
    _first(reusing, *_window(tok, DOC, CURSOR))
    text, at = _typed(DOC, CURSOR, "x = ")
    prefix, suffix = _window(tok, text, at)
    plan = reusing.reuse.plan(prefix, suffix, L)
    assert plan is not None and 0 < plan.changed <= ReuseConfig.max_changed
    assert plan.added_suffix == [] and plan.keep_suffix == len(suffix)
    state, logits = _first(reusing, prefix, suffix)
    assert reusing.reuse.counts()["reused"] == 1
    fresh, expected = _first(plain, prefix, suffix)
    assert logits.shape == expected.shape
    _assert_first_layer_as_fresh(state, fresh)


def _common(a: list[int], b: list[int]) -> int:
    return next((n for n, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_the_kept_token_beside_the_cursor_is_recomputed_with_the_text_typed_after_it(network):
    reusing, _ = _backends(network)
    tok = network[1]
    old = _window(tok, DOC, CURSOR)
    _first(reusing, *old)
    text, at = _typed(DOC, CURSOR, "x = ")
    prefix, suffix = _window(tok, text, at)
    plan = reusing.reuse.plan(prefix, suffix, L)
    # the old prefix's last token sat beside the canvas: it is recomputed beside the typed text
    kept = _common(old[0], prefix) - 1
    assert plan is not None and plan.keep_prefix == kept and plan.added_prefix == prefix[kept:]
    assert plan.keep_suffix == len(suffix) and plan.added_suffix == []  # nothing changed after the cursor
    assert plan.changed == len(old[0]) + len(prefix) - 2 * (kept + 1)  # the recomputed token is not a change


def test_text_changed_after_the_cursor_is_recomputed_at_the_suffix_start(network):
    reusing, plain = _backends(network)
    tok = network[1]
    at = DOC.index("len(values)\n")
    whole = Window(suffix_tokens=400)  # the suffix reaches the end of the file: the edit is all that changes
    _first(reusing, *_window(tok, DOC, at, whole))
    text = DOC[:at] + "sum" + DOC[at + len("len") :]  # the word after the cursor replaced
    prefix, suffix = _window(tok, text, at, whole)
    plan = reusing.reuse.plan(prefix, suffix, L)
    assert plan is not None and plan.added_prefix == [] and plan.keep_prefix == len(prefix)
    # the changed tokens and the kept one beside them, which sat beside the old canvas's end
    old_suffix = _window(tok, DOC, at, whole)[1]
    kept = _common(old_suffix[::-1], suffix[::-1]) - 1
    assert plan.keep_suffix == kept and plan.added_suffix == suffix[: len(suffix) - kept]
    state, _ = _first(reusing, prefix, suffix)
    assert reusing.reuse.counts()["reused"] == 1
    _assert_first_layer_as_fresh(state, _first(plain, prefix, suffix)[0])


def test_a_longer_canvas_moves_the_suffix_and_its_keys_follow(network):
    reusing, plain = _backends(network)
    tok = network[1]
    prefix, suffix = _window(tok, DOC, CURSOR)
    _first(reusing, prefix, suffix, L)
    state, _ = _first(reusing, prefix, suffix, L + 3)
    assert reusing.reuse.counts()["reused"] == 1
    _assert_first_layer_as_fresh(state, _first(plain, prefix, suffix, L + 3)[0])


def test_lines_dropped_at_the_window_start_are_aligned(network):
    reusing, plain = _backends(network, max_changed=32)
    tok = network[1]
    window = Window(prefix_tokens=24, suffix_tokens=8)
    old = _window(tok, DOC, CURSOR, window)
    text, at = _typed(DOC, CURSOR, "s = 1 + 2")  # the prefix outgrows its budget: its first line goes
    new = _window(tok, text, at, window)
    _first(reusing, *old)
    plan = reusing.reuse.plan(*new, L)
    assert plan is not None and plan.drop > 0 and new[0][: plan.keep_prefix] == old[0][plan.drop : plan.drop + plan.keep_prefix]
    state, _ = _first(reusing, *new)
    assert reusing.reuse.counts()["reused"] == 1
    _assert_first_layer_as_fresh(state, _first(plain, *new)[0])


@pytest.mark.parametrize("edit", ["suffix far away", "prefix far away", "another file"])
def test_a_document_changed_away_from_the_cursor_is_encoded_afresh(network, edit):
    reusing, plain = _backends(network)
    tok = network[1]
    _first(reusing, *_window(tok, DOC, CURSOR))
    if edit == "suffix far away":
        text, at = DOC.replace("print(mean([1, 2, 3]))", "print(mean([4, 5, 6, 7, 8]))"), CURSOR
    elif edit == "prefix far away":
        text = DOC.replace("result = 0\n", "result = 0\n    count = len(values) * 2 + 1\n")
        at = CURSOR + len(text) - len(DOC)
    else:
        text = "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        \n        self.y = y\n"
        at = text.index("        \n") + 8
    prefix, suffix = _window(tok, text, at)
    assert reusing.reuse.plan(prefix, suffix, L) is None
    state, logits = _first(reusing, prefix, suffix)
    fresh, expected = _first(plain, prefix, suffix)
    assert reusing.reuse.counts() == {"encoded": 2, "reused": 0, "unchanged": 0}
    assert torch.equal(logits, expected)
    for (k, v), (fk, fv) in zip(state.context, fresh.context):
        assert torch.equal(k, fk) and torch.equal(v, fv)


def test_staleness_is_bounded_by_reuses_in_a_row(network):
    reusing, _ = _backends(network, max_reuses=2)
    tok = network[1]
    text, at = DOC, CURSOR
    _first(reusing, *_window(tok, text, at))
    for word in ("a", " = ", "b"):
        text, at = _typed(text, at, word)
        _first(reusing, *_window(tok, text, at))
    assert reusing.reuse.counts() == {"encoded": 2, "reused": 2, "unchanged": 0}


def test_too_many_changed_tokens_are_encoded_afresh(network):
    reusing, _ = _backends(network, max_changed=3)
    tok = network[1]
    _first(reusing, *_window(tok, DOC, CURSOR))
    text, at = _typed(DOC, CURSOR, "value = total(values) + len(values)")
    _first(reusing, *_window(tok, text, at))
    assert reusing.reuse.counts()["encoded"] == 2


def test_kept_contexts_are_bounded_and_batches_do_not_reuse(network):
    reusing, _ = _backends(network, entries=2)
    tok = network[1]
    for n in range(4):
        text, at = _typed(DOC, CURSOR, f"v{n} = {n}\n" * (3 * n))
        _first(reusing, *_window(tok, text, at))
    assert len(reusing.reuse.entries) == 2
    before = reusing.reuse.counts()
    prefix, suffix = _window(tok, DOC, CURSOR)
    state = reusing.prepare([prefix, prefix], [suffix, suffix], L, cache=True)
    reusing.logits(state, torch.full((2, L), tok.mask_id))
    assert state.reuse is None and reusing.reuse.counts() == before


def test_the_engine_reuses_by_default_not_when_told_off_and_forgets_on_an_adapter_switch(tiny_engine):
    kept = tiny_engine.reusing.reuse
    kept.clear()
    at = DOC.index("len(values)\n")  # a one-line hole
    req = InfillRequest(DOC, at, at, language="python")
    off = tiny_engine.infill(req, options=InfillOptions(context_reuse=False))
    block = tiny_engine.infill(InfillRequest(DOC, CURSOR, CURSOR, language="python"),
                               options=InfillOptions(context_reuse=True))
    assert block.multiline and kept.entries == []  # multi-line holes are encoded whole
    on = tiny_engine.infill(req, options=InfillOptions(context_reuse=True))
    again = tiny_engine.infill(req, options=InfillOptions(context_reuse=True))
    assert kept.entries and kept.counts()["unchanged"] >= 1
    assert off.text == on.text == again.text
    kept.clear()
    default = tiny_engine.infill(req)  # on unless the config or the call turns it off
    assert kept.entries and default.text == off.text
    tiny_engine.use_adapter("none")
    assert kept.entries == []


# A one-line fill shown at the cursor, inserted (Tab in an editor), then asked for again at the
# line's end: the kept context was encoded with the canvas right after "sqrt(".
ACCEPTED = ("import math\n\n\ndef mean(values):\n    return sum(values) / len(values)\n\n\n"
            "def variance(values):\n    m = mean(values)\n    return TODO\n\n\ndef stdev(values):\n"
            "    return math.sqrt(")


def test_a_request_after_the_shown_fill_is_inserted_gets_the_recomputed_answer(shipped_engine):
    on, off = InfillOptions(context_reuse=True), InfillOptions(context_reuse=False)
    kept = shipped_engine.reusing.reuse
    kept.clear()
    first = shipped_engine.infill(InfillRequest(ACCEPTED, len(ACCEPTED), len(ACCEPTED), language="python"), options=on)
    assert first.text
    text = ACCEPTED + first.text
    req = InfillRequest(text, len(text), len(text), language="python")
    before = kept.counts()["reused"]
    reused = shipped_engine.infill(req, options=on)
    assert kept.counts()["reused"] > before  # built on the kept context
    recomputed = shipped_engine.infill(req, options=off)
    assert (reused.text, reused.alternatives) == (recomputed.text, recomputed.alternatives)


@pytest.mark.parametrize("where", ["local", "ray"])
def test_batch_commands_fill_a_request_alike_whatever_was_filled_before(tiny_checkpoint, monkeypatch, where):
    """Even where the engine's default builds one-line holes on earlier contexts (the editor's
    typing), the engines of refactor, eval and their Ray workers encode every context whole."""
    import diffill.engine
    from diffill.cli import build_parser
    from diffill.distributed import EngineSpec
    from diffill.loading import engine_config_from

    @dataclass
    class ReusingByDefault(diffill.engine.EngineConfig):
        context_reuse: bool = True

    monkeypatch.setattr(diffill.engine, "EngineConfig", ReusingByDefault)
    args = build_parser().parse_args(["refactor", "src", "--holes", "--model", str(tiny_checkpoint),
                                      "--adapter", "none"])
    config = engine_config_from(args) if where == "local" else EngineSpec.from_args(args, threads=1).config()
    at = DOC.index("len(values)\n")
    req = InfillRequest(DOC, at, at, language="python", multiline=False)
    typed = DOC[:at] + "le" + DOC[at:]  # the same line a moment before, a word being typed
    earlier = InfillRequest(typed, at + 2, at + 2, language="python", multiline=False)

    def seen(r):
        return r.text, r.raw, r.confidence, r.alternatives, r.alternative_confidences

    alone = Engine(config).infill(req)
    engine = Engine(config)
    engine.infill(earlier)
    assert seen(engine.infill(req)) == seen(alone)
