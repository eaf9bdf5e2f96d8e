import pytest

from diffill.errors import DiffillError
from diffill.positions import offset_of, parse_point, parse_range

TEXT = "ab\ncde\n\nf"


@pytest.mark.parametrize("line,col,off", [(1, 1, 0), (1, 3, 2), (2, 1, 3), (2, 4, 6), (3, 1, 7), (4, 2, 9)])
def test_offsets_are_one_based_and_allow_end_of_line(line, col, off):
    assert offset_of(TEXT, line, col) == off


@pytest.mark.parametrize("line,col", [(0, 1), (5, 1), (1, 4), (3, 2), (1, 0)])
def test_outside_positions_are_errors(line, col):
    with pytest.raises(DiffillError):
        offset_of(TEXT, line, col)


def test_parsing():
    assert parse_point("3:7") == (3, 7)
    assert parse_range("1:2-3:4") == ((1, 2), (3, 4))
    with pytest.raises(DiffillError):
        parse_range("1:2")


def test_a_crlf_line_ends_before_its_carriage_return():
    text = "ab\r\ncd\r\n"
    assert offset_of(text, 1, 3) == 2  # the end of "ab", before "\r"
    with pytest.raises(DiffillError, match="it has 2 characters"):
        offset_of(text, 1, 4)  # between "\r" and "\n"
