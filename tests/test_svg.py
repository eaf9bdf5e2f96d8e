"""Static SVG plots: round axes, one mark per value, escaped text, no scripts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from diffill.bench import svg

NS = "{http://www.w3.org/2000/svg}"


def _marks(doc: str, tag: str, cls: str) -> list[ET.Element]:
    root = ET.fromstring(doc)
    return [e for e in root.iter(f"{NS}{tag}") if e.get("class") == cls]


def test_axis_ticks_are_round_and_cover_the_range():
    a = svg.nice_axis(0, 0.83)
    assert a.lo <= 0 and a.hi >= 0.83
    assert a.ticks == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    b = svg.nice_axis(3, 3)  # an empty range still gets an axis
    assert b.hi > b.lo
    assert b.scale(b.lo, 10, 20) == 10 and b.scale(b.hi, 10, 20) == 20


def test_histogram_counts_every_value_once():
    doc = svg.histogram("h", "t", {"a": [1, 2, 2, 3, 50], "b": [10, 10]}, "ms", bins=10)
    bars = _marks(doc, "rect", "bar")
    counts = {}
    for bar in bars:
        name, rest = bar.find(f"{NS}title").text.split(": ", 1)
        counts[name] = counts.get(name, 0) + int(rest.split(" ")[0])
    assert counts == {"a": 5, "b": 2}
    assert ET.fromstring(doc).get("id") == "h"


def test_scatter_draws_a_point_per_result_and_labels_it():
    doc = svg.scatter("s", "t", {"k": [(1.0, 0.3, "one"), (2.5, 0.29, "fast")]}, "x", "y")
    assert len(_marks(doc, "circle", "point")) == 2
    texts = [e.text for e in ET.fromstring(doc).iter(f"{NS}text")]
    assert "one" in texts and "fast" in texts


def test_bars_skip_missing_values():
    doc = svg.bars("b", "t", ["g1", "g2"], {"with": [0.5, None], "without": [0.4, 0.2]}, "rate")
    assert len(_marks(doc, "rect", "bar")) == 3


def test_text_is_escaped_and_nothing_is_scripted():
    doc = svg.bars("b", "<script>alert(1)</script>", ["<g>"], {"a&b": [1.0]}, "y")
    assert "<script" not in doc
    ET.fromstring(doc)  # still well-formed XML


def test_empty_inputs_are_refused():
    with pytest.raises(ValueError):
        svg.histogram("h", "t", {"a": []}, "ms")
    with pytest.raises(ValueError):
        svg.scatter("s", "t", {}, "x", "y")
    with pytest.raises(ValueError):
        svg.bars("b", "t", ["g"], {"a": [None]}, "y")
