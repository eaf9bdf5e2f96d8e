"""The language registry: 9 grammars from the per-language wheels, found by languageId or extension."""

import logging

import pytest

from diffill.grammar.registry import GRAMMAR_NAMES, by_extension, by_language_id, grammar, resolve

HELLO = {
    "python": "print('hi')\n",
    "javascript": "console.log('hi');\n",
    "typescript": "const x: number = 1;\n",
    "tsx": "const e = <div>hi</div>;\n",
    "go": "package main\n\nfunc main() {}\n",
    "rust": "fn main() {}\n",
    "java": "class A { void f() {} }\n",
    "c": "int main(void) { return 0; }\n",
    "cpp": "int main() { std::vector<int> v; }\n",
}


def test_nine_grammars_load_and_parse_offline():
    assert set(GRAMMAR_NAMES) == set(HELLO)
    for name in GRAMMAR_NAMES:
        tree = grammar(name).parser().parse(HELLO[name].encode())
        assert not tree.root_node.has_error, name


@pytest.mark.parametrize("language_id, name", [
    ("python", "python"), ("javascript", "javascript"), ("javascriptreact", "javascript"),
    ("typescript", "typescript"), ("typescriptreact", "tsx"), ("go", "go"), ("rust", "rust"),
    ("java", "java"), ("c", "c"), ("cpp", "cpp"), ("Python", "python"),
])
def test_lookup_by_lsp_language_id(language_id, name):
    assert by_language_id(language_id).name == name


@pytest.mark.parametrize("path, name", [
    ("a.py", "python"), ("src/x.pyi", "python"), ("web/app.mjs", "javascript"), ("C.jsx", "javascript"),
    ("m.ts", "typescript"), ("ui/View.tsx", "tsx"), ("main.go", "go"), ("lib.rs", "rust"),
    ("A.java", "java"), ("x.c", "c"), ("x.h", "c"), ("x.cpp", "cpp"), ("X.HPP", "cpp"), (".rs", "rust"),
])
def test_lookup_by_extension(path, name):
    assert by_extension(path).name == name


def test_unknown_language_is_none():
    assert by_language_id("cobol") is None
    assert by_extension("notes.txt") is None
    assert by_extension("Makefile") is None
    with pytest.raises(KeyError):
        grammar("cobol")


def test_resolve_prefers_language_id_and_notes_unknown_once(caplog):
    assert resolve("rust", "x.py").name == "rust"
    assert resolve(None, "x.py").name == "python"
    assert resolve("plaintext", "x.go").name == "go"
    with caplog.at_level(logging.WARNING, logger="diffill.grammar.registry"):
        assert resolve("brainfuck-test", None) is None
        assert resolve("brainfuck-test", None) is None
    notes = [r for r in caplog.records if "brainfuck-test" in r.getMessage()]
    assert len(notes) == 1 and "without the syntax constraint" in notes[0].getMessage()
