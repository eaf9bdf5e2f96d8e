"""``diffill bench validity``: holes of every span kind, both runs, the JSON shape."""

import json

from diffill.bench.validity import KINDS, check_latency, compare, draw_holes
from diffill.cli import main


def _texts(tiny_sources):
    return [p.read_text() for p in sorted(tiny_sources.glob("*.py"))]


def test_holes_cover_every_span_kind_and_fit_their_budget(tiny_sources):
    holes = draw_holes(_texts(tiny_sources), 20, lambda s: len(s) // 4, seed=1)
    assert len(holes) == 20 and {h.kind for h in holes} == set(KINDS)
    for h in holes:
        assert h.target.strip() and h.text[: h.at] + h.target + h.text[h.at :] != h.text
    assert holes == draw_holes(_texts(tiny_sources), 20, lambda s: len(s) // 4, seed=1)


def test_constrained_run_is_always_valid_and_figures_are_complete(tiny_engine, tiny_sources):
    holes = draw_holes(_texts(tiny_sources), 10, lambda s: len(tiny_engine.tok.encode(s)))
    out = compare(tiny_engine, holes)
    assert out["constrained"]["validity"] == 1.0
    assert set(out["unconstrained"]) == {"validity", "exact_match", "p50_ms"}
    assert out["overhead"] is not None and out["cases"] == 10
    assert sum(out["outcomes"].values()) == 10 and set(out["outcomes"]) <= {"valid", "repaired", "truncated", "empty"}
    exact = {name: round(out[name]["exact_match"] * 10) for name in ("constrained", "unconstrained")}
    paired = out["paired"]
    assert exact["constrained"] - exact["unconstrained"] == paired["only_constrained"] - paired["only_unconstrained"]
    assert tiny_engine.config.constrained  # untouched: each call passes its own options


def test_check_latency_is_measured_on_a_thousand_line_file(tiny_sources):
    out = check_latency(_texts(tiny_sources))
    assert out["check_file_lines"] >= 1000 and out["check_edits"] > 5 and out["check_ms"] > 0


def _heldout_corpus(folder, texts):
    """A corpus folder whose held-out split is ``texts`` (the layout ``model.corpus`` writes)."""
    folder.mkdir()
    with open(folder / "heldout-00000.jsonl", "w") as fh:
        for i, t in enumerate(texts):
            fh.write(json.dumps({"path": f"f{i}.py", "text": t}) + "\n")
    shards = [{"text": "heldout-00000.jsonl", "tokens": "heldout-00000.npy", "files": len(texts)}]
    (folder / "manifest.json").write_text(json.dumps({"splits": {"heldout": {"shards": shards}}}))
    return folder


def test_cli_prints_the_json_shape(tiny_checkpoint, tiny_sources, tmp_path, capsys):
    corpus = _heldout_corpus(tmp_path / "corpus", _texts(tiny_sources))
    code = main(["bench", "validity", "--cases", "5", "--json", "--model", str(tiny_checkpoint),
                 "--corpus", str(corpus), "--threads", "1"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert {"constrained", "unconstrained", "overhead", "check_ms", "grammars"} <= set(out)
    assert out["grammars"] == {g: True for g in out["grammars"]} and len(out["grammars"]) == 9
    assert out["constrained"]["validity"] == 1.0


def test_bad_input_is_a_usage_error(tmp_path):
    assert main(["bench", "validity", "--cases", "0"]) == 2
    assert main(["bench", "validity", "--cases", "3", "--corpus", str(tmp_path)]) == 2  # no manifest
