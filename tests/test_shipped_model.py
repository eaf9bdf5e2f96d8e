"""The shipped default model: small, safetensors only, loads, and fills a hole validly."""

import json

from conftest import REPO, SHIPPED
import tree_sitter as ts
import tree_sitter_python

from diffill.engine import InfillRequest


def test_shipped_folder_is_small_safetensors_with_a_card(shipped_engine):
    files = {p.name for p in SHIPPED.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= files
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in files)
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 30 * 2**20
    card = (SHIPPED / "README.md").read_text()
    assert "Recipe" in card and "line exact match" in card
    config = json.loads((SHIPPED / "config.json").read_text())
    assert config["model_type"] == "diffill" and config["vocab_size"] == shipped_engine.tok.vocab_size


def test_shipped_model_fills_the_example_and_keeps_it_parsing(shipped_engine):
    path = REPO / "diffill" / "examples" / "stats.py"
    text = path.read_text()
    at = text.rindex("    \n") + 4
    r = shipped_engine.infill(InfillRequest(text, at, at, path=str(path)))
    assert r.forward_passes >= 1 and r.steps >= 1
    assert "\x00" not in r.text
    filled = (text[:at] + r.text + text[at:]).encode()
    tree = ts.Parser(ts.Language(tree_sitter_python.language())).parse(filled)
    assert not tree.root_node.has_error, r.text
