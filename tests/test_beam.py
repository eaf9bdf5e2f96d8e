"""Left-to-right beam search (model.beam): better whole fills than greedy, ends, bans, the
constraint on finished fills, the pass bound, cancellation, batching; Layout.take."""

from __future__ import annotations

import math

import torch

from diffill.grammar.constraint import Verdict
from diffill.model.backend import DiffillBackend
from diffill.model.loading import load_checkpoint
from diffill.model.copying import Copying
from diffill.model.ngram import TokenCache
from diffill.model.decoders import Decoder
from diffill.model.decoding import Request, SamplerConfig

MASK, EOI, PAD = 1, 2, 0
A, B, C, D, E, F, NL = 10, 11, 12, 13, 14, 15, 16
V = 32

# next-token distributions keyed by the fill so far: greedy takes A (0.55), but every line after
# A is unlikely (0.3 each), while B is followed by F and the end with confidence
TREE = {
    (): {A: 0.55, B: 0.45},
    (A,): {C: 0.34, D: 0.33, E: 0.33},
    (B,): {F: 0.95, C: 0.05},
}


class _State:
    def __init__(self, rows: int):
        self.rows = rows

    def take(self, rows):
        return _State(len(rows))


class TreeBackend:
    """A fake model whose guess at the first masked slot depends on the fill left of it (TREE;
    any other fill ends there: <eoi> 0.9); later slots are guessed uniformly."""

    mask_id, eoi_id, shifted = MASK, EOI, False
    banned_ids = [PAD, MASK]

    def __init__(self, tree=None):
        self.tree = tree or TREE
        self.calls = 0
        self.rows_seen = []

    def prepare(self, prefixes, suffixes, length, cache=False, refresh=0):
        return _State(len(prefixes))

    def _dist(self, fill):
        probs = self.tree.get(tuple(fill), {EOI: 0.9, NL: 0.05, C: 0.05})
        row = torch.full((V,), -30.0)
        for t, p in probs.items():
            row[t] = math.log(p)
        return row

    def logits(self, state, canvas, slots=None):
        self.calls += 1
        assert state.rows == canvas.shape[0]
        self.rows_seen.append(canvas.shape[0])
        out = torch.full((*canvas.shape, V), -30.0)
        for r, row in enumerate(canvas.tolist()):
            first = row.index(MASK) if MASK in row else len(row)
            for i in range(len(row)):
                out[r, i] = self._dist(row[:first]) if i == first else torch.zeros(V)
        if slots is not None:
            out = out.gather(1, slots[..., None].expand(-1, -1, V))
        return out


def search(be=None, length=6, requests=None, **kw):
    be = be or TreeBackend()
    opts = {k: kw.pop(k) for k in list(kw) if k in ("constraint", "bans", "cancelled", "on_step")}
    cfg = SamplerConfig(**{"beam": 3, **kw})
    return Decoder(be, cfg).sample(requests or [Request([5], [6])], length, **opts)


def test_beam_finds_the_likelier_fill_that_greedy_misses():
    (greedy,) = search(beam=0, max_per_step=1)
    (beam,) = search()
    assert greedy.tokens[:1] == [A]
    assert beam.tokens == [B, F] and beam.complete
    # the runners-up, best first: B F (0.45 * 0.95 * 0.9) beats A C (0.55 * 0.34 * 0.9)
    assert beam.alternatives[0] == [A, C]


def test_search_stops_once_no_open_candidate_can_win():
    be = TreeBackend()
    (r,) = search(be, length=12)
    # three passes settle B F <eoi>; none are spent on the nine slots after it
    assert r.forward_passes == be.calls == 3


def test_a_stop_token_ends_the_fill_and_is_not_part_of_it():
    tree = {(): {A: 0.9, B: 0.1}, (A,): {NL: 0.8, EOI: 0.1, C: 0.1}}
    (r,) = search(TreeBackend(tree), requests=[Request([5], [6], stops=frozenset({NL}))])
    assert r.tokens == [A]
    (free,) = search(TreeBackend(tree))  # without the stop, the newline is content
    assert free.tokens[:2] == [A, NL]


def test_bans_apply_to_every_candidate_of_the_row():
    (r,) = search(bans={(0, 0): {B}})
    assert r.tokens[0] == A and all(alt[:1] != [B] for alt in r.alternatives)


class RejectFill:
    """A constraint that finds a syntax error in one exact fill."""

    def __init__(self, bad):
        self.bad, self.seen = list(bad), []

    def check(self, row, tokens, committed, proposed):
        fill = tokens[: tokens.index(EOI)] if EOI in tokens else tokens
        self.seen.append(fill)
        return Verdict(set(), {len(fill) - 1}, set()) if fill == self.bad else Verdict.empty()

    def accepts(self, row, tokens):
        fill = tokens[: tokens.index(EOI)] if EOI in tokens else tokens
        self.seen.append(fill)
        return fill != self.bad


def test_the_constraint_keeps_invalid_fills_out():
    rc = RejectFill([B, F])
    (r,) = search(constraint=rc)
    assert r.tokens == [A, C] and [B, F] not in r.alternatives
    assert [B, F] in rc.seen  # judged only once whole


def test_fills_are_judged_only_when_they_could_still_rank():
    rc = RejectFill([B, F])
    (r,) = search(constraint=rc)
    assert r.tokens == [A, C] and r.alternatives == [[A, E], [21]]
    # A and B alone end unlikely (0.55 * 0.9 * 0.05 ...): outranked by three passing fills,
    # they are never parsed
    assert [A] not in rc.seen and [B] not in rc.seen
    assert sorted(rc.seen) == [[A, C], [A, E], [B, F], [21]]


def test_judging_lazily_keeps_the_best_passing_fills_ties_to_the_earlier():
    from diffill.model.beam import _Found

    judged = []

    def valid(fill):
        judged.append(fill)
        return fill[0] != 0

    found = _Found(2, valid)
    for score, fill in [(-3.0, [1]), (-1.0, [0]), (-2.0, [2]), (-2.0, [3]), (-5.0, [4])]:
        found.offer(score, fill, ([], []))
    found.judge(-1.5, first=True)  # nothing at -1.5 or above passes: the rest waits
    assert judged == [[0]] and found.finished == []
    found.judge(-2.5, first=True)
    assert judged == [[0], [2]] and found.best() == -2.0
    found.judge()  # the tie goes to the fill offered first; [1] and [4] can no longer rank
    assert [f[1] for f in found.finished] == [[2], [3]]
    assert judged == [[0], [2], [3]]


def test_a_hole_whose_every_fill_the_constraint_rejects_gets_the_empty_fill():
    class RejectAll(RejectFill):
        def accepts(self, row, tokens):
            return False

    (r,) = search(length=2, constraint=RejectAll([]))
    assert r.tokens == [] and r.alternatives == [] and r.score is None


def test_finish_after_bounds_the_passes():
    tree = {(): {A: 0.9, B: 0.1}, (A,): {C: 0.9, D: 0.1}, (A, C): {D: 0.9, E: 0.1},
            (A, C, D): {E: 0.9, F: 0.1}}
    be = TreeBackend(tree)
    (r,) = search(be, length=10, requests=[Request([5], [6], finish_after=2)])
    # two passes of search, then one completes the best candidate from its own guesses
    assert r.forward_passes == 3 and r.complete
    assert r.tokens[:2] == [A, C]


def test_cancelled_search_returns_what_it_has():
    ticks = iter([False, False, True])
    (r,) = search(cancelled=lambda: next(ticks))
    assert r.cancelled and not r.complete and r.forward_passes == 2


def test_holes_in_one_batch_are_searched_apart_and_dropped_when_done():
    tree = dict(TREE)
    be = TreeBackend(tree)
    reqs = [Request([5], [6]), Request([7], [6], stops=frozenset({A, B}))]
    both = search(be, requests=reqs)
    assert [r.tokens for r in both] == [[B, F], []]
    # the second hole ended at the first slot (A and B end it), so only the first goes on
    assert be.rows_seen == [2, 3, 3]
    assert [r.forward_passes for r in both] == [3, 1]


def test_on_step_sees_each_holes_best_candidate():
    seen = []
    search(on_step=seen.append)
    assert seen[0].canvas[0][0] == A  # after one slot, A leads
    assert seen[-1].canvas[0][:3] == [B, F, EOI]


def test_taken_rows_give_the_logits_of_the_rows_they_copy():
    model, tok = load_checkpoint(None, dtype=torch.float32)
    be = DiffillBackend(model, tok)
    prefixes = [tok.encode("def add(a, b):\n    return "), tok.encode("import os\nx = ")]
    suffixes = [tok.encode("\n\nprint(add(1, 2))\n"), tok.encode("\n")]
    canvas = torch.full((2, 8), tok.mask_id)
    state = be.prepare(prefixes, suffixes, 8, cache=True)
    be.logits(state, canvas)  # fills the context cache
    taken = state.take(torch.tensor([1, 0, 0]))
    rows = canvas[[1, 0, 0]].clone()
    rows[1, 0] = tok.encode("a")[0]  # candidates differ from each other
    fresh = be.prepare([prefixes[1], prefixes[0], prefixes[0]], [suffixes[1], suffixes[0], suffixes[0]], 8, cache=True)
    be.logits(fresh, canvas[[1, 0, 0]])
    assert torch.allclose(be.logits(taken, rows), be.logits(fresh, rows), atol=1e-5)


class _Bytes:
    """A tokenizer whose token F is the first byte of a two-byte character."""

    def decode(self, ids):
        return "".join("\ufffd" if t == F else "x" for t in ids)


def test_a_fill_never_ends_inside_a_character():
    be = TreeBackend()
    be.tok = _Bytes()
    (r,) = search(be)
    # B F would end on half a character; the best whole fill is A C
    assert r.tokens == [A, C] and [B, F] not in r.alternatives


def test_the_beam_copies_a_continuation_the_model_finds_unlikely():
    # the fake model ends every fill at once (<eoi> 0.9, A 0.1, B after A ~0); the cache has seen the
    # whole prefix followed by A B and a line break: a 16-token match, weighed 0.6, makes A likelier
    # than the end, and B and the end follow it
    prefix = list(range(20, 36))
    c = TokenCache(frozenset({NL})).extend([prefix + [A, B, NL, 30]])
    be = TreeBackend({(): {EOI: 0.9, A: 0.1}})
    plain, copied = Decoder(be, SamplerConfig(beam=3)).sample([Request(prefix, [6]), Request(prefix, [6], copying=Copying((c,)))], 6)
    assert plain.tokens == [] and copied.tokens == [A, B] and copied.complete
    assert MASK not in copied.tokens
