import pytest
import torch

from diffill.model.context import Window, encode_window
from diffill.model.fim import psm_prompt
from diffill.model.peer import PeerCompleter


@pytest.fixture(scope="module")
def peer(tiny_causal_checkpoint):
    return PeerCompleter.load(tiny_causal_checkpoint)


def test_cached_greedy_decoding_equals_uncached(peer):
    prompt = peer.prompt("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n")
    cached = peer.generate(prompt, 12, one_line=False)
    uncached = peer.generate(prompt, 12, one_line=False, cached=False)
    assert cached == uncached
    tokens, passes = cached
    assert passes == len(tokens) + (len(tokens) < 12)  # the prompt's pass, then one a token


def test_the_prompt_is_the_psm_row_of_the_models_window(peer):
    prefix, suffix = "x = 1\n" * 200, "\ny = 2" * 200
    peer.window = Window(20, 8)
    try:
        want = psm_prompt(peer.tok, *encode_window(peer.tok, prefix, suffix, Window(20, 8)))
        prompt = peer.prompt(prefix, suffix)
    finally:
        peer.window = Window(peer.model.config.prefix_tokens, peer.model.config.suffix_tokens)
    assert prompt == want and len(prompt) <= 20 + 1 + 8 + 1
    assert prompt.count(peer.tok.mask_id) == 2 and prompt[-1] == peer.tok.mask_id


class Scripted:
    """A stand-in causal network whose likeliest token is ``script``'s, one per pass (a pair: the
    likeliest, then the runner-up)."""

    def __init__(self, script, vocab):
        self.config = type("C", (), {"causal": True, "prefix_tokens": 8, "suffix_tokens": 4})()
        self.embed_tokens = torch.nn.Embedding(vocab, 1)
        self.script, self.calls = list(script), 0

    def forward_causal(self, ids, past=None):
        logits = torch.zeros(1, self.embed_tokens.num_embeddings)
        step = self.script[self.calls]
        for rank, token in enumerate(step if isinstance(step, tuple) else (step,)):
            logits[0, token] = 2.0 - rank
        self.calls += 1
        return logits, [(torch.zeros(1), torch.zeros(1))]


def _scripted(peer, script):
    return PeerCompleter(Scripted(script, peer.tok.vocab_size), peer.tok)


def _word_ids(peer, text):
    ids = peer.tok.encode(text)
    assert not any("\n" in peer.tok.token_text(i) for i in ids)
    return ids


def test_a_one_line_fill_stops_at_the_end_of_the_line_and_a_fill_at_eoi(peer):
    words = _word_ids(peer, "return a + b")
    newline = next(i for i in sorted(peer.tok.line_break_ids()) if i not in peer.tok.special_ids)
    line = _scripted(peer, words + [newline] + words)
    fill = line.fill("def f(a, b):\n    ", "\n", budget=24)
    assert fill.text == "return a + b" and fill.forward_passes == len(words) + 1
    block = _scripted(peer, words + [newline] + words + [peer.tok.eoi_id])
    fill = block.fill("def f(a, b):\n    ", "\n", budget=24, one_line=False)
    assert fill.text == "return a + b" + peer.tok.token_text(newline) + "return a + b"
    assert fill.forward_passes == 2 * len(words) + 2


def test_a_fill_stops_at_its_budget_and_never_emits_a_sentinel(peer):
    words = _word_ids(peer, "return a + b")
    sentinel_first = [(peer.tok.mask_id, w) for w in words]
    fill = _scripted(peer, sentinel_first).fill("x = ", "\n", budget=2)
    assert fill.tokens == words[:2] and fill.forward_passes == 2


def test_a_bidirectional_checkpoint_is_refused(tiny_checkpoint):
    with pytest.raises(ValueError, match="causal"):
        PeerCompleter.load(tiny_checkpoint)
