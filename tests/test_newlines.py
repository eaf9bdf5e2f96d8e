"""CRLF documents: the engine fills them as LF text and answers in their own line endings."""

from diffill.cli import main
from diffill.engine import InfillRequest
from diffill.newlines import LineFeeds, newline_of


def test_line_feeds_map_offsets_and_write_fills_back():
    text = "a\r\nbc\r\n\r\nd"
    lf = LineFeeds(text)
    assert lf.text == "a\nbc\n\nd" and newline_of(text) == "\r\n"
    assert [lf.offset(i) for i in (0, 1, 2, 3, 5, 6, 7, 8, 9, 10)] == [0, 1, 1, 2, 4, 4, 5, 5, 6, 7]
    assert lf.fill("x\ny\r") == "x\r\ny"  # no stray carriage return
    plain = LineFeeds("a\nb")
    assert plain.text == "a\nb" and plain.fill("x\r\ny") == "x\r\ny"  # an LF document's text as it is


DOC = "def f(x):\n    y = x + 1\n    \n    return y\n"


def _fills_in(engine, newline: str):
    """The one-line fill of DOC's blank line, as an LF document and as one with ``newline`` line
    ends; and where the second hole was."""
    other = DOC.replace("\n", newline)
    at_lf, at = DOC.index("    \n") + 4, other.index("    " + newline) + 4
    want = engine.infill(InfillRequest(DOC, at_lf, at_lf, language="python", multiline=False))
    got = engine.infill(InfillRequest(other, at, at, language="python", multiline=False))
    return want, got, at


def test_a_crlf_document_gets_fills_without_stray_carriage_returns(shipped_engine):
    want, got, at_crlf = _fills_in(shipped_engine, "\r\n")
    crlf = DOC.replace("\n", "\r\n")
    assert want.text and got.text == want.text.replace("\n", "\r\n")
    assert (got.start, got.end) == (at_crlf, at_crlf)
    body = crlf.index("    y =")
    block = shipped_engine.infill(InfillRequest(crlf, body, crlf.index("    return"), language="python"))
    assert "\r" not in block.text.replace("\r\n", "")


def test_a_byte_order_mark_is_not_a_column(tmp_path, capsys):
    source = tmp_path / "bom.py"
    source.write_bytes("\ufeffdef f(x):\n    return x\n".encode())
    assert main(["infill", str(source), "--at", "1:10", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"start": 9' in out  # the end of "def f(x):", as an editor counts it
    assert main(["infill", str(source), "--at", "2:5", "--full"]) == 0
    assert capsys.readouterr().out.startswith("\ufeffdef f(x):\n")


def test_old_mac_line_ends_are_lines_too(shipped_engine):
    from diffill.positions import offset_of

    text = "a\rbc\rd"
    lf = LineFeeds(text)
    assert lf.text == "a\nbc\nd" and newline_of(text) == "\r" and lf.offset(4) == 4
    assert lf.fill("x\ny") == "x\ry"
    assert offset_of(text, 2, 3) == 4 and offset_of(text, 3, 1) == 5
    assert newline_of("one line") == "\n" and newline_of("a\r\nb\nc") == "\r\n"
    want, got, _ = _fills_in(shipped_engine, "\r")
    assert want.text and got.text == want.text.replace("\n", "\r")
