"""The denoising sampler: parallel commits, <eoi> rules, bans, cancellation, growth, batching."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch

from diffill.model.backend import DiffillBackend
from diffill.model.copying import Copying
from diffill.model.loading import load_checkpoint
from diffill.model.sampler import Experiment, Request, Sampler, SamplerConfig

MASK, EOI, PAD = 1, 2, 0
V = 32


class ScriptedBackend:
    """A fake model that wants ``target`` (then <eoi>) with per-slot confidences.

    ``conf[i]`` is the probability of the wanted token at slot i; ``eoi_conf`` the probability
    of <eoi> at slots past the target; the second choice at each slot is token 31."""

    mask_id, eoi_id, shifted = MASK, EOI, False
    banned_ids = [PAD, MASK]

    def __init__(self, target, conf=None, eoi_conf=0.99, collapse=None):
        self.target, self.eoi_conf = list(target), eoi_conf
        self.conf = conf
        self.collapse = collapse or {}  # slot -> probability of its committed token after commit
        self.calls = 0
        self.seen_slots = []

    def prepare(self, prefixes, suffixes, length, cache=False, refresh=0):
        return len(prefixes)

    def _row(self, canvas_row):
        L = len(canvas_row)
        out = torch.full((L, V), -30.0)
        for i in range(L):
            want = self.target[i] if i < len(self.target) else EOI
            p = self.eoi_conf if want == EOI else (self.conf[i] if self.conf else 0.95)
            if canvas_row[i] != MASK and i in self.collapse:
                p = self.collapse[i]
            second = 31 if want != 31 else 30
            out[i, want] = math.log(p)
            out[i, second] = math.log(max(1e-6, 1 - p - 1e-4))
        return out

    def logits(self, state, canvas, slots=None):
        self.calls += 1
        self.seen_slots.append(None if slots is None else slots.tolist())
        out = torch.stack([self._row(r) for r in canvas.tolist()])
        if slots is not None:
            out = out.gather(1, slots[..., None].expand(-1, -1, V))
        return out


def run(backend, length, n=1, **cfg):
    """Sample with these settings, each to SamplerConfig or Experiment, whichever has it."""
    trial = {k: cfg.pop(k) for k in list(cfg) if k in {f.name for f in fields(Experiment)}}
    return Sampler(backend, SamplerConfig(**cfg), Experiment(**trial)).sample([Request([5], [6])] * n, length)


def test_threshold_decoding_leaves_a_beam_to_beam_search():
    from diffill.model.decoders import Decoder

    with pytest.raises(ValueError, match="model.beam"):
        run(ScriptedBackend([20, 21]), 4, beam=3)
    # the decoder a configuration names: threshold decoding without a beam, as the sampler itself
    (decoded,) = Decoder(ScriptedBackend([20, 21]), SamplerConfig(beam=0)).sample([Request([5], [6])], 4)
    (sampled,) = run(ScriptedBackend([20, 21]), 4, beam=0)
    assert decoded == sampled and decoded.tokens == [20, 21]


def test_confident_slots_are_committed_together():
    be = ScriptedBackend([10, 11, 12, 13], conf=[0.95] * 4)
    (r,) = run(be, 8, threshold=0.9)
    assert r.tokens == [10, 11, 12, 13] and r.complete
    # the content and the confident <eoi> right after it in one step
    assert r.forward_passes == 1


def test_one_per_step_commits_exactly_one_token_a_step():
    be = ScriptedBackend([10, 11, 12, 13], conf=[0.95] * 4)
    (r,) = run(be, 6, max_per_step=1)
    assert r.tokens == [10, 11, 12, 13]
    # 4 content tokens and the first <eoi>; the <eoi> fills the rest
    assert r.forward_passes == 5


def test_min_per_step_and_max_per_step_bound_each_step():
    be = ScriptedBackend([10, 11, 12, 13, 14, 15], conf=[0.2] * 6, eoi_conf=0.2)
    steps = []
    Sampler(be, SamplerConfig(threshold=0.9, min_per_step=2, max_per_step=3)).sample(
        [Request([5], [6])], 6, on_step=lambda t: steps.append(len(t.committed_now[0])))
    assert steps == [2, 2, 2]
    be = ScriptedBackend([10, 11, 12, 13, 14, 15], conf=[0.99] * 6)
    steps = []
    Sampler(be, SamplerConfig(threshold=0.9, max_per_step=4)).sample(
        [Request([5], [6])], 6, on_step=lambda t: steps.append(len(t.committed_now[0])))
    assert steps == [4, 2]


def test_left_to_right_commits_the_leading_run_of_confident_slots():
    # the right end is the most confident, but left_to_right takes the leftmost masked slot and
    # the confident slots directly after it, never one with a <mask> on its left
    be = ScriptedBackend([10, 11, 12, 13, 14], conf=[0.5, 0.95, 0.95, 0.5, 0.99])
    steps = []
    (r,) = Sampler(be, SamplerConfig(threshold=0.9), Experiment(order="left_to_right")).sample(
        [Request([5], [6])], 6, on_step=lambda t: steps.append(t.committed_now[0]))
    assert r.tokens == [10, 11, 12, 13, 14]
    assert steps == [[0, 1, 2], [3, 4, 5]]  # the <eoi> (slot 5) with the last content, never before
    be = ScriptedBackend([10, 11, 12], conf=[0.99] * 3)
    steps = []
    Sampler(be, SamplerConfig(max_per_step=1), Experiment(order="left_to_right")).sample(
        [Request([5], [6])], 4, on_step=lambda t: steps.append(t.committed_now[0]))
    assert steps == [[0], [1], [2], [3]]


def test_eoi_is_monotone_and_decided_after_the_content():
    # <eoi> is by far the most confident guess at the right end; content is unsure.
    be = ScriptedBackend([10, 11, 12], conf=[0.6, 0.6, 0.6], eoi_conf=0.999)
    canvases = []
    (r,) = Sampler(be, SamplerConfig(threshold=0.9)).sample(
        [Request([5], [6])], 8, on_step=lambda t: canvases.append(t.canvas[0]))
    assert r.tokens == [10, 11, 12]
    for c in canvases:
        if EOI in c:
            first = c.index(EOI)
            assert all(t == EOI for t in c[first:])
            assert MASK not in c[:first]  # an <eoi> never has a <mask> on its left


class HoldSlot:
    """A constraint that holds every proposal at ``slot`` for the first ``n`` checks."""

    def __init__(self, slot, n=1):
        self.slot, self.left = slot, n

    def check(self, row, tokens, committed, proposed):
        if self.left and proposed[self.slot]:
            self.left -= 1
            return {self.slot}, set(), set()
        return set(), set(), set()


def test_a_confident_end_closes_the_fill_with_its_last_content():
    # the end comes in the step that commits the content before it, when confident enough
    be = ScriptedBackend([10, 11], conf=[0.95, 0.5], eoi_conf=0.95)
    steps = []
    (r,) = Sampler(be, SamplerConfig(threshold=0.9)).sample(
        [Request([5], [6])], 5, on_step=lambda t: steps.append(t.committed_now[0]))
    assert r.tokens == [10, 11] and steps == [[0], [1, 2, 3, 4]]
    # an unsure end waits for a pass of its own
    be = ScriptedBackend([10, 11], conf=[0.95, 0.95], eoi_conf=0.5)
    steps = []
    (r,) = Sampler(be, SamplerConfig(threshold=0.9)).sample(
        [Request([5], [6])], 4, on_step=lambda t: steps.append(t.committed_now[0]))
    assert r.tokens == [10, 11] and steps == [[0, 1], [2, 3]]
    # a content proposal held by the constraint keeps the end open
    be = ScriptedBackend([10, 11], conf=[0.95, 0.95], eoi_conf=0.99)
    canvases = []
    (r,) = Sampler(be, SamplerConfig(threshold=0.9)).sample(
        [Request([5], [6])], 4, constraint=HoldSlot(1), on_step=lambda t: canvases.append(t.canvas[0]))
    assert r.tokens == [10, 11]
    assert canvases[0] == [10, MASK, MASK, MASK]
    # and the one-token-a-step baseline still spends a step on the end
    (r,) = run(ScriptedBackend([10], conf=[0.99]), 3, max_per_step=1)
    assert r.forward_passes == 2


def test_min_per_step_never_forces_an_early_eoi():
    # one uncertain content slot, then <eoi> everywhere: two commits a step are asked for, but an
    # <eoi> with a <mask> on its left may not be one of them
    be = ScriptedBackend([10, 11], conf=[0.6, 0.6], eoi_conf=0.999)
    canvases = []
    (r,) = Sampler(be, SamplerConfig(threshold=0.99, min_per_step=3, max_per_step=3)).sample(
        [Request([5], [6])], 6, on_step=lambda t: canvases.append(t.canvas[0]))
    assert r.tokens == [10, 11]
    for c in canvases:
        if EOI in c:
            assert MASK not in c[: c.index(EOI)]


def test_bans_are_respected_and_can_be_added_from_outside():
    be = ScriptedBackend([10, 11, 12], conf=[0.95] * 3)
    bans = {(0, 1): {11}}
    (r,) = Sampler(be, SamplerConfig()).sample([Request([5], [6])], 4, bans=bans)
    assert r.tokens == [10, 31, 12]
    # a caller adds a ban between steps (as the syntax constraint does)
    be = ScriptedBackend([10, 11, 12], conf=[0.95, 0.5, 0.5])
    bans = {}
    (r,) = Sampler(be, SamplerConfig(max_per_step=1)).sample(
        [Request([5], [6])], 4, bans=bans, on_step=lambda t: bans.setdefault((0, 2), {12}))
    assert r.tokens == [10, 11, 31]


class VetoFirst:
    """A constraint that vetoes (bans) the first ``n`` proposals it sees, then accepts."""

    def __init__(self, n):
        self.left = n

    def check(self, row, tokens, committed, proposed):
        slots = [i for i, p in enumerate(proposed) if p]
        if self.left and slots:
            self.left -= 1
            return set(), {slots[0]}, set()
        return set(), set(), set()


def test_a_step_that_changed_nothing_reuses_its_logits():
    be = ScriptedBackend([10, 11, 12], conf=[0.95] * 3)
    (r,) = Sampler(be, SamplerConfig(max_per_step=1)).sample([Request([5], [6])], 4, constraint=VetoFirst(3))
    # three vetoed steps (10, then the second choice 31, then 31's successor banned) cost no pass
    assert r.steps == r.forward_passes + 3
    assert be.calls == r.forward_passes
    assert r.tokens[1:] == [11, 12] and r.tokens[0] not in (10, 31)


def test_stop_tokens_end_a_fill_like_eoi():
    be = ScriptedBackend([10, 11, 7, 12], conf=[0.95] * 4)
    (plain,) = Sampler(be, SamplerConfig()).sample([Request([5], [6])], 6)
    stopped, other = Sampler(be, SamplerConfig()).sample(
        [Request([5], [6], stops=frozenset({7})), Request([5], [6])], 6)
    assert plain.tokens == other.tokens == [10, 11, 7, 12]
    assert stopped.tokens == [10, 11] and stopped.complete


def test_each_row_in_a_batch_counts_its_own_steps_and_passes():
    be = ScriptedBackend([10, 11, 12, 13])
    reqs = [Request([5], [6]), Request([5], [6], stops=frozenset({12}))]  # the second ends at 12
    sampler = Sampler(be, SamplerConfig(max_per_step=1))
    long, short = sampler.sample(reqs, 6)
    assert long.tokens == [10, 11, 12, 13] and short.tokens == [10, 11]
    alone = sampler.sample([reqs[1]], 6)[0]
    assert (short.steps, short.forward_passes) == (alone.steps, alone.forward_passes) == (3, 3)
    assert (long.steps, long.forward_passes) == (5, 5)


def test_a_row_past_finish_after_is_finished_in_one_step():
    # unsure of every slot: one token a pass (the last with the confident <eoi>), 6 passes
    be = ScriptedBackend([10, 11, 12, 13, 14, 15], conf=[0.5] * 6)
    slow, bounded = Sampler(be, SamplerConfig()).sample(
        [Request([5], [6]), Request([5], [6], finish_after=3)], 10)
    assert slow.tokens == [10, 11, 12, 13, 14, 15] and slow.forward_passes == 6
    # two passes at the threshold, then the third commits every guess and the <eoi> after them
    assert bounded.tokens == slow.tokens and bounded.complete
    assert bounded.forward_passes == 3


def test_finish_after_still_decides_the_end_after_the_content():
    # past the bound, an <eoi> guess with a masked slot on its left is not committed with it
    be = ScriptedBackend([10, 11, 12], conf=[0.5] * 3, eoi_conf=0.5)
    (r,) = Sampler(be, SamplerConfig(max_per_step=2)).sample([Request([5], [6], finish_after=1)], 8)
    assert r.tokens == [10, 11, 12] and r.complete
    assert r.forward_passes == 2  # 10 11, then 12 <eoi>: max_per_step holds past the bound


def test_a_loop_of_repeated_units_is_cut_after_max_repeats():
    # the model wants 10, then 11 12 11 12 ... to the end of the canvas
    loop = [10] + [11, 12] * 6
    (free,) = Sampler(ScriptedBackend(loop), SamplerConfig(max_per_step=1, max_repeats=0)).sample(
        [Request([5], [6])], 13)
    assert free.tokens == loop
    (cut,) = Sampler(ScriptedBackend(loop), SamplerConfig(max_per_step=1, max_repeats=2)).sample(
        [Request([5], [6])], 13)
    # after two copies of (11, 12) another 11 is banned: the second choice (31) comes instead
    assert cut.tokens[:6] == [10, 11, 12, 11, 12, 31]
    (one,) = Sampler(ScriptedBackend([7, 7, 7, 7, 7]), SamplerConfig(max_per_step=1, max_repeats=3)).sample(
        [Request([5], [6])], 5)
    assert one.tokens[:4] == [7, 7, 7, 31]


def test_cancellation_returns_promptly_with_the_best_partial():
    be = ScriptedBackend([10, 11, 12, 13], conf=[0.95] * 4)
    calls = iter(range(100))
    (r,) = Sampler(be, SamplerConfig(max_per_step=1)).sample(
        [Request([5], [6])], 6, cancelled=lambda: next(calls) >= 2)
    assert r.cancelled and not r.complete
    assert r.forward_passes == 2 and r.tokens == [10, 11]
    (r,) = Sampler(be, SamplerConfig()).sample([Request([5], [6])], 6, cancelled=lambda: True)
    assert r.cancelled and r.tokens == [] and r.forward_passes == 0


def test_canvas_grows_when_code_fills_it():
    target = list(range(10, 22))  # 12 tokens
    (r,) = run(ScriptedBackend(target), 8)
    assert r.tokens == target[:8] and r.complete
    (r,) = run(ScriptedBackend(target), 8, grow_by=8, max_length=64)
    assert r.tokens == target
    (r,) = run(ScriptedBackend(target), 8, grow_by=2, max_length=10)
    assert r.tokens == target[:10]


def test_growth_in_a_batch_pads_the_rows_that_had_ended():
    class TwoTargets(ScriptedBackend):
        def logits(self, state, canvas, slots=None):
            rows = []
            for i, row in enumerate(canvas.tolist()):
                self.target = [10, 11] if i == 0 else list(range(10, 20))
                rows.append(self._row(row))
            out = torch.stack(rows)
            return out if slots is None else out.gather(1, slots[..., None].expand(-1, -1, V))

    short, long_ = Sampler(TwoTargets([]), SamplerConfig(), Experiment(grow_by=4, max_length=16)).sample(
        [Request([5], [6]), Request([5], [6])], 6)
    assert short.tokens == [10, 11] and long_.tokens == list(range(10, 20))


def test_collapsed_tokens_are_remasked_a_bounded_number_of_times():
    # slot 1 is committed, then the model's belief in it collapses to 0.01
    be = ScriptedBackend([10, 11, 12], conf=[0.5, 0.95, 0.5], collapse={1: 0.01})
    canvases = []
    (r,) = Sampler(be, SamplerConfig(max_remask=1), Experiment(remask_below=0.05)).sample(
        [Request([5], [6])], 4, on_step=lambda t: canvases.append(t.canvas[0]))
    remasked_steps = [c for c in canvases[1:] if c[1] == MASK]
    assert len(remasked_steps) == 1  # re-masked once, then left alone
    assert r.complete and r.tokens == [10, 11, 12]
    (r2,) = Sampler(be, SamplerConfig()).sample([Request([5], [6])], 4)
    assert r2.forward_passes < r.forward_passes


def test_logits_are_asked_only_at_masked_slots():
    be = ScriptedBackend([10, 11, 12, 13], conf=[0.95, 0.5, 0.5, 0.5])
    run(be, 4, threshold=0.9)
    assert be.seen_slots[0] == [[0, 1, 2, 3]]
    assert be.seen_slots[1] == [[1, 2, 3]]


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="confidence"):
        SamplerConfig(confidence="vibes")
    with pytest.raises(ValueError, match="order"):
        Experiment(order="random")
    with pytest.raises(ValueError):
        SamplerConfig(min_per_step=3, max_per_step=2)
    with pytest.raises(ValueError, match="max_repeats"):
        SamplerConfig(max_repeats=-1)
    with pytest.raises(ValueError):
        Sampler(ScriptedBackend([10]), SamplerConfig()).sample([Request([5], [6])], 0)


@pytest.mark.parametrize("measure", ["prob", "margin", "entropy"])
def test_every_confidence_measure_fills_the_canvas(measure):
    (r,) = run(ScriptedBackend([10, 11, 12], conf=[0.95] * 3), 5, confidence=measure)
    assert r.tokens == [10, 11, 12]


# -- the real (tiny, random) network -----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_backend(tiny_checkpoint):
    model, tok = load_checkpoint(tiny_checkpoint)
    return DiffillBackend(model, tok), tok


def _requests(tok):
    texts = [("def f(x):\n    return ", "\n\nprint(f(2))\n"),
             ("import os\n", ""),
             ("class A:\n    def __init__(self):\n        self.x = ", "\n        self.y = 2\n")]
    return [Request(tok.encode(p), tok.encode(s)) for p, s in texts]


@pytest.mark.parametrize("cache", [False, True])
def test_batch_equals_sequential(tiny_backend, cache):
    be, tok = tiny_backend
    sampler = Sampler(be, SamplerConfig(threshold=0.05, cache=cache))
    reqs = _requests(tok)
    together = [(r.tokens, r.steps, r.forward_passes) for r in sampler.sample(reqs, 10)]
    alone = [(r.tokens, r.steps, r.forward_passes) for q in reqs for r in sampler.sample([q], 10)]
    assert together == alone  # each row counts its own steps and passes, not the batch's


def test_same_seed_same_result_when_sampling(tiny_backend):
    be, tok = tiny_backend
    reqs = _requests(tok)
    a = Sampler(be, SamplerConfig(), Experiment(temperature=1.0, seed=7)).sample(reqs, 10)
    b = Sampler(be, SamplerConfig(), Experiment(temperature=1.0, seed=7)).sample(reqs, 10)
    c = Sampler(be, SamplerConfig(), Experiment(temperature=1.0, seed=8)).sample(reqs, 10)
    assert [r.tokens for r in a] == [r.tokens for r in b]
    assert [r.tokens for r in a] != [r.tokens for r in c]  # a random model: the draws differ


def test_cache_refreshed_every_step_equals_exact(tiny_backend):
    be, tok = tiny_backend
    reqs = _requests(tok)
    exact = Sampler(be, SamplerConfig(max_per_step=1, cache=False)).sample(reqs, 8)
    refreshed = Sampler(be, SamplerConfig(max_per_step=1, cache=True), Experiment(cache_refresh=1)).sample(reqs, 8)
    assert [r.tokens for r in exact] == [r.tokens for r in refreshed]


def test_left_to_right_decoding_mixes_a_short_copy_in_at_the_leftmost_slot_alone():
    from diffill.model.ngram import TokenCache

    # the model wants 10 11 12 13 (0.6 at the first slot, 0.95 after); the document has the 6-token
    # prefix followed by 20 21: weighed 0.39, the copy's 20 (0.39) beats the model's 10 (0.37)
    prefix = list(range(3, 9))
    cache = TokenCache().extend([prefix + [20, 21, 22]])
    be = ScriptedBackend([10, 11, 12, 13], conf=[0.6, 0.95, 0.95, 0.95])
    (plain,) = Sampler(be, SamplerConfig()).sample([Request(prefix, [6])], 6)
    steps = []
    (copied,) = Sampler(be, SamplerConfig()).sample([Request(prefix, [6], copying=Copying((cache,)))], 6,
                                                    on_step=lambda s: steps.append(s.committed_now[0]))
    assert plain.tokens == [10, 11, 12, 13] and plain.forward_passes == 1
    assert copied.tokens[0] == 20
    assert steps[0] == [0]  # the slots right of the copied one waited: the model guessed them without it


def test_a_sure_copy_is_committed_in_one_pass():
    from diffill.model.ngram import TokenCache

    # a 16-token match with one continuation: 20 21 22 need no forward pass of their own
    prefix = list(range(3, 19))
    cache = TokenCache().extend([prefix + [20, 21, 22]])
    be = ScriptedBackend([10, 11, 12, 13], conf=[0.6, 0.95, 0.95, 0.95])
    steps = []
    (copied,) = Sampler(be, SamplerConfig()).sample([Request(prefix, [6], copying=Copying((cache,)))], 6,
                                                    on_step=lambda s: steps.append(s.committed_now[0]))
    assert copied.tokens[:3] == [20, 21, 22] and steps[0] == [0, 1, 2]


def test_a_sure_copy_stops_at_a_token_banned_at_its_slot():
    from diffill.model.ngram import TokenCache

    # the same sure run, but 21 is banned at slot 1 (a veto the constraint made): the run stops
    # before it, so it is never proposed there again
    prefix = list(range(3, 19))
    cache = TokenCache().extend([prefix + [20, 21, 22]])
    be = ScriptedBackend([10, 11, 12, 13], conf=[0.6, 0.95, 0.95, 0.95])
    steps = []
    (copied,) = Sampler(be, SamplerConfig()).sample([Request(prefix, [6], copying=Copying((cache,)))], 6, bans={(0, 1): {21}},
                                                    on_step=lambda s: steps.append(s.committed_now[0]))
    assert copied.tokens[0] == 20 and steps[0] == [0] and 21 not in copied.tokens[1:2]
