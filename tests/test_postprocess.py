"""Post-processing filters (diffill/postprocess.py): each a small pure rule."""

from diffill.postprocess import (
    HoleContext,
    drop_repeated_suffix_lines,
    drop_suffix_overlap,
    no_double_space,
    postprocess,
    single_line,
    stop_at_dedent,
)

BODY = HoleContext(prefix="def f(x):\n    ", suffix="\n    return y\n\n\ndef g():\n    pass\n", multiline=True)


def test_single_line_hole_stops_at_the_end_of_its_line():
    ctx = HoleContext("x = ", "\n", multiline=False)
    assert single_line("foo(1)\nbar()", ctx) == "foo(1)"


def test_text_repeating_the_rest_of_the_line_is_dropped():
    ctx = HoleContext("print(len(x", "))\n", multiline=False)
    assert drop_suffix_overlap("s))", ctx) == "s"
    assert drop_suffix_overlap("s", ctx) == "s"


def test_multi_line_fill_stops_at_a_dedent_out_of_the_block():
    assert stop_at_dedent("y = x + 1\n    z = y\ndef h():\n    pass", BODY).startswith("y = x + 1\n    z = y")
    assert "def h" not in stop_at_dedent("y = x + 1\ndef h():\n    pass", BODY)


def test_ending_lines_that_repeat_the_lines_after_the_hole_are_dropped():
    assert drop_repeated_suffix_lines("y = x + 1\n    return y", BODY) == "y = x + 1"
    assert drop_repeated_suffix_lines("y = x + 1\n    return y\n", BODY) == "y = x + 1"
    # only an ending: the same line earlier in the fill stays
    assert drop_repeated_suffix_lines("y = 2\n    return y\n    y += 1", BODY) == "y = 2\n    return y\n    y += 1"
    # single-line holes are left to the line filters
    line = HoleContext("x = ", "\nreturn y\n", multiline=False)
    assert drop_repeated_suffix_lines("1\nreturn y", line) == "1\nreturn y"


def test_a_fill_after_a_space_does_not_start_with_another():
    assert no_double_space(" measure(x)", HoleContext("    total = ", "\n", multiline=False)) == "measure(x)"
    assert no_double_space(" + 1", HoleContext("    total = x", "\n", multiline=False)) == " + 1"  # no space before
    assert no_double_space("  pass", HoleContext("def f():\n  ", "\n", multiline=True)) == "  pass"  # indentation
    # after indentation, one space before code is the tokenizer's spaced word, not a deeper indent
    assert no_double_space(" mimetypes = []", HoleContext("class L:\n    ", "\n", multiline=False)) == "mimetypes = []"
    assert no_double_space(" x", HoleContext("x = 1\n", "\n", multiline=False)) == " x"  # column 0: kept


def test_filters_in_order():
    assert postprocess("y = x + 1\n    return y\ndef h():", BODY) == "y = x + 1"
