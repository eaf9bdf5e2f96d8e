import pytest

from diffill.model.tokenizer import BOS, EOI, MASK, PAD, CodeTokenizer, load_tokenizer

TEXTS = [
    "def f(x):\n    return x + 1\n",
    "\tif a:\n\t\tb = 1\n",
    "s = 'héllo wörld ✓ 🎉 日本語'\n",
    "x  =   1    # odd  spacing   \n\n\n",
    "literal <mask> <eoi> <pad> <bos> tokens stay text",
    "\r\nwindows\r\nline\r\n",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_special_token_text_is_not_a_special_token(tok):
    ids = tok.encode("<mask>")
    assert tok.mask_id not in ids and tok.decode(ids) == "<mask>"


def test_special_ids_are_distinct_and_first(tok):
    ids = [tok.pad_id, tok.mask_id, tok.eoi_id, tok.bos_id]
    assert ids == [0, 1, 2, 3]
    assert [tok.backend.id_to_token(i) for i in ids] == [PAD, MASK, EOI, BOS]


def test_indentation_runs_are_compact(tok):
    # a newline plus eight spaces of indentation: one or two tokens, not nine
    assert len(tok.encode("\n        ")) <= 2
    assert len(tok.encode("        return")) <= 3


def test_hf_wrapper_saves_and_loads(tok, tmp_path):
    tok.hf.save_pretrained(str(tmp_path))
    again = CodeTokenizer(load_tokenizer(tmp_path))
    assert again.encode(TEXTS[0]) == tok.encode(TEXTS[0])
    assert again.hf.mask_token == MASK


def test_line_break_ids_are_the_tokens_that_end_a_line(tok):
    ends = tok.line_break_ids()
    assert tok.encode("\n")[0] in ends
    assert all(i in ends for i in tok.encode("\n        ")[:1])
    assert not ends & set(tok.encode("return x + 1"))
    assert not ends & tok.special_ids
    for i in ends:  # a newline with nothing but blanks before it
        text = tok.decode([i])
        assert "\n" in text and not text.split("\n", 1)[0].strip()
    assert tok.line_break_ids() is ends  # computed once
