"""Syntax-aware span selection in every grammar; python_spans keeps its training contract."""

import pytest

from diffill.grammar.registry import GRAMMAR_NAMES
from diffill.grammar.spans import NODE_KINDS, SPAN_KINDS, Span, line_spans, python_spans, select_spans

PY = '''def area(w, h):
    """Area."""
    total = w * h
    if total > 10:
        return max(total, limit(w, h))
    return total
'''


def _texts(text, spans):
    return {(s.kind, text[s.start : s.end]) for s in spans}


def test_python_spans_finds_each_node_kind():
    got = _texts(PY, python_spans(PY))
    assert ("statement", "total = w * h") in got
    assert ("expression", "w * h") in got
    assert ("expression", "limit(w, h)") in got
    assert ("arguments", "w, h") in got  # inside the brackets
    assert any(k == "block" and t.startswith("return max") for k, t in got)
    assert all(isinstance(s, Span) and s.kind in NODE_KINDS for s in python_spans(PY))


def test_python_spans_skips_nodes_with_errors_and_respects_size_limits():
    broken = "def f(:\n    x = (1 +\n"
    assert all("(" not in broken[s.start : s.end] for s in python_spans(broken) if s.kind == "statement")
    assert all(5 <= s.end - s.start + (2 if s.kind == "arguments" else 0) <= 12
               for s in python_spans(PY, min_chars=5, max_chars=12))


def test_python_spans_use_character_offsets_with_non_ascii_text():
    text = "naïve = 'é'\nresult = compute(naïve, 2)\n"
    got = _texts(text, python_spans(text))
    assert ("statement", "result = compute(naïve, 2)") in got
    assert ("arguments", "naïve, 2") in got


def test_select_spans_matches_python_spans_plus_lines():
    spans = select_spans(PY, "python")
    assert [s for s in spans if s.kind != "line"] == python_spans(PY)
    assert _texts(PY, [s for s in spans if s.kind == "line"]) == _texts(PY, line_spans(PY))
    assert ("line", "total = w * h") in _texts(PY, spans)


SNIPPETS = {
    "python": PY,
    "javascript": (
        "function f(a, b) {\n"
        "  const x = foo(a, b.c) + 1;\n"
        "  if (x > 2) { return [1, 2]; }\n"
        "  for (let i = 0; i < 3; i++) { g(i); }\n"
        "  return x ? a : b;\n"
        "}\n"
        "class A { m() { return this.x; } }\n"
        "const h = (y) => y * 2;\n"
    ),
    "typescript": (
        "function f(a: number, b: string): number {\n"
        "  const x = foo(a, b.c) + 1;\n"
        "  if (x > 2) { return 3; }\n"
        "  return x;\n"
        "}\n"
        "interface I { a: number; }\n"
    ),
    "tsx": (
        "function C(p: P) {\n"
        "  const x = foo(p.a) + 1;\n"
        "  return <div>{x}</div>;\n"
        "}\n"
    ),
    "go": (
        "package main\n"
        "\n"
        "func f(a int, b int) int {\n"
        "\tx := foo(a, b) + 1\n"
        "\tif x > 2 {\n"
        "\t\treturn s.c[0]\n"
        "\t}\n"
        "\tfor i := 0; i < 3; i++ {\n"
        "\t\tg(i)\n"
        "\t}\n"
        "\tvar y = T{a: 1}\n"
        "\treturn x\n"
        "}\n"
    ),
    "rust": (
        "fn f(a: i32, b: i32) -> i32 {\n"
        "    let x = foo(a, b) + 1;\n"
        "    if x > 2 { return s.c[0]; }\n"
        '    println!("{}", x);\n'
        "    v.iter().map(|y| y * 2).count();\n"
        "    x\n"
        "}\n"
    ),
    "java": (
        "class A {\n"
        "  int f(int a, int b) {\n"
        "    int x = foo(a, b) + 1;\n"
        "    if (x > 2) { return s.c[0]; }\n"
        "    for (int i = 0; i < 3; i++) { g(i); }\n"
        "    return x > 1 ? a : new B(a);\n"
        "  }\n"
        "}\n"
    ),
    "c": (
        "int f(int a, int b) {\n"
        "  int x = foo(a, b) + 1;\n"
        "  if (x > 2) { return s.c[0]; }\n"
        "  for (int i = 0; i < 3; i++) { g(i); }\n"
        "  return x > 1 ? a : p->b;\n"
        "}\n"
    ),
    "cpp": (
        "int f(int a, int b) {\n"
        "  auto x = foo(a, b) + 1;\n"
        "  if (x > 2) { return s.c[0]; }\n"
        "  for (int i = 0; i < 3; i++) { g(i); }\n"
        "  std::vector<int> v{1, 2};\n"
        "  return x > 1 ? a : p->b;\n"
        "}\n"
    ),
}


@pytest.mark.parametrize("language", GRAMMAR_NAMES)
def test_every_grammar_yields_every_span_kind(language):
    text = SNIPPETS[language]
    spans = select_spans(text, language)
    kinds = {s.kind for s in spans}
    assert {"statement", "expression", "line"} <= kinds, kinds
    assert "block" in kinds and "arguments" in kinds
    for s in spans:
        assert 0 <= s.start < s.end <= len(text)
        if s.kind in ("arguments",) and language != "python":
            assert text[s.start - 1] in "([{<" and text[s.end] in ")]}>"


def test_select_spans_filters_kinds_and_rejects_unknown_ones():
    only = select_spans(PY, "python", kinds=("arguments",))
    assert only and {s.kind for s in only} == {"arguments"}
    with pytest.raises(KeyError):
        select_spans(PY, "cobol")
    with pytest.raises(ValueError):
        select_spans(PY, "python", kinds=("paragraph",))
    assert set(SPAN_KINDS) == set(NODE_KINDS) | {"line"}
