"""Fills that must not change by accident: a fixed set of holes (one-line, mid-word, multi-line,
selections, copying from a neighbour, the workspace and the document itself, CRLF; beam search and
threshold decoding; several languages) filled by the shipped model.

A change to decoding, copying or serving that is meant to be behaviour-neutral keeps every fill,
alternative and syntax verdict byte for byte. A change meant to alter fills regenerates the
expected file, and its diff shows what changed:

    python tests/test_golden_fills.py --write
"""

from __future__ import annotations

import json
import sys
import tempfile
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

TS = '''interface Point {
  x: number;
  y: number;
}

export function distance(a: Point, b: Point): number {
  const dx = a.x - b.x;
  const dy = a.y - b.y;
  return Math.sqrt(<HOLE>);
}

export function translate(p: Point, by: Point): Point {
  return { x: p.x + by.x, y: p.y + b<HOLE_WORD> };
}
'''

JS_SELECTION = '''function isEmpty(list) {
  <SEL>if (list.length === 0) {
    return true;
  }
  return false;</SEL>
}
'''

GO_WORD = '''package main

import "strings"

func shout(s string) string {
	return strings.ToUp<HOLE>
}
'''

RUST_BLOCK = '''fn count_even(values: &[i32]) -> usize {
    let mut n = 0;
    for v in values {
<HOLE>
    }
    n
}
'''

CONFIG = '''class Config:
    def load(self, data):
        self.name = data["name"]
        self.path = data["path"]
        self.size = data["size"]

    def reload(self, data):
'''
# a blank line between lines that the document repeats elsewhere: the engine bridges it, unsampled
PY_REPEATED = CONFIG + '        self.name = data["name"]\n        <HOLE>\n        self.size = data["size"]\n'
# the line before the next lines, which the document has elsewhere (a bridge from the next lines alone)
PY_PRECEDING = CONFIG + '        self.<HOLE>\n        self.path = data["path"]\n        self.size = data["size"]\n'

# a library index holds this file: its lines continue a blank line and a call
LIBRARY_FILE = '''import argparse


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="tool", description="Convert the input files.")
    parser.add_argument("--verbose", action="store_true", help="say what is done")
    parser.add_argument("--output", default="-", help="where the result goes")
    return parser.parse_args(argv)
'''

OUTPUT_LINE = '    parser.add_argument("--output", default="-", help="where the result goes")'
FROM_LIBRARY = LIBRARY_FILE.replace(OUTPUT_LINE, "    <HOLE>")
FROM_LIBRARY_CALL = (LIBRARY_FILE[: LIBRARY_FILE.index(OUTPUT_LINE)].replace("def parse_args(", "def options(")
                     .replace('help="say what is done")', "<HOLE>)"))

# the workspace holds a file this one repeats (copying from the workspace index)
WORKSPACE_FILE = '''import os


def cache_dir(app):
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, app)
'''

FROM_WORKSPACE = '''import os


def config_dir(app):
    base = os.environ.get("XDG_CACHE_HOME") <HOLE>
    return os.path.join(base, app)
'''


def _hole(name: str, doc: str, language: str, *, neighbors: tuple[str, ...] = (), crlf: bool = False,
          marker: str = "<HOLE>", beam: int | None = None, workspace: bool = False, library: bool = False) -> dict:
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
            "neighbors": list(neighbors), "beam": beam, "workspace": workspace, "library": library}


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
    _hole("typescript call arguments", TS, "typescript"),
    _hole("typescript mid-word", TS, "typescript", marker="<HOLE_WORD>"),
    _hole("javascript selection", JS_SELECTION, "javascript"),
    _hole("go mid-word", GO_WORD, "go"),
    _hole("rust block body", RUST_BLOCK, "rust"),
    _hole("rust block body, beam search", RUST_BLOCK, "rust", beam=4),
    _hole("python call arguments, threshold decoding", PY_CALL, "python", beam=0),
    _hole("python line the document bridges", PY_REPEATED, "python"),
    _hole("python line the document bridges, threshold decoding", PY_REPEATED, "python", beam=0),
    _hole("python line before the next lines", PY_PRECEDING, "python"),
    _hole("python line before the next lines, threshold decoding", PY_PRECEDING, "python", beam=0),
    _hole("python blank line the library continues", FROM_LIBRARY, "python", library=True),
    _hole("python call the library continues", FROM_LIBRARY_CALL, "python", library=True),
    _hole("python call the library continues, threshold decoding", FROM_LIBRARY_CALL, "python", beam=0,
          library=True),
    _hole("python copied from the workspace", FROM_WORKSPACE, "python", workspace=True),
    _hole("python copied from the workspace, threshold decoding", FROM_WORKSPACE, "python", beam=0,
          workspace=True),
]


def fill_all() -> list[dict]:
    import torch

    from diffill.engine import Engine, EngineConfig, InfillRequest
    from diffill.model.library_index import build_index

    torch.manual_seed(0)
    # float32 and one thread: the same arithmetic on every machine; no library index from the cache.
    # Every language: some holes are in languages the shipped model was not trained on (it lists Python).
    # Each context encoded whole: a hole's fill does not depend on the holes filled before it
    plain = Engine(EngineConfig(dtype="float32", threads=1, library=None, languages="all", context_reuse=False))
    out = []
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as library:
        (Path(folder) / "paths.py").write_text(WORKSPACE_FILE, encoding="utf-8")
        build_index(plain.tok, [plain.tok.encode(LIBRARY_FILE)], Path(library) / "index", ["golden"])
        indexed = Engine(EngineConfig(dtype="float32", threads=1, library=str(Path(library) / "index"),
                                      languages="all", context_reuse=False))
        for h in HOLES:
            engine = indexed if h["library"] else plain
            engine.index_workspace([folder] if h["workspace"] else [])
            sampler = engine.with_sampler(beam=h["beam"]) if h["beam"] is not None else None
            r = engine.infill(InfillRequest(h["text"], h["start"], h["end"], language=h["language"],
                                            neighbors=tuple(h["neighbors"]),
                                            path=str(Path(folder) / "config.py") if h["workspace"] else None),
                              sampler=sampler)
            out.append({"name": h["name"], "text": r.text, "start": r.start, "end": r.end,
                        "alternatives": r.alternatives, "syntax": r.syntax, "multiline": r.multiline,
                        "forward_passes": r.forward_passes, "confidence": round(r.confidence, 4),
                        "alternative_confidences": [round(c, 4) for c in r.alternative_confidences]})
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
    assert {h["language"] for h in HOLES} >= {"python", "javascript", "typescript", "go", "rust"}
    assert {h["beam"] for h in HOLES} >= {None, 0, 4}
    assert any(h["workspace"] for h in HOLES) and any(h["library"] for h in HOLES)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_golden_fills.py --write")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    EXPECTED.write_text(json.dumps(fill_all(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {EXPECTED}")
