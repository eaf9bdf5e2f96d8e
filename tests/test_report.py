"""``diffill bench report``: one self-contained page, plots from the benches' JSON, honest gaps,
rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import pytest

from diffill.bench.chromium import dump_dom, find_chromium
from diffill.bench.report import INPUTS, Input, gather, measure, render
from diffill.cli import main

PLOTS = ["plot-accuracy-speed", "plot-latency", "plot-validity", "plot-adapter", "plot-abstain"]

SPEED = {"results": [
    {"kind": "single_line", "setting": s, "p50_ms": p50, "p95_ms": p50 * 2, "tokens_per_forward": tpf,
     "exact_match": em, "edit_similarity": 0.6, "cases": 200, "latencies_ms": [p50 - 5, p50, p50 + 30]}
    for s, p50, tpf, em in [("one_per_step", 60.0, 1.0, 0.31), ("threshold", 30.0, 2.4, 0.30),
                            ("threshold_cache", 20.0, 2.5, 0.29)]
] + [{"kind": "multi_line", "setting": "threshold", "p50_ms": 150.0, "p95_ms": 300.0,
      "tokens_per_forward": 3.6, "exact_match": 0.07, "edit_similarity": 0.4, "cases": 200}],
    "model": "diffill-base", "threads": 2}
VALIDITY = {"constrained": {"validity": 1.0, "exact_match": 0.21, "p50_ms": 44.0},
            "unconstrained": {"validity": 0.83, "exact_match": 0.20, "p50_ms": 39.0},
            "overhead": 0.128, "grammars": {"python": True, "go": False},
            "by_kind": {"block": {"cases": 3, "constrained": {"validity": 1.0, "exact_match": 0.0},
                                  "unconstrained": {"validity": 0.67, "exact_match": 0.0}}}}
HELDOUT = {"line_infill_exact_match": 0.26, "masked_token_accuracy": 0.5, "cases": 500, "model": "m"}
HELDOUT_BASE = {"line_infill_exact_match": 0.22, "masked_token_accuracy": 0.48, "cases": 500, "model": "m"}
ADAPT = {"before": {"line_infill_exact_match": 0.18}, "after": {"line_infill_exact_match": 0.25},
         "files": 120, "tokens": 300000, "adapter": "repo/.diffill/adapter", "minutes": 10}
HUMANEVAL = {"pass_at_1": 0.1, "exact_match": 0.05, "cases": 6, "seconds": 3.2, "model": "m",
             "adapter": None, "by_variant": {"single-line": {"cases": 3, "pass_at_1": 0.2, "exact_match": 0.1}}}
CURVE = [{"threshold": t, "coverage": c, "shown": int(300 * c), "precision": p}
         for t, c, p in [(0.0, 1.0, 0.2), (0.2, 0.5, 0.35), (0.4, 0.3, 0.5), (0.5, 0.2, 0.62), (0.6, 0.1, 0.7)]]
ABSTAIN = {"threshold": 0.5, "precision": 0.62, "coverage": 0.2, "ece": 0.03, "cases": 300, "curve": CURVE,
           "kinds": {"line": {"threshold": 0.5, "precision": 0.62, "coverage": 0.2, "ece": 0.03, "cases": 300,
                              "curve": CURVE}}}
ALL = {"speed": SPEED, "validity": VALIDITY, "heldout": HELDOUT, "heldout_base": HELDOUT_BASE,
       "adapt": ADAPT, "humaneval": HUMANEVAL, "abstain": ABSTAIN}


@pytest.fixture
def inputs(tmp_path) -> dict[str, str]:
    files = {}
    for name, data in ALL.items():
        files[name] = str(tmp_path / f"{name}.json")
        Path(files[name]).write_text(json.dumps(data))
    return files


def _options(files: dict[str, str]) -> list[str]:
    return [x for name, path in files.items() for x in (f"--{name.replace('_', '-')}", path)]


def _svg_ids(page: str) -> set[str]:
    return set(re.findall(r'<svg id="([^"]+)"', page))


def test_every_plot_is_drawn_from_the_benches_json(inputs):
    page = render(gather(inputs, run_missing=False))
    assert _svg_ids(page) == set(PLOTS)
    assert "not measured" not in page
    assert "threshold_cache" in page and "Latency overhead of the constraint" in page
    assert "pass@1" in page
    assert "<td>block</td>" in page  # validity by span kind


def test_latency_histogram_shows_the_default_setting_of_the_speed_results(inputs, tmp_path):
    f = gather(inputs, run_missing=False)
    assert f.latencies == {"single_line (threshold)": [25.0, 30.0, 60.0]}
    assert f.latency_source == f"from {inputs['speed']}"
    cached = dict(SPEED, default={"cache": True, "threshold": 0.9})
    Path(inputs["speed"]).write_text(json.dumps(cached))
    assert list(gather(inputs, run_missing=False).latencies) == ["single_line (threshold_cache)"]
    # newer results name the engine's setting for each kind of hole
    Path(inputs["speed"]).write_text(json.dumps(dict(SPEED, defaults={"single_line": "threshold"})))
    assert list(gather(inputs, run_missing=False).latencies) == ["single_line (threshold)"]


def test_missing_figures_are_marked_not_measured(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["bench", "report", str(out), "--no-run", "--png", "none"]) == 0
    page = out.read_text()
    assert _svg_ids(page) == set()
    for plot_id in PLOTS:
        block = re.search(rf'<div class="not-measured" id="{plot_id}">(.*?)</div>', page)
        assert block and "not measured" in block.group(1)
    assert "--no-run" in page


def test_adapter_gain_needs_both_runs(inputs):
    only_served = {"heldout": inputs["heldout"]}
    page = render(gather(only_served, run_missing=False))
    assert 'id="plot-adapter"' in page and "plot-adapter" not in _svg_ids(page)
    page = render(gather({"adapt": inputs["adapt"]}, run_missing=False))
    assert "plot-adapter" in _svg_ids(page)


def test_a_file_of_the_wrong_shape_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "speed.json"
    bad.write_text(json.dumps({"p50_ms": 3}))
    assert main(["bench", "report", str(tmp_path / "r.html"), "--speed", str(bad), "--no-run"]) == 2
    assert "missing results" in capsys.readouterr().err
    assert main(["bench", "report", str(tmp_path / "r.html"), "--speed", str(tmp_path / "none.json"),
                 "--no-run"]) == 2


def test_a_corpus_without_manifest_is_refused(tmp_path, capsys):
    assert main(["bench", "report", str(tmp_path / "r.html"), "--corpus", str(tmp_path)]) == 2
    assert "not a corpus folder" in capsys.readouterr().err


def test_a_bench_that_fails_to_run_degrades_to_not_measured():
    data, source = measure(Input("nope", "`diffill bench nope`", ("x",), ("bench", "nope", "--json")),
                           cases=1, model=None)
    assert data is None
    assert "failed" in source and "diffill bench nope --json" in source


def test_a_bench_run_here_feeds_the_report(tiny_checkpoint):
    data_file = Path(__file__).parent / "data" / "humaneval_infill_tiny.jsonl"
    inp = Input("humaneval", "`diffill eval humaneval-infill --json`", ("pass_at_1", "exact_match"),
                ("eval", "humaneval-infill", str(data_file), "--json", "--limit", "{cases}"))
    data, source = measure(inp, cases=1, model=str(tiny_checkpoint))
    assert data is not None and data["cases"] == 1
    assert source.startswith("measured for this report: `diffill eval humaneval-infill")
    assert f"--model {tiny_checkpoint}" in source


def test_every_input_has_an_option_and_a_known_shape():
    assert {i.name for i in INPUTS} == set(ALL)
    for i in INPUTS:
        assert all(k in ALL[i.name] for k in i.required)


def test_page_is_self_contained(inputs):
    page = render(gather(inputs, run_missing=False))
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)\s*=', page)
    assert set(re.findall(r"https?://[^\s\"']+", page)) <= {"http://www.w3.org/2000/svg"}


# -- rendered by Chromium --------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="headless Chromium not installed (Debian: apt-get update && apt-get install -y chromium)")


def _png_pixels(png: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed (still filtered) scanlines of a PNG."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    return width, height, zlib.decompress(idat)


@needs_chromium
def test_chromium_renders_every_plot(inputs, tmp_path):
    out = tmp_path / "report.html"
    assert main(["bench", "report", str(out), "--no-run", "--png", "none", *_options(inputs)]) == 0
    dom = dump_dom(out)
    for plot_id in PLOTS:
        m = re.search(rf'<svg id="{plot_id}".*?</svg>', dom, re.S)
        assert m, plot_id
        assert re.search(r"<(rect|circle) class=\"(bar|point)\"", m.group(0)), plot_id


@needs_chromium
def test_main_plot_png_is_not_blank(inputs, tmp_path):
    out = tmp_path / "report.html"
    png = tmp_path / "main.png"
    assert main(["bench", "report", str(out), "--no-run", "--png", str(png), *_options(inputs)]) == 0
    width, height, raw = _png_pixels(png)
    assert (width, height) == (700, 360)
    assert len(set(raw)) > 20  # a blank page decodes to a handful of byte values
