"""Held-out line cases: whole code lines, a fixed draw per seed, no more than the files hold."""

from __future__ import annotations

import pytest

from diffill.errors import DiffillError
from diffill.evaluation import line_cases

TEXTS = ["import os\n\n# a comment\ndef f(x):\n    return x + 1\n", '"""\nDoc.\n"""\nY = 2\n']


def test_each_case_is_one_code_line_after_its_indentation():
    cases = line_cases(TEXTS, 4, seed=0)
    assert len(cases) == 4
    for c in cases:
        assert c.prefix + c.target + c.suffix in TEXTS
        assert "\n" not in c.target and c.target == c.target.strip() and not c.target.startswith("#")
    assert line_cases(TEXTS, 4, seed=0) == cases


def test_asking_for_more_cases_than_code_lines_stops_at_their_number():
    cases = line_cases(TEXTS, 50, seed=3)
    assert sorted(c.target for c in cases) == sorted(["import os", "def f(x):", "return x + 1", "Doc.", "Y = 2"])


def test_files_without_code_lines_are_an_error():
    with pytest.raises(DiffillError, match="no code lines"):
        line_cases(["\n# only a comment\n", ""], 10)
