"""Fills that must not change by accident: a fixed set of holes (one-line, mid-word, multi-line,
selections, copying from a neighbour, CRLF; several languages) filled by the shipped model.

A change to decoding, copying or serving that is meant to be behaviour-neutral keeps every fill,
alternative and syntax verdict byte for byte. A change meant to alter fills regenerates the
expected file, and its diff shows what changed:

    python tests/test_golden_fills.py --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EXPECTED = Path(__file__).parent / "data" / "golden_fills.json"

PY_MODULE = '''import math


def mean(values):
    """The arithmetic mean of a non-empty sequence."""
    return sum(values) / len(values)


def variance(values):
    m = mean(values)
    return sum((v - m) ** 2 for v in values) / len(values)


def stdev(values):
    <HOLE>


def process_item(item):
    return item.strip().lower()


def process_all(items):
    result = []
    for item in items:
        result.append(proc<HOLE_WORD>)
    return result
'''

PY_CALL = '''import math


def norm(vector):
    return math.sqrt(sum(<HOLE>))
'''

PY_CLASS = '''class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
<HOLE>

    def __len__(self):
        return len(self.items)
'''

PY_SELECTION = '''def clamp(value, low, high):
    <SEL>if value < low:
        return low
    if value > high:
        return high</SEL>
    return value
'''

JS = '''function sum(values) {
  let total = 0;
  for (const v of values) {
    <HOLE>
  }
  return total;
}
'''

GO = '''package main

import "fmt"

func main() {
	names := []string{"a", "b"}
	for _, name := range names {
		<HOLE>
	}
}
'''

RUST = '''fn largest(values: &[i32]) -> i32 {
    let mut best = values[0];
    for &v in values {
        if v > best {
            <HOLE>
        }
    }
    best
}
'''

NEIGHBOR = '''def load_config(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
'''

COPIED = '''import json


def read_settings(path):
    with open(path, encoding="utf-8") as fh:
        <HOLE>
'''


def _hole(name: str, doc: str, language: str, *, neighbors: tuple[str, ...] = (), crlf: bool = False,
          marker: str = "<HOLE>") -> dict:
    if "<SEL>" in doc:
        start = doc.index("<SEL>")
        doc = doc.replace("<SEL>", "", 1)
        end = doc.index("</SEL>")
        doc = doc.replace("</SEL>", "", 1)
    else:
        other = "<HOLE_WORD>" if marker == "<HOLE>" else "<HOLE>"
        doc = doc.replace(other, "")
        start = end = doc.index(marker)
        doc = doc.replace(marker, "", 1)
    if crlf:
        start += doc[:start].count("\n")
        end += doc[:end].count("\n")
        doc = doc.replace("\n", "\r\n")
    return {"name": name, "text": doc, "start": start, "end": end, "language": language,
            "neighbors": list(neighbors)}


HOLES = [
    _hole("python empty body line", PY_MODULE, "python"),
    _hole("python mid-word", PY_MODULE, "python", marker="<HOLE_WORD>"),
    _hole("python call arguments", PY_CALL, "python"),
    _hole("python method body", PY_CLASS, "python"),
    _hole("python selection", PY_SELECTION, "python"),
    _hole("python copied from a neighbour", COPIED, "python", neighbors=(NEIGHBOR,)),
    _hole("python CRLF", PY_MODULE, "python", crlf=True),
    _hole("javascript loop body", JS, "javascript"),
    _hole("go loop body", GO, "go"),
    _hole("rust if body", RUST, "rust"),
]


def fill_all() -> list[dict]:
    import torch

    from diffill.engine import Engine, EngineConfig, InfillRequest

    torch.manual_seed(0)
    # float32 and one thread: the same arithmetic on every machine; no library index from the cache
    engine = Engine(EngineConfig(dtype="float32", threads=1, library=None))
    out = []
    for h in HOLES:
        r = engine.infill(InfillRequest(h["text"], h["start"], h["end"], language=h["language"],
                                        neighbors=tuple(h["neighbors"])))
        out.append({"name": h["name"], "text": r.text, "start": r.start, "end": r.end,
                    "alternatives": r.alternatives, "syntax": r.syntax, "multiline": r.multiline})
    return out


def test_the_fixed_holes_are_filled_as_recorded():
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    got = fill_all()
    assert [g["name"] for g in got] == [e["name"] for e in expected], "the holes changed: regenerate"
    for g, e in zip(got, expected):
        assert g == e, f"{g['name']}: regenerate with `python tests/test_golden_fills.py --write` if intended"


def test_every_kind_of_hole_is_covered():
    kinds = {(h["start"] == h["end"], "\r\n" in h["text"], bool(h["neighbors"])) for h in HOLES}
    assert (False, False, False) in kinds  # a selection
    assert (True, True, False) in kinds and (True, False, True) in kinds
    assert {h["language"] for h in HOLES} >= {"python", "javascript", "go", "rust"}


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_golden_fills.py --write")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    EXPECTED.write_text(json.dumps(fill_all(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {EXPECTED}")
