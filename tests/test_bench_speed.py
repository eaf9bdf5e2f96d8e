"""``diffill bench speed``: held-out holes of two kinds, three settings, one JSON shape."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffill.bench.profile import PHASES
from diffill.bench.speed import block_holes, edit_similarity, line_holes, profile, setting_config
from diffill.cli import main
from diffill.model.sampler import SamplerConfig


@pytest.fixture(scope="module")
def texts(tiny_sources):
    return [p.read_text() for p in sorted(tiny_sources.glob("*.py"))]


def _words(s: str) -> int:
    return len(s.split())


def test_line_holes_are_the_rest_of_one_line(texts):
    holes = line_holes(texts, 30, _words, np.random.default_rng(0))
    assert len(holes) == 30
    originals = set(texts)
    for h in holes:
        assert h.kind == "single_line" and h.target and "\n" not in h.target
        assert h.text[: h.at] + h.target + h.text[h.at :] in originals
        assert h.text[h.at : h.at + 1] in ("", "\n", " ", "\t")  # the hole reaches the end of its line


def test_mid_word_holes_start_inside_a_word(texts):
    from diffill.model.lead import typed_word

    holes = line_holes(texts, 30, _words, np.random.default_rng(0), "mid_word")
    assert len(holes) == 30
    originals = set(texts)
    for h in holes:
        assert h.kind == "mid_word" and h.target and "\n" not in h.target
        assert h.text[: h.at] + h.target + h.text[h.at :] in originals
        assert (h.text[h.at - 1].isalnum() or h.text[h.at - 1] == "_") and (h.target[0].isalnum() or h.target[0] == "_")
        assert typed_word(h.text, h.at)  # what the engine fills from the word's start


def test_block_holes_are_whole_lines(texts):
    holes = block_holes(texts, 20, _words, np.random.default_rng(0))
    assert len(holes) == 20
    originals = set(texts)
    for h in holes:
        assert h.kind == "multi_line" and 2 <= h.target.count("\n") + 1 <= 6
        assert h.text[: h.at] + h.target + h.text[h.at :] in originals
        assert not h.text[h.text.rfind("\n", 0, h.at) + 1 : h.at].strip()  # starts its line


def test_same_seed_same_holes(texts):
    a = line_holes(texts, 10, _words, np.random.default_rng(3))
    b = line_holes(texts, 10, _words, np.random.default_rng(3))
    assert a == b


def test_edit_similarity():
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("abcd", "abed") == pytest.approx(0.75)
    assert edit_similarity("", "xy") == 0.0


def test_settings_differ_only_in_the_knobs_they_name():
    base = SamplerConfig(threshold=0.7)
    one = setting_config(base, "one_per_step")
    assert one.max_per_step == 1 and not one.cache
    par = setting_config(base, "threshold")
    assert par.threshold == 0.7 and par.max_per_step == 0 and not par.cache
    assert setting_config(base, "threshold_cache").cache
    beam = setting_config(base, "beam_cache", 3)
    assert beam.beam == 3 and beam.cache and beam.threshold == 0.7
    assert setting_config(beam, "threshold_cache").beam == 0


def test_bench_speed_json(tiny_checkpoint, tiny_sources, capsys):
    rc = main(["bench", "speed", "--cases", "3", "--json", "--threads", "1", "--model", str(tiny_checkpoint),
               "--adapter", "none", "--corpus", str(tiny_sources)])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["threads"] == 1 and out["model"] and out["adapter"] == "none"
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert out["window"] == [config.get("prefix_tokens", 112), config.get("suffix_tokens", 48)]
    rows = {(r["kind"], r["setting"]): r for r in out["results"]}
    assert set(rows) == {(k, s) for k in ("single_line", "mid_word", "multi_line")
                         for s in ("one_per_step", "threshold", "threshold_cache", "beam_cache")}
    # what the engine does unasked: one-line holes beam-searched, blocks by threshold
    assert out["defaults"] == {"single_line": "beam_cache", "mid_word": "beam_cache", "multi_line": "threshold_cache"}
    for r in out["results"]:
        assert r["cases"] == 3 and len(r["latencies_ms"]) == 3
        assert 0 < r["p50_ms"] <= r["p95_ms"]
        assert 0 <= r["exact_match"] <= 1 and 0 <= r["edit_similarity"] <= 1
    # one token per step: at most one settled slot per forward pass
    assert rows[("single_line", "one_per_step")]["tokens_per_forward"] <= 1.0


def test_a_wider_window_is_read_and_reported(tiny_checkpoint, tiny_sources, capsys):
    argv = ["bench", "speed", "--cases", "3", "--json", "--threads", "1", "--model", str(tiny_checkpoint),
            "--corpus", str(tiny_sources), "--kinds", "single_line", "--settings", "beam_cache"]
    assert main(argv) == 0
    own = json.loads(capsys.readouterr().out)
    assert main([*argv, "--window", "300+100"]) == 0
    wide = json.loads(capsys.readouterr().out)
    assert wide["window"] == [300, 100] and own["window"] != wide["window"]
    assert [r["cases"] for r in wide["results"]] == [3]


def test_bad_arguments_exit_2(tiny_checkpoint, tiny_sources):
    assert main(["bench", "speed", "--cases", "0"]) == 2
    assert main(["bench", "speed", "--kinds", "paragraph", "--model", str(tiny_checkpoint)]) == 2
    for window in ("512", "512+0", "a+b", "-1+5"):
        assert main(["bench", "speed", "--window", window, "--model", str(tiny_checkpoint)]) == 2


def test_profile_splits_each_request_into_phases(tiny_engine, texts):
    holes = block_holes(texts, 4, _words, np.random.default_rng(0))
    cached = profile(tiny_engine, holes, "threshold_cache", 12)
    assert cached["cases"] == 4 and set(cached["phases"]) == set(PHASES)
    ms = {k: v["ms_per_case"] for k, v in cached["phases"].items()}
    assert sum(ms.values()) == pytest.approx(cached["ms_per_case"], rel=0.02, abs=0.05)
    assert ms["context_encode"] > 0 and cached["ms_per_context_encode"] > 0
    assert sum(v["share"] for v in cached["phases"].values()) == pytest.approx(1.0, abs=0.01)
    # without the cache every pass is a whole row: no context encode, no canvas-only pass
    plain = profile(tiny_engine, holes, "threshold", 12)
    assert plain["phases"]["context_encode"]["ms_per_case"] == 0
    assert plain["phases"]["canvas_steps"]["ms_per_case"] == 0
    assert plain["phases"]["full_forward"]["ms_per_case"] > 0


def test_bench_speed_profile_in_json(tiny_checkpoint, tiny_sources, capsys):
    rc = main(["bench", "speed", "--cases", "2", "--json", "--threads", "1", "--model", str(tiny_checkpoint),
               "--adapter", "none", "--corpus", str(tiny_sources), "--settings", "threshold", "--profile"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [(p["kind"], p["setting"]) for p in out["profiles"]] == [("single_line", "beam_cache"),
                                                                   ("mid_word", "beam_cache"),
                                                                   ("multi_line", "threshold_cache")]


def test_typing_holes_are_whole_lines_after_their_indentation(texts):
    holes = line_holes(texts, 20, _words, np.random.default_rng(0), "typing")
    assert len(holes) == 20
    originals = set(texts)
    for h in holes:
        assert h.kind == "typing" and len(h.target) > 1 and "\n" not in h.target
        assert h.text[: h.at] + h.target + h.text[h.at :] in originals
        assert not h.text[h.text.rfind("\n", 0, h.at) + 1 : h.at].strip()  # only indentation before it


def test_typing_replays_each_keystroke_through_the_forwarding_cache(tiny_checkpoint, tiny_sources, capsys,
                                                                      monkeypatch):
    from diffill.lsp_server.cache import InfillCache

    looked_up = []
    real_get = InfillCache.get

    def get(self, hole, extra):
        looked_up.append(hole.line)
        return real_get(self, hole, extra)

    monkeypatch.setattr(InfillCache, "get", get)
    rc = main(["bench", "speed", "--cases", "3", "--json", "--threads", "1", "--model", str(tiny_checkpoint),
               "--adapter", "none", "--corpus", str(tiny_sources), "--kinds", "typing"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    [row] = out["results"]
    assert row["kind"] == "typing" and row["setting"] == out["defaults"]["single_line"] and row["cases"] == 3
    assert row["keystrokes"] == len(row["latencies_ms"]) == len(looked_up) > 0
    # one request a keystroke: the cursor's line grows by one character, three lines in all, each
    # from its first character after the indentation
    starts = [i for i, line in enumerate(looked_up) if i == 0 or line[:-1] != looked_up[i - 1]]
    assert len(starts) == 3
    assert all(len(looked_up[i].strip()) == 1 for i in starts)
    assert 0 < row["p50_ms"] <= row["p95_ms"]
    for key in ("cache_hits", "shown", "typed_along", "rest_of_line"):
        assert 0 <= row[key] <= 1
    assert row["rest_of_line"] <= row["typed_along"] <= row["shown"]


def test_typing_with_context_reuse_both_replays_the_same_lines_with_and_without(tiny_checkpoint, tiny_sources,
                                                                                 capsys):
    rc = main(["bench", "speed", "--cases", "2", "--json", "--threads", "1", "--model", str(tiny_checkpoint),
               "--adapter", "none", "--corpus", str(tiny_sources), "--kinds", "typing", "--context-reuse", "both"])
    assert rc == 0
    off, on = json.loads(capsys.readouterr().out)["results"]
    assert (off["context_reuse"], on["context_reuse"]) == (False, True)
    assert off["keystrokes"] == on["keystrokes"] > 0 and off["cases"] == on["cases"] == 2
    assert "contexts" not in off and sum(on["contexts"].values()) > 0
