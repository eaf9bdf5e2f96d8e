import pytest

from diffill.errors import DiffillError
from diffill.refactor.selection import compile_query, find_holes, find_query, still_a_hole

PY = '''import abc


def add(a, b):
    """Add two numbers."""
    ...


def sub(a, b): pass


def mul(a, b):
    raise NotImplementedError("later")


class Shape(abc.ABC):
    @abc.abstractmethod
    def area(self):
        raise NotImplementedError

    def describe(self):
        # TODO: fill
        return self.name


def done():
    return 2
'''

JS = '''function twice(x) { throw new Error("not implemented"); }

const half = (x) => {
  // TODO: fill
};

class Box {
  open() { /* diffill: fill */ }
  close() {
    throw new Error('Not implemented');
  }
  size() {
    return 1;
  }
}
'''

GO = '''package main

func square(x int) int {
\tpanic("not implemented")
}

func greet() {
\t// diffill: fill
}

func fine() int {
\treturn 1
}
'''


def fills(text, lang, fill="X"):
    return [r.apply(text, fill) for r in find_holes(text, lang)]


def test_python_placeholders_and_markers_are_found_in_order():
    regions = find_holes(PY, "python")
    assert [(r.kind, r.line) for r in regions] == [
        ("placeholder", 6), ("placeholder", 9), ("placeholder", 13), ("marker", 22)]
    assert [PY[r.start : r.end].strip() for r in regions] == [
        "...", "pass", 'raise NotImplementedError("later")', "# TODO: fill"]


def test_python_docstring_is_kept_and_same_line_body_moves_to_its_own_line():
    first, second = fills(PY, "python")[:2]
    assert '    """Add two numbers."""\n    X\n' in first
    assert "def sub(a, b):\n    X\n" in second


def test_abstract_methods_protocols_and_stubs_are_left_alone():
    src = ("from typing import Protocol, overload\n\n"
           "class P(Protocol):\n    def f(self) -> int: ...\n\n"
           "@overload\ndef g(x: int) -> int: ...\n")
    assert find_holes(src, "python") == []
    assert find_holes("def f():\n    ...\n", "python", placeholders=False) == []


def test_javascript_throw_and_comment_bodies():
    regions = find_holes(JS, "javascript")
    assert [r.line for r in regions] == [1, 4, 8, 10]
    out = fills(JS, "javascript")
    assert out[0].startswith("function twice(x) {\n  X\n}\n")
    assert "const half = (x) => {\n  X\n};" in out[1]
    assert "  open() {\n    X\n  }\n" in out[2]
    assert "  close() {\n    X\n  }\n" in out[3]


def test_typescript_uses_the_javascript_placeholders():
    src = 'function f(a: number): number {\n  throw new Error("not implemented");\n}\n'
    assert len(find_holes(src, "typescript")) == 1


def test_go_panic_and_marker():
    out = fills(GO, "go")
    assert len(out) == 2
    assert "func square(x int) int {\n\tX\n}" in out[0]
    assert "func greet() {\n\tX\n}" in out[1]


def test_rust_todo_macro():
    assert len(find_holes("fn f() -> i32 {\n    todo!()\n}\n", "rust")) == 1


def test_real_bodies_and_other_errors_are_not_holes():
    assert find_holes("def f():\n    pass\n    return 1\n", "python") == []
    assert find_holes('function f() { throw new Error("bad input"); }\n', "javascript") == []
    assert find_holes('package a\nfunc f() { panic("boom") }\n', "go") == []


def test_a_fill_marker_pair_regenerates_the_code_between():
    src = "def f(x):\n    # diffill: fill\n    y = x\n    # diffill: end\n    return y\n"
    [r] = find_holes(src, "python")
    assert r.regenerate
    assert r.apply(src, "y = x + 1") == "def f(x):\n    y = x + 1\n    return y\n"


def test_cursor_hole_removes_the_placeholder_from_the_model_view():
    [r] = find_holes("def f():\n    ...\n", "python")
    doc, start, end = r.hole("def f():\n    ...\n")
    assert start == end and doc == "def f():\n    \n" and doc[:start].endswith("    ")


def test_query_captures_named_fill_are_regenerated_outermost_first():
    q = compile_query("(function_definition body: (block) @fill)", "python")
    regions = find_query(PY, "python", q)
    assert len(regions) == 6  # one per function, methods included
    assert all(r.regenerate and r.kind == "query" for r in regions)
    q = compile_query("(function_definition) @fill (block) @fill", "python")
    outer = find_query("def f():\n    return 1\n", "python", q)
    assert [(r.start, r.end) for r in outer] == [(0, 21)]


def test_bad_queries_are_errors():
    with pytest.raises(DiffillError, match="does not compile"):
        compile_query("(no_such_node) @fill", "python")
    with pytest.raises(DiffillError, match="@fill"):
        compile_query("(block) @body", "python")


def test_still_a_hole():
    assert still_a_hole("pass", "python")
    assert still_a_hole("x = 1\n# TODO: fill", "python")
    assert still_a_hole('panic("not implemented")', "go")
    assert not still_a_hole("return a + b", "python")
