import numpy as np
import pytest
import torch

from diffill.model.objective import (
    Example,
    ObjectiveConfig,
    diffusion_loss,
    infill_example,
    noise_batch,
    pick_middle,
)

SRC = ("import os\n\n\ndef walk(root):\n    for name in os.listdir(root):\n"
       "        path = os.path.join(root, name)\n        if os.path.isdir(path):\n"
       "            yield from walk(path)\n        else:\n            yield path\n")


def test_only_eligible_positions_are_masked(tok):
    rng = np.random.default_rng(0)
    ex = Example(ids=list(range(10, 30)), eligible=[i % 3 == 0 for i in range(20)])
    for _ in range(20):
        b = noise_batch([ex], tok, rng, t=np.array([0.6]))
        el = torch.tensor(ex.eligible + [False] * (b.masked.shape[1] - 20))
        assert not (b.masked[0] & ~el).any()
        assert b.masked.any()
        assert (b.input_ids[b.masked] == tok.mask_id).all()
        assert torch.equal(b.input_ids[~b.masked], b.targets[~b.masked])


def test_t_is_stratified_over_the_batch():
    from diffill.model.objective import EPS, stratified_t

    t = np.sort(stratified_t(8, np.random.default_rng(0)))
    assert EPS <= t[0] and t[-1] <= 1.0
    assert np.all(np.diff(t) == pytest.approx((1 - EPS) / 8))


def test_mask_rate_follows_t(tok):
    rng = np.random.default_rng(0)
    ex = Example(ids=[7] * 400, eligible=[True] * 400)
    b = noise_batch([ex] * 8, tok, rng, t=np.full(8, 0.25))
    assert 0.2 < b.masked.float()[:, :400].mean().item() < 0.3


class _Fixed(torch.nn.Module):
    """Returns fixed logits at selected rows, to check the loss arithmetic."""

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab

    def forward(self, ids, attention_mask=None, logits_at=None):
        full = torch.log_softmax(torch.arange(self.vocab, dtype=torch.float).repeat(*ids.shape, 1), -1)
        return type("O", (), {"logits": full[logits_at]})()


def test_loss_weights_masked_cross_entropy_by_one_over_t(tok):
    rng = np.random.default_rng(1)
    exs = [Example(ids=[5, 6, 7, 8], eligible=[True, True, False, True]),
           Example(ids=[9, 10, 11, 12], eligible=[True] * 4)]
    t = np.array([0.5, 0.8])
    b = noise_batch(exs, tok, rng, t=t)
    loss, _ = diffusion_loss(_Fixed(tok.vocab_size), b)
    logp = torch.log_softmax(torch.arange(tok.vocab_size, dtype=torch.float), -1)
    expected = 0.0
    for i in range(2):
        for j in torch.nonzero(b.masked[i]).squeeze(1).tolist():
            expected += -logp[b.targets[i, j]].item() / t[i]
    expected /= 7  # eligible positions in the batch
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_infill_canvas_is_middle_then_eoi_and_only_canvas_is_eligible(tok):
    rng = np.random.default_rng(3)
    cfg = ObjectiveConfig()
    for kind in ["line", "line_rest", "lines", "node", "chars"]:
        ex = None
        while ex is None:
            ex = infill_example(SRC, tok, rng, cfg, kind=kind)
        el = np.array(ex.eligible)
        ids = np.array(ex.ids)
        canvas = ids[el].tolist()
        assert el.any() and np.all(np.diff(np.nonzero(el)[0]) == 1), "canvas is one contiguous run"
        body = canvas[: canvas.index(tok.eoi_id)] if tok.eoi_id in canvas else canvas
        assert all(t == tok.eoi_id for t in canvas[len(body):])
        # prefix + middle + suffix reassemble a piece of the source
        text = tok.decode(ids[: np.argmax(el)].tolist()) + tok.decode(body) + tok.decode(ids[np.nonzero(el)[0][-1] + 1:].tolist())
        assert text in SRC


def _canvas_example(tok, n_content=5, n_pad=11):
    """prefix (3) + canvas (content then <eoi> padding) + suffix (2)."""
    ids = [20, 21, 22] + list(range(30, 30 + n_content)) + [tok.eoi_id] * n_pad + [23, 24]
    eligible = [False] * 3 + [True] * (n_content + n_pad) + [False] * 2
    return Example(ids, eligible, canvas=True)


def test_hide_eoi_masks_the_padding_whenever_content_is_masked(tok):
    rng = np.random.default_rng(0)
    ex, plain = _canvas_example(tok), Example(ids=[40 + i for i in range(16)] + [tok.eoi_id] * 4, eligible=[True] * 20)
    seen_hidden = seen_open = 0
    for _ in range(200):
        b = noise_batch([ex, plain], tok, rng, objective=ObjectiveConfig(hide_eoi=True))
        content, pads = b.masked[0, 3:8], b.masked[0, 8:19]
        assert not b.masked[0, :3].any() and not b.masked[0, 19:].any()
        if content.any():
            assert pads.all()
            seen_hidden += 1
        else:
            seen_open += 1
        # a plain sequence is masked as before, <eoi>-looking tokens and all
        assert (b.weights[1] == b.weights[1, 0]).all()
    assert seen_hidden > 100 and seen_open > 0


def test_ordered_canvas_masks_a_suffix_of_the_canvas(tok):
    rng = np.random.default_rng(1)
    ex = _canvas_example(tok)
    cuts = set()
    for _ in range(200):
        b = noise_batch([ex], tok, rng, objective=ObjectiveConfig(ordered_fraction=1.0))
        canvas = b.masked[0, 3:19].tolist()
        cut = canvas.index(True)
        assert all(canvas[cut:]) and not any(canvas[:cut])
        assert cut <= 5, "the <eoi> padding is always masked"
        cuts.add(cut)
    assert cuts == set(range(6))


@pytest.mark.parametrize("objective", [ObjectiveConfig(hide_eoi=True),
                                       ObjectiveConfig(ordered_fraction=1.0),
                                       ObjectiveConfig(hide_eoi=True, ordered_fraction=0.5)])
def test_canvas_noise_weights_count_every_slot_once_in_expectation(tok, objective):
    """E[masked * weight] = 1 at every canvas slot: the loss stays an unbiased per-slot average."""
    rng = np.random.default_rng(2)
    ex = _canvas_example(tok)
    total = np.zeros(16)
    n = 6000
    for _ in range(n // 8):
        b = noise_batch([ex] * 8, tok, rng, objective=objective)
        total += (b.masked[:, 3:19] * b.weights[:, 3:19]).sum(0).numpy()
    assert total / n == pytest.approx(np.ones(16), abs=0.12)


def test_line_middle_is_the_text_of_a_line_after_its_indentation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s, e = pick_middle(SRC, "line", rng)
        piece = SRC[s:e]
        assert "\n" not in piece and piece.strip() and piece == piece.rstrip()
        assert SRC[e:e + 1] in ("\n", "")


def test_plain_and_infill_losses_are_finite_on_a_real_model(tiny_checkpoint, tok):
    from diffill.model.network import DiffillForMaskedLM

    m = DiffillForMaskedLM.from_pretrained(str(tiny_checkpoint))
    rng = np.random.default_rng(0)
    exs = [e for e in (infill_example(SRC, tok, rng, ObjectiveConfig()) for _ in range(8)) if e]
    loss, stats = diffusion_loss(m, noise_batch(exs, tok, rng))
    assert torch.isfinite(loss) and loss.item() > 0
    assert 0 <= stats["masked_acc"] <= 1
    loss.backward()
    assert m.embed_tokens.weight.grad is not None




def test_with_no_context_rate_the_context_is_never_masked_and_the_batch_is_unchanged(tok):
    """context_mask_rate 0 (the default) draws nothing more: the batch of a seed is the one the
    objective built before the rate existed, canvas noise and all."""
    exs = [_canvas_example(tok), Example(ids=list(range(40, 60)), eligible=[True] * 20)]
    for seed in range(20):
        base = noise_batch(exs, tok, np.random.default_rng(seed), objective=ObjectiveConfig(hide_eoi=True))
        zero = noise_batch(exs, tok, np.random.default_rng(seed),
                           objective=ObjectiveConfig(hide_eoi=True, context_mask_rate=0.0))
        assert zero.context is None and not zero.masked[0, :3].any() and not zero.masked[0, 19:].any()
        for name in ("input_ids", "targets", "masked", "weights"):
            assert torch.equal(getattr(base, name), getattr(zero, name))
        assert zero.n_eligible == base.n_eligible == 16 + 20


def test_context_rate_masks_the_context_at_rate_times_t_weighted_one_over_t(tok):
    ex = Example(ids=[tok.bos_id] + [20] * 300 + [30] * 16 + [21] * 100,
                 eligible=[False] * 301 + [True] * 16 + [False] * 100, canvas=True)
    plain = Example(ids=[40] * 50, eligible=[True] * 50)
    rate, t = 0.2, np.array([0.5, 0.5])
    hits = total = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        b = noise_batch([ex, plain], tok, rng, t=t, objective=ObjectiveConfig(context_mask_rate=rate))
        ctx = b.context[0]
        assert not b.context[1].any() and not ctx[0], "plain rows and <bos> are not context"
        assert ctx[1:301].all() and not ctx[301:317].any() and ctx[317:417].all() and not ctx[417:].any()
        hits += int(b.masked[0][ctx].sum())
        total += int(ctx.sum())
        assert torch.allclose(b.weights[0][ctx], torch.tensor(1 / 0.5))
        assert b.n_eligible == pytest.approx(16 + 50 + rate * 400)
    assert hits / total == pytest.approx(rate * 0.5, abs=0.01)


def test_context_rate_leaves_the_canvas_noise_as_it_was(tok):
    exs = [_canvas_example(tok)] * 4
    cfg = ObjectiveConfig(hide_eoi=True, ordered_fraction=0.5)
    for seed in range(10):
        off = noise_batch(exs, tok, np.random.default_rng(seed), objective=cfg)
        on = noise_batch(exs, tok, np.random.default_rng(seed),
                         objective=ObjectiveConfig(hide_eoi=True, ordered_fraction=0.5, context_mask_rate=1.0))
        assert torch.equal(on.masked & ~on.context, off.masked)
        assert torch.equal(on.weights, off.weights)


def test_context_loss_is_reported_apart_from_the_canvas(tiny_checkpoint, tok):
    from diffill.model.network import DiffillForMaskedLM

    model = DiffillForMaskedLM.from_pretrained(str(tiny_checkpoint))
    ex = infill_example(SRC * 4, tok, np.random.default_rng(0), ObjectiveConfig(), kind="line")
    b = noise_batch([ex] * 8, tok, np.random.default_rng(1), t=np.full(8, 0.9),
                    objective=ObjectiveConfig(context_mask_rate=1.0))
    loss, stats = diffusion_loss(model, b)
    assert torch.isfinite(loss)
    assert stats["context_masked"] == int((b.masked & b.context).sum()) > 0
    assert stats["masked"] == int((b.masked & ~b.context).sum())


def test_the_window_can_be_read_from_the_whole_file_around_the_excerpt(tok):
    from diffill.model.context import Window

    text = "".join(f"value_{i} = {i}\n" for i in range(400))  # ~6,000 characters, over the excerpt
    window = Window(200, 60)
    starts_with_bos = {False: 0, True: 0}
    for flag in (False, True):
        rng = np.random.default_rng(4)
        cfg = ObjectiveConfig(window=window, window_from_file=flag)
        for _ in range(30):
            ex = infill_example(text, tok, rng, cfg, kind="line", excerpt_chars=600)
            if ex is None:
                continue
            assert tok.decode([i for i in ex.ids if i not in (tok.eoi_id, tok.bos_id)]) in text
            starts_with_bos[flag] += ex.ids[0] == tok.bos_id
            if flag:
                assert ex.eligible.index(True) > 150, "the prefix reaches past the excerpt's start"
    assert starts_with_bos[False] > 0 and starts_with_bos[True] == 0
