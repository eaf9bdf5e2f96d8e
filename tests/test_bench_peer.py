import json
from pathlib import Path

import pytest

from diffill.bench.peer import FIGURES, FILLERS, Row, format_report, ratios
from diffill.cli import main

TINY_HUMANEVAL = Path(__file__).parent / "data" / "humaneval_infill_tiny.jsonl"


def _row(name, **figures):
    base = dict(cases=4, exact_match=0.5, edit_similarity=0.5, p50_ms=10.0, p95_ms=20.0, forward_passes=4.0)
    return Row(name, **{**base, **figures})


def test_ratios_divide_each_diffusion_figure_by_the_peers():
    rows = {"diffusion_alone": _row("diffusion_alone", exact_match=0.25, p50_ms=30.0, forward_passes=2.0),
            "diffusion_defaults": _row("diffusion_defaults", exact_match=1.0),
            "peer": _row("peer", exact_match=0.5, edit_similarity=0.0)}
    r = ratios(rows)
    assert set(r) == {"diffusion_alone", "diffusion_defaults"} and set(r["diffusion_alone"]) == set(FIGURES)
    assert r["diffusion_alone"]["exact_match"] == 0.5 and r["diffusion_alone"]["p50_ms"] == 3.0
    assert r["diffusion_alone"]["forward_passes"] == 0.5 and r["diffusion_defaults"]["exact_match"] == 2.0
    assert r["diffusion_alone"]["edit_similarity"] is None  # the peer's is 0
    assert r["diffusion_alone"]["pass_at_1"] is None  # no HumanEval run


def test_bench_peer_fills_the_same_holes_with_all_three(tiny_checkpoint, tiny_causal_checkpoint, tiny_sources,
                                                        capsys):
    rc = main(["bench", "peer", "--peer", str(tiny_causal_checkpoint), "--model", str(tiny_checkpoint),
               "--cases", "3", "--corpus", str(tiny_sources), "--humaneval-file", str(TINY_HUMANEVAL),
               "--humaneval", "1", "--threads", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["peer"] == str(tiny_causal_checkpoint) and out["threads"] == 1
    for section, cases in (("lines", 3), ("humaneval", 1)):
        rows = out[section]["rows"]
        assert list(rows) == list(FILLERS)
        for r in rows.values():
            assert r["cases"] == cases and r["forward_passes"] >= 1 and 0 < r["p50_ms"] <= r["p95_ms"]
            assert 0 <= r["exact_match"] <= 1 and 0 <= r["edit_similarity"] <= 1
            assert (r["pass_at_1"] is None) == (section == "lines")
        assert set(out[section]["ratios"]) == {"diffusion_alone", "diffusion_defaults"}
    assert "near_twin_files_left_out" in out["lines"]
    text = format_report({**out, "lines": {**out["lines"], "rows": {k: Row(**v) for k, v in out["lines"]["rows"].items()}},
                          "humaneval": {**out["humaneval"],
                                        "rows": {k: Row(**v) for k, v in out["humaneval"]["rows"].items()}}})
    assert "autoregressive peer" in text and "HumanEval" in text and "/ peer" in text


@pytest.mark.parametrize("bad", [["--cases", "0"], ["--humaneval", "0"], ["--humaneval-file", "/no/such.jsonl"]])
def test_bench_peer_refuses_bad_input(tiny_causal_checkpoint, bad):
    assert main(["bench", "peer", "--peer", str(tiny_causal_checkpoint), *bad]) == 2


def test_bench_peer_refuses_a_bidirectional_peer(tiny_checkpoint, tiny_sources, capsys):
    rc = main(["bench", "peer", "--peer", str(tiny_checkpoint), "--model", str(tiny_checkpoint),
               "--cases", "1", "--corpus", str(tiny_sources)])
    assert rc == 2 and "causal" in capsys.readouterr().err
