"""Held-out line cases: whole code lines, a fixed draw per seed, no more than the files hold."""

from __future__ import annotations

import pytest

from diffill.errors import DiffillError
from diffill.evaluation import line_cases

TEXTS = ["import os\n\n# a comment\ndef f(x):\n    return x + 1\n", '"""\nDoc.\n"""\nY = 2\n']


def test_each_case_is_one_code_line_after_its_indentation():
    cases = line_cases(TEXTS, 4, seed=0)
    assert len(cases) == 4
    for c in cases:
        assert c.prefix + c.target + c.suffix in TEXTS
        assert "\n" not in c.target and c.target == c.target.strip() and not c.target.startswith("#")
    assert line_cases(TEXTS, 4, seed=0) == cases


def test_asking_for_more_cases_than_code_lines_stops_at_their_number():
    cases = line_cases(TEXTS, 50, seed=3)
    assert sorted(c.target for c in cases) == sorted(["import os", "def f(x):", "return x + 1", "Doc.", "Y = 2"])


def test_files_without_code_lines_are_an_error():
    with pytest.raises(DiffillError, match="no code lines"):
        line_cases(["\n# only a comment\n", ""], 10)


def test_sign_test_is_the_exact_two_sided_binomial():
    from diffill.evaluation import sign_test

    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 5) == 1.0
    assert sign_test(0, 5) == pytest.approx(2 / 32)
    assert sign_test(9, 1) == sign_test(1, 9) == pytest.approx(2 * (1 + 10) / 1024)


def test_compare_pairs_the_same_holes(tiny_sources, tiny_engine, shipped_engine):
    from diffill.evaluation import compare_line_infill, heldout_texts, line_infill, line_sampler, sign_test
    from diffill.model.backend import DiffillBackend

    texts = heldout_texts(tiny_sources)
    models = [("shipped", shipped_engine.model, shipped_engine.tok), ("tiny", tiny_engine.model, tiny_engine.tok),
              ("shipped again", shipped_engine.model, shipped_engine.tok)]
    plain = line_sampler(0)  # threshold decoding: on these 50 lines the shipped model gets a few right with it
    report = compare_line_infill(models, texts, seeds=[0, 1], cases=25, sampler_cfg=plain)
    assert report["cases"] == 50 and report["seeds"] == [0, 1]
    shipped, tiny, again = report["models"]
    holes = line_cases(texts, 25, 0) + line_cases(texts, 25, 1)
    alone = line_infill(DiffillBackend(shipped_engine.model, shipped_engine.tok), shipped_engine.tok, holes,
                        plain)
    assert shipped["line_infill_exact_match"] == alone["line_infill_exact_match"] == shipped["exact"] / 50
    assert shipped["exact"] > 0 and tiny["exact"] == 0, "a random 2-layer model fills no line exactly"
    vs_tiny, vs_itself = report["pairs"]
    assert (vs_tiny["only_first"], vs_tiny["only_second"]) == (shipped["exact"], 0)
    assert vs_tiny["p_value"] == sign_test(shipped["exact"], 0)
    assert (vs_itself["only_first"], vs_itself["only_second"], vs_itself["p_value"]) == (0, 0, 1.0)
    assert again["exact"] == shipped["exact"]


def test_line_infill_reads_the_window_its_model_was_trained_with(narrow_checkpoint, sampled_requests):
    from diffill.evaluation import LineCase, line_infill
    from diffill.model.backend import DiffillBackend
    from diffill.model.loading import load_checkpoint
    from diffill.model.sampler import SamplerConfig

    model, tok = load_checkpoint(narrow_checkpoint)
    before = "".join(f"x{i} = {i}\n" for i in range(30))
    line_infill(DiffillBackend(model, tok), tok, [LineCase(before, "\n" + before, "y = 1")], SamplerConfig(max_steps=2))
    assert 0 < len(sampled_requests[0].prefix) <= 6 and 0 < len(sampled_requests[0].suffix) <= 3


def test_held_out_files_with_a_near_twin_in_training_are_left_out_unless_kept(tiny_corpus, tmp_path):
    from diffill.evaluation import heldout_split
    from diffill.model.corpus import build_corpus

    src = tmp_path / "src"
    (src / "vendor").mkdir(parents=True)
    body = "".join(f"def f_{i}(x):\n    return x + {i}\n\n" for i in range(30))
    (src / "mod.py").write_text(body)
    (src / "vendor" / "mod.py").write_text(body.replace("x + 7\n", "x + 77\n"))  # another version
    (src / "other.py").write_text("".join(f"VALUE_{i} = {i} * 3\n" for i in range(30)))
    corpus = tmp_path / "c"
    build_corpus(corpus, [src], tokenizer=tiny_corpus / "tokenizer", held_paths={"vendor/mod.py", "other.py"})

    honest = heldout_split(corpus)
    assert honest.texts == [(src / "other.py").read_text()]
    report = honest.report()
    assert (report["heldout_files"], report["near_twin_files_left_out"]) == (1, 1)
    assert report["near_twin_lines_left_out"] == 60 and report["heldout_lines"] == 30
    assert report["near_twin_rule"]["jaccard"] == 0.5

    kept = heldout_split(corpus, keep_near_twins=True)
    assert len(kept.texts) == 2 and kept.report()["near_twin_files_left_out"] == 0
    assert kept.report()["near_twin_rule"] is None


def test_a_folder_of_sources_has_no_training_split_to_leave_twins_out_by(tiny_sources):
    from diffill.evaluation import heldout_split, heldout_texts

    split = heldout_split(tiny_sources)
    assert split.texts == heldout_texts(tiny_sources) and split.left_out_files == 0 and split.rule is None


def test_the_peer_fills_held_out_lines_greedily_from_its_own_window(tiny_causal_checkpoint, tiny_sources):
    from diffill.evaluation import LINE_BUDGET, peer_line_infill
    from diffill.model.loading import load_network
    from diffill.model.peer import PeerCompleter

    texts = [p.read_text() for p in sorted(tiny_sources.glob("*.py"))]
    cases = line_cases(texts, 4, seed=0)
    model, tok = load_network(tiny_causal_checkpoint)
    figures = peer_line_infill(model, tok, cases)
    fills = [PeerCompleter(model, tok).fill(c.prefix, c.suffix, LINE_BUDGET) for c in cases]
    assert figures["cases"] == 4
    assert figures["line_infill_exact_match"] == sum(f.text.strip() == c.target.strip()
                                                     for f, c in zip(fills, cases)) / 4
    assert figures["forward_passes"] == sum(f.forward_passes for f in fills) / 4 >= 1
