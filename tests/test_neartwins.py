"""Near-twin files: shared 3-line shingles (Jaccard), or the same name sharing most lines."""

import numpy as np
import pytest

from diffill.model.neartwins import TwinRule, line_hashes, shingles, twins_against, twins_within


def _module(seed: int, n: int = 40) -> str:
    """A synthetic module of ``n`` distinct lines, different for each seed."""
    rng = np.random.default_rng(seed)
    return "\n".join(f"    value_{seed}_{i} = compute({int(rng.integers(10**6))})" for i in range(n)) + "\n"


def _edited(text: str, every: int) -> str:
    """``text`` with every ``every``-th line changed (another version of the same file)."""
    lines = text.splitlines()
    return "\n".join(line + "  # changed" if i % every == 0 else line for i, line in enumerate(lines)) + "\n"


def test_shingles_ignore_indentation_and_blank_lines():
    a = "def f():\n    x = 1\n\n    return x\n"
    b = "def f():\n        x = 1\n    return x\n\n\n"
    assert np.array_equal(shingles(line_hashes(a), 3), shingles(line_hashes(b), 3))
    assert len(shingles(line_hashes("one\ntwo\n"), 3)) == 1  # fewer lines than a shingle: one shingle


def test_a_lightly_edited_copy_is_a_twin_and_an_unrelated_file_is_not():
    base = _module(1)
    train = [("pkg/a.py", base), ("pkg/b.py", _module(2))]
    held = [("vendor/x.py", _edited(base, 20)), ("other/y.py", _module(3)), ("z.py", _edited(base, 2))]
    # every 20th line changed: most 3-line shingles survive; every 2nd: none does
    assert twins_against(held, train) == {0: 0}


def test_the_jaccard_threshold_is_applied_exactly():
    lines = [f"line_{i} = {i}" for i in range(100)]
    a = "\n".join(lines)
    # b is a's first k lines and 30 of its own: J = (k - 2) / 128 shingles
    for k, expect in [(70, True), (60, False)]:
        b = "\n".join(lines[:k] + [f"other_{i} = {i}" for i in range(30)])
        s_a, s_b = shingles(line_hashes(a), 3), shingles(line_hashes(b), 3)
        jaccard = len(np.intersect1d(s_a, s_b)) / len(np.union1d(s_a, s_b))
        assert (jaccard >= 0.5) == expect
        assert (0 in twins_against([("a.py", a)], [("b.py", b)])) == expect


def test_the_same_name_sharing_most_of_its_lines_is_a_twin_even_when_reordered():
    base = _module(4, 30)
    lines = base.splitlines()
    shuffled = "\n".join(lines[::2] + lines[1::2] + [f"extra_{i} = {i}" for i in range(10)])  # shingles broken
    assert twins_against([("lib/util.py", shuffled)], [("other/util.py", base)]) == {0: 0}
    assert twins_against([("lib/helpers.py", shuffled)], [("other/util.py", base)]) == {}
    half = "\n".join(lines[:15] + [f"mine_{i} = {i}" for i in range(15)])  # exactly half: not more than half
    assert twins_against([("lib/util.py", half)], [("other/util.py", base)]) == {}


def test_within_a_split_the_first_of_each_family_is_kept():
    a, b = _module(5), _module(6)
    files = [("one/a.py", a), ("two/b.py", b), ("three/a.py", _edited(a, 10)), ("four/a.py", _edited(a, 15))]
    assert twins_within(files) == {2: 0, 3: 0}


def test_a_stricter_rule_finds_fewer_twins():
    base = _module(7)
    held = [("x.py", _edited(base, 4))]
    assert twins_against(held, [("y.py", base)], TwinRule(jaccard=0.1)) == {0: 0}
    assert twins_against(held, [("y.py", base)], TwinRule(jaccard=0.9)) == {}


@pytest.mark.parametrize("text", ["", "\n\n   \n"])
def test_empty_files_have_no_twins(text):
    assert twins_against([("e.py", text)], [("e.py", text), ("f.py", _module(8))]) == {}
