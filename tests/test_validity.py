"""The validity check: new ERROR/MISSING nodes at the infill, errors elsewhere ignored, incremental."""

import pytest

from diffill.refactor.syntax import syntax_errors
from diffill.grammar.registry import GRAMMAR_NAMES, grammar
from diffill.grammar.selfcheck import CASES, checker_for, self_check
from diffill.grammar.validity import HoleChecker

PY = grammar("python")


def hole(doc: str, marker: str = "<|>") -> HoleChecker:
    prefix, suffix = doc.split(marker)
    return HoleChecker(PY, prefix, suffix)


def test_new_errors_at_the_infill_make_it_invalid():
    check = hole("def sub(a, b):\n    return <|>\n\nx = 1\n")
    assert check.is_valid("a - b")
    assert not check.is_valid("a - )")
    assert not check.is_valid("(a - b")  # the MISSING/ERROR lands at or after the fill
    assert check.is_valid("")  # the empty infill adds nothing


def test_an_error_tree_sitter_leaves_without_an_error_node_still_counts():
    # `x < a b` on one line parses as two statements with no ERROR or MISSING node; only the
    # enclosing block says it has an error
    check = hole('def add(a, b):\n    """Add."""\n    <|>\n\n\ndef k():\n    return 1\n')
    assert check.is_valid("x < a")
    assert not check.is_valid("x < a b")
    assert syntax_errors("def f():\n    x < a b\n", "python") == 1
    assert syntax_errors("def f():\n    x < a\n", "python") == 0


def test_errors_elsewhere_in_a_half_edited_file_are_ignored():
    doc = "def broken(:\n    pass\n\nitems = [1, 2]]\n\n\ndef ok(a):\n    return <|>\n\n\ndef later(:\n"
    check = hole(doc)
    assert check.base_errors  # the document is broken, though not at the hole
    assert check.is_valid("a + 1")
    assert not check.is_valid("a +")


def test_a_pre_existing_error_around_the_hole_may_absorb_the_fill():
    check = hole("x = foo(a<|>\nz = 3\n")
    assert check.is_valid(", b)")
    assert check.is_valid(", b")  # no worse than the document already was
    assert not check.is_valid(", b))")


def test_the_fill_must_not_leave_an_unclosed_bracket_below_it():
    check = hole("def f(a):\n    x = <|>\n    return x\n")
    assert check.is_valid("foo(a, 1)")
    assert not check.is_valid("foo(a,")
    assert not check.is_valid("[a,\n         1")


def test_multiline_fills_and_indentation():
    check = hole("def f(xs):\n    s = 0\n    <|>\n    return s\n")
    assert check.is_valid("for x in xs:\n        s += x")
    assert not check.is_valid("for x in xs:\n    s += x")  # tree-sitter takes the empty body
    empty_body = hole("def f(xs):\n    <|>\n\n\ndef g():\n    pass\n")
    assert empty_body.is_valid("return xs") and not empty_body.is_valid("while xs:")


def test_incremental_checks_agree_with_fresh_parses():
    doc = "import os\n\n\ndef f(a, b):\n    c = a\n    <|>\n    return c\n\n\nclass K:\n    pass\n"
    fills = ["c", "c = (", "c = (a", "c = (a +", "c = (a + b)", "c = (a + b))", "", "if c:\n        c = 1",
             "c = [", "c = [1, 2]", "c = (a + b)"]
    incremental = hole(doc)
    for f in fills:
        assert incremental.is_valid(f) == hole(doc).is_valid(f), f
    assert incremental.is_valid("c = (a + b)") and not incremental.is_valid("c = (a +")


def test_offsets_are_utf8_bytes_with_non_ascii_text():
    check = hole("naïve = 'é'\nr = <|>\nz = 'ü'\n")
    assert check.is_valid("naïve + 'ß'")
    assert not check.is_valid("naïve + ")
    (a, b), *_ = check.fill_regions("naïve + ")
    assert 0 <= a <= b <= len("naïve + ".encode())


def test_longest_valid_prefix_ends_at_a_line_boundary():
    check = hole("def f(xs):\n    s = 0\n    <|>\n    return s\n")
    fill = "s += 1\n    s *= 2\n    s = (s"
    assert check.longest_valid_prefix(fill) == "s += 1\n    s *= 2"
    assert check.longest_valid_prefix("s = (s") == ""
    assert check.longest_valid_prefix("s += 1") == "s += 1"


def test_large_files_keep_only_the_constructs_around_the_hole():
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(300))
    check = hole(body + "def g(y):\n    return <|>\n\n\n" + body)
    assert len(check.prefix) + len(check.suffix) < 200
    assert check.is_valid("y * 2") and not check.is_valid("y * ")
    errors = check.errors("y * ")
    assert errors and all(e.start >= len(body) for e in errors)  # reported in document offsets


@pytest.mark.parametrize("name", GRAMMAR_NAMES)
def test_self_check_classifies_valid_and_broken_fills_in_every_grammar(name):
    check = checker_for(name)
    document = CASES[name].document.replace("<|>", "").encode()
    assert grammar(name).parser().parse(document).root_node.has_error  # half-edited elsewhere
    for fill in CASES[name].valid:
        assert check.is_valid(fill), fill
    for fill in CASES[name].broken:
        assert not check.is_valid(fill), fill


def test_self_check_reports_every_grammar():
    assert self_check() == dict.fromkeys(GRAMMAR_NAMES, True)


def test_an_unterminated_quote_is_caught_before_a_parse():
    check = hole("def f(a):\n    x = <|>\n    return x\n")
    assert not check.is_valid("'abc")
    assert not check.is_valid('f("abc)')
    assert check.is_valid("'abc'") and check.is_valid("'it\\'s'") and check.is_valid("1  # it's")
    (error,) = check.errors("'abc")
    assert error.kind == "UNTERMINATED string"
    in_docstring = hole('def f(a):\n    """Doc <|> more.\n    """\n')
    assert in_docstring.is_valid("it's")  # inside a string the pre-check stays out of the way


def test_a_large_class_is_narrowed_to_the_method_around_the_hole():
    methods = "".join(f"    def m{i}(self, x):\n        return x + {i}\n\n" for i in range(400))
    check = hole("class Big:\n" + methods + "    def g(self, y):\n        return <|>\n\n" + methods)
    assert len(check.prefix) + len(check.suffix) < 500
    assert check.is_valid("y * 2") and not check.is_valid("y * ")
    assert check.is_valid("y\n        z = 1")  # the slice keeps the method's indentation


def test_a_fill_that_rejoins_lines_beyond_the_slice_is_judged_on_the_whole_document():
    entries = "".join(f"    'k{i}': {i},\n" for i in range(40))
    funcs = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(40))
    check = hole(funcs + "<|>\n" + entries + "}\n\n\n" + funcs)
    assert check.is_valid("TABLE = {")  # the original line: the dict is whole again
    assert not check.is_valid("TABLE = {{")


def test_the_first_parse_of_the_document_is_not_repeated(monkeypatch):
    from diffill.grammar.registry import Grammar

    parses = []
    real = Grammar.parser

    def counting(self):
        parser = real(self)

        class Counted:
            def parse(self, data, old=None):
                parses.append(old is None)
                return parser.parse(data, old) if old is not None else parser.parse(data)
        return Counted()

    monkeypatch.setattr(Grammar, "parser", counting)
    small = hole("def f(x):\n    return <|>\n")
    assert parses == [True]  # the whole document is the slice: parsed once
    entries = "".join(f"    'k{i}': {i},\n" for i in range(40))
    funcs = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(40))
    big = hole(funcs + "<|>\n" + entries + "}\n\n\n" + funcs)
    parses.clear()
    assert not big.is_valid("TABLE = {{")  # invalid on the slice, confirmed on the whole document
    assert parses == [False, False]  # both reparses incremental: the document's first parse kept
    assert small.is_valid("x")


def test_python_indentation_is_checked_lexically():
    check = hole("def f(xs):\n    s = 0\n    <|>\n    return s\n")
    assert check.is_valid("for x in xs:\n        s += x\n    s *= 2")
    assert not check.is_valid("s += 1\n       s += 2")  # unexpected indent
    assert not check.is_valid("if s:\n        s = 1\n      s = 2")  # dedent to no open level
    assert not check.is_valid("while s:")  # the next line is not deeper
    assert check.is_valid("total = f(1,\n        2)")  # continuation lines are free
    assert check.is_valid('doc = """\n  free text:\n"""')
    (error,) = check.errors("s += 1\n       s += 2")
    assert error.kind == "INDENTATION"


def test_one_space_before_code_after_indentation_is_the_tokenizer_s_not_an_indent():
    check = hole("class Lexer:\n    aliases = ['rell']\n    <|>\n    flags = 0\n")
    assert check.is_valid(" mimetypes = ['text/x-rell']")  # delivered without the space
    assert not check.is_valid("  mimetypes = 1")  # two spaces: an indentation error
    (error,) = check.errors(" mimetypes = [")  # offsets are the spaced fill's
    assert error.start >= len("class Lexer:\n    aliases = ['rell']\n    ") + len(" mimetypes")
    assert not hole("x = 1\n<|>\n").is_valid(" y = 2")  # at column 0 a space is an indent


def test_an_indentation_error_the_document_already_has_is_not_blamed_on_the_fill():
    check = hole("def f(xs):\n    s = 0\n    <|>\n          return s\n")
    assert check.is_valid("s += 1")


def test_a_missing_node_placed_at_the_end_of_the_line_above_counts():
    check = hole('def add(a, b):\n    """Add two numbers."""\n    <|>\n\n\ndef keep(a):\n    return a\n')
    assert not check.is_valid(",_,__")  # tree-sitter puts its MISSING identifier after the docstring
    assert check.is_valid("return a + b")
