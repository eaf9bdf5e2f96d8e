"""Open documents and UTF-16 positions (lsp_server/documents.py)."""

import pytest

from diffill.errors import DiffillError
from diffill.lsp_server.documents import Document, DocumentStore, utf16_len

EMOJI = "\U0001F600"


def test_utf16_len_counts_astral_characters_twice():
    assert utf16_len("abc") == 3
    assert utf16_len(EMOJI) == 2
    assert utf16_len("\u4f60\u597d") == 2


def test_offsets_after_emoji_and_cjk_use_utf16_units():
    doc = Document("u", f'x = "{EMOJI}\u4f60"\ny\n')
    assert doc.offset_at(0, 5) == 5  # before the emoji
    assert doc.offset_at(0, 7) == 6  # after it: two units, one code point
    assert doc.offset_at(0, 8) == 7  # after the CJK character
    assert doc.position_at(6) == (0, 7)
    assert doc.position_at(doc.text.index("y")) == (1, 0)


def test_character_past_the_end_of_a_line_means_its_end():
    doc = Document("u", "ab\r\ncd")
    assert doc.offset_at(0, 99) == 2  # before \r\n, not inside it
    assert doc.offset_at(1, 99) == len(doc.text)


def test_line_past_the_end_is_an_error():
    with pytest.raises(DiffillError, match="outside the document"):
        Document("u", "a\nb").offset_at(2, 0)
    with pytest.raises(DiffillError, match="negative"):
        Document("u", "a").offset_at(0, -1)


def test_lines_end_at_lsp_line_breaks_only():
    doc = Document("u", "a\x0cb\u2028c\rd\r\ne\nf")
    assert doc.line_starts() == [0, 6, 9, 11]
    assert doc.offset_at(0, 3) == 3  # form feed and U+2028 stay inside line 0


def test_incremental_change_after_emoji():
    doc = Document("u", f"{EMOJI}ab\ncd")
    doc.apply_change((0, 2), (0, 3), "XY")
    assert doc.text == f"{EMOJI}XYb\ncd"
    doc.apply_change((0, 4), (1, 1), "")
    assert doc.text == f"{EMOJI}XYd"
    doc.apply_change(None, None, "new")
    assert doc.text == "new" and doc.offset_at(0, 3) == 3


def test_reversed_change_range_is_an_error():
    with pytest.raises(DiffillError, match="ends before it starts"):
        Document("u", "abc").apply_change((0, 2), (0, 1), "x")


def test_store_says_which_document_is_not_open():
    store = DocumentStore()
    store.open("file:///a.py", "x", 1, "python")
    assert "file:///a.py" in store and len(store) == 1
    store.close("file:///a.py")
    with pytest.raises(DiffillError, match="not open"):
        store.get("file:///a.py")


def test_other_documents_come_last_opened_first_within_the_limits():
    store = DocumentStore()
    for name, text in [("a", "aa"), ("b", "b" * 50), ("c", "cc"), ("d", "dd")]:
        store.open(f"file:///{name}.py", text, 1, "python")
    assert store.others("file:///d.py", limit=8, max_chars=10) == ("cc", "aa")  # b is too long
    assert store.others("file:///a.py", limit=2, max_chars=100) == ("dd", "cc")
