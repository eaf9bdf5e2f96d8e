from diffill.engine import InfillOptions, InfillRequest, wants_multiline
from diffill.model.beam import LINE_BEAM
from diffill.errors import DiffillError
import pytest

SRC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    \n"


def test_cursor_infill_returns_offsets_and_counts(tiny_engine):
    pos = SRC.index("    \n") + 4
    r = tiny_engine.infill(InfillRequest(SRC, pos, pos, max_tokens=8))
    assert (r.start, r.end) == (pos, pos)
    assert r.forward_passes >= 1 and r.steps >= 1
    assert r.latency_ms > 0
    assert "\x00" not in r.text


def test_mid_line_cursor_is_single_line_and_blank_line_is_multiline():
    assert not wants_multiline("x = foo(\n", 4, 4)
    assert wants_multiline("def f():\n    \n", 13, 13)
    assert wants_multiline("a\nb\nc", 0, 3)


def test_single_line_hole_never_returns_a_newline(tiny_engine):
    pos = SRC.index("a + b")
    r = tiny_engine.infill(InfillRequest(SRC, pos, pos + 5, multiline=False, max_tokens=12))
    assert "\n" not in r.text


def test_a_one_line_hole_stops_its_sampler_at_a_newline(tiny_engine, sampled_requests):
    pos = SRC.index("a + b")
    tiny_engine.infill_many([InfillRequest(SRC, pos, pos + 5, multiline=False, max_tokens=12),
                             InfillRequest(SRC, pos, pos + 5, multiline=True, max_tokens=12)])
    one, many = sampled_requests[:2]
    assert one.stops == tiny_engine.tok.line_break_ids() and one.stops
    assert not many.stops
    # and only a one-line hole has a latency bound on its forward passes
    assert one.finish_after == tiny_engine.config.single_line_passes > 0 and many.finish_after == 0


def test_a_one_line_hole_takes_at_most_its_bound_of_forward_passes(tiny_engine):
    pos = SRC.index("a + b")
    req = InfillRequest(SRC, pos, pos + 5, multiline=False, max_tokens=12)
    unsure = tiny_engine.with_sampler(threshold=1.0, beam=0)  # threshold decoding, one token a pass unless bounded
    bound = tiny_engine.config.single_line_passes
    try:
        tiny_engine.config.single_line_passes = 0
        free = tiny_engine.infill(req, sampler=unsure)
        tiny_engine.config.single_line_passes = 2
        bounded = tiny_engine.infill(req, sampler=unsure)
    finally:
        tiny_engine.config.single_line_passes = bound
    assert free.forward_passes > 2
    assert bounded.forward_passes <= 3  # two passes, then one that commits the rest (and a veto's)


def test_hole_outside_document_is_an_error(tiny_engine):
    with pytest.raises(DiffillError, match="outside"):
        tiny_engine.infill(InfillRequest(SRC, 5, len(SRC) + 3))


def test_batch_equals_sequential(tiny_engine):
    reqs = [InfillRequest(SRC, i, i, max_tokens=8) for i in (3, 10, 20)]
    together = [r.text for r in tiny_engine.infill_many(reqs)]
    alone = [tiny_engine.infill(r).text for r in reqs]
    assert together == alone


def test_dtype_auto_picks_bf16_only_where_native_and_unknown_dtypes_are_refused(tiny_checkpoint):
    import torch

    from diffill.engine import Engine, EngineConfig
    from diffill.precision import resolve_dtype

    assert resolve_dtype("float32") == "float32" and resolve_dtype("bfloat16") == "bfloat16"
    assert resolve_dtype("auto") == ("bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32")
    engine = Engine(EngineConfig(model=str(tiny_checkpoint), dtype="float32"))
    assert engine.dtype == "float32" and next(engine.model.parameters()).dtype == torch.float32
    with pytest.raises(DiffillError, match="dtype"):
        Engine(EngineConfig(model=str(tiny_checkpoint), dtype="float16"))


def test_the_engine_reads_the_window_its_model_was_trained_with(narrow_checkpoint, sampled_requests):
    from diffill.engine import Engine, EngineConfig
    from diffill.model.context import Window

    engine = Engine(EngineConfig(model=str(narrow_checkpoint), adapter=None))
    assert engine.window == Window(6, 3)
    long_src = "".join(f"x{i} = {i}\n" for i in range(60))
    engine.infill(InfillRequest(long_src, len(long_src) // 2, len(long_src) // 2, max_tokens=4))
    assert 0 < len(sampled_requests[0].prefix) <= 6 and 0 < len(sampled_requests[0].suffix) <= 3
    wide = Engine(EngineConfig(model=str(narrow_checkpoint), adapter=None, window=Window(40, 20)))  # named: it wins
    assert wide.window == Window(40, 20)


def test_one_line_holes_are_beam_searched_unless_the_sampler_names_a_beam(tiny_engine, monkeypatch):
    from diffill.model.decoders import Decoder

    used = []
    real = Decoder.sample

    def spy(self, requests, *args, **kwargs):
        used.append(self.config.beam)
        return real(self, requests, *args, **kwargs)

    monkeypatch.setattr(Decoder, "sample", spy)
    pos = SRC.index("a + b")
    tiny_engine.infill_many([InfillRequest(SRC, pos, pos + 5, multiline=False, max_tokens=12),
                             InfillRequest(SRC, pos, pos + 5, multiline=True, max_tokens=12)])
    # the same budget, but one-line and multi-line holes are sampled apart
    assert sorted(used[:2]) == [0, tiny_engine.config.single_line_beam] and tiny_engine.config.single_line_beam > 1
    used.clear()  # other settings (as the language server passes its threshold) leave the beam to the engine
    tiny_engine.infill(InfillRequest(SRC, pos, pos + 5, multiline=False), sampler=tiny_engine.with_sampler(threshold=0.5))
    tiny_engine.infill(InfillRequest(SRC, pos, pos + 5, multiline=False), sampler=tiny_engine.with_sampler(beam=0))
    tiny_engine.infill(InfillRequest(SRC, pos, pos + 5, multiline=False), options=InfillOptions(beam=0))
    assert used == [LINE_BEAM, 0, 0]


def test_options_apply_to_their_own_call_and_leave_the_config_alone(tiny_engine, monkeypatch):
    from dataclasses import replace

    from diffill.model.decoders import Decoder

    used = []
    real = Decoder.sample

    def spy(self, requests, *args, **kwargs):
        used.append((self.config.beam, self.config.threshold, kwargs.get("constraint") is not None))
        return real(self, requests, *args, **kwargs)

    monkeypatch.setattr(Decoder, "sample", spy)
    config = replace(tiny_engine.config)
    pos = SRC.index("a + b")
    req = InfillRequest(SRC, pos, pos + 5, multiline=False, max_tokens=12, language="python")
    asked = tiny_engine.infill(req, options=InfillOptions(beam=0, threshold=0.5, constrained=False))
    assert used == [(0, 0.5, False)] and asked.syntax == "unconstrained"
    used.clear()
    plain = tiny_engine.infill(req)
    assert used[0] == (config.single_line_beam, config.sampler.threshold, True) and config.sampler.threshold != 0.5
    assert plain.syntax != "unconstrained"
    assert tiny_engine.config == config


def test_a_cursor_after_a_word_answers_with_the_typed_part_it_continues(tiny_engine):
    text = "def f(items):\n    return len(ite"
    r = tiny_engine.infill(InfillRequest(text, len(text), len(text), language="python"))
    assert r.typed == "ite" and r.word_start == len(text) - 3
    inside = text.index("tems")  # the word goes on after the cursor: nothing typed to replace
    assert tiny_engine.infill(InfillRequest(text, inside, inside, max_tokens=6)).typed == ""
    pos = SRC.index("a + b")
    selection = tiny_engine.infill(InfillRequest(SRC, pos, pos + 5, multiline=False, max_tokens=6))
    assert selection.typed == "" and selection.word_start == pos


def test_progress_is_reported_for_every_step(tiny_engine):
    seen, traces = [], []
    pos = SRC.index("    \n") + 4
    r = tiny_engine.infill(InfillRequest(SRC, pos, pos, max_tokens=8), on_progress=seen.append,
                           on_step=traces.append)
    assert seen and len(seen) == len(traces) and [p.step for p in seen] == [t.step for t in traces]
    assert all(0 <= p.filled <= p.slots for p in seen) and seen[-1].slots == len(traces[-1].canvas[0])
    assert r.steps >= 1


def test_alternatives_are_distinct_valid_one_line_fills(shipped_engine):
    from diffill.grammar.validity import HoleChecker
    from diffill.grammar.registry import resolve

    text = "def area(width, height):\n    return width * height\n\n\nprint(area(2, 3))\n"
    pos = text.index("width *")
    text = text[:pos] + text[text.index("\n\n\n"):]
    r = shipped_engine.infill(InfillRequest(text, pos, pos, language="python"))
    assert r.text and r.alternatives, "a beam of four leaves runners-up on this hole"
    assert r.text not in r.alternatives and len(set(r.alternatives)) == len(r.alternatives)
    checker = HoleChecker(resolve("python", None), text[:pos], text[pos:])
    assert all("\n" not in a and checker.is_valid(a) for a in r.alternatives)
    multi = shipped_engine.infill(InfillRequest(text, pos, pos, multiline=True, language="python"))
    assert multi.alternatives == []


def test_a_causal_checkpoint_is_refused_with_a_clear_error(tiny_causal_checkpoint):
    from diffill.engine import Engine, EngineConfig
    from diffill.errors import DiffillError

    with pytest.raises(DiffillError, match="causal"):
        Engine(EngineConfig(model=str(tiny_causal_checkpoint), adapter="none"))
