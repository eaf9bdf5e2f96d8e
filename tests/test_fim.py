import numpy as np
import torch

from diffill.model.fim import causal_batch, causal_example, causal_loss, fim_row, psm_prompt
from diffill.model.objective import Example, ObjectiveConfig

SRC = ("import os\n\n\ndef walk(root):\n    for name in os.listdir(root):\n"
       "        path = os.path.join(root, name)\n        if os.path.isdir(path):\n"
       "            yield from walk(path)\n        else:\n            yield path\n")


def test_psm_and_spm_rows_follow_the_starcoder_layout(tok):
    pre, mid, suf = [10, 11], [20, 21, 22], [30]
    s = tok.mask_id
    assert fim_row(tok, pre, mid, suf, spm=False) == [10, 11, s, 30, s, 20, 21, 22, tok.eoi_id]
    assert fim_row(tok, pre, mid, suf, spm=True) == [s, 30, s, 10, 11, 20, 21, 22, tok.eoi_id]
    assert fim_row(tok, pre, mid, suf, spm=False)[:5] == psm_prompt(tok, pre, suf)
    # with no prefix the two layouts are one sequence
    assert fim_row(tok, [], mid, suf, spm=False) == fim_row(tok, [], mid, suf, spm=True)


def test_causal_rows_hold_a_hole_of_the_file_in_either_layout(tok):
    cfg = ObjectiveConfig(kind="causal", spm_fraction=0.5)
    rng = np.random.default_rng(0)
    rows = [e for e in (causal_example(SRC, tok, rng, cfg) for _ in range(40)) if e is not None]
    assert rows and all(e.ids[-1] == tok.eoi_id and e.ids.count(tok.mask_id) == 2 for e in rows)
    spm = [e.ids[0] == tok.mask_id for e in rows]
    assert any(spm) and not all(spm)
    for e in rows:
        first, second = [i for i, t in enumerate(e.ids) if t == tok.mask_id]
        if e.ids[0] == tok.mask_id:  # <suf> suffix <mid> prefix middle: the file, rotated
            text = tok.decode(e.ids[second + 1 :]) + tok.decode(e.ids[1:second])
        else:  # prefix <suf> suffix <mid> middle
            text = tok.decode(e.ids[:first]) + tok.decode(e.ids[second + 1 :]) + tok.decode(e.ids[first + 1 : second])
        assert text in SRC


def test_a_causal_batch_trains_every_position_but_a_rows_last_and_padding(tok):
    rows = [Example([5, 6, 7, 8, 9], [True] * 5), Example([12, 13], [True] * 2)]
    batch = causal_batch(rows, tok)
    for i, e in enumerate(rows):
        n = len(e.ids)
        assert batch.attention_mask[i].tolist() == [1] * n + [0] * (batch.input_ids.shape[1] - n)
        assert batch.masked[i].nonzero().squeeze(1).tolist() == list(range(n - 1))
        assert batch.targets[i, : n - 1].tolist() == e.ids[1:]
        assert batch.input_ids[i, :n].tolist() == e.ids
    assert batch.n_eligible == 4 + 1


def test_causal_loss_is_the_mean_next_token_cross_entropy(tok):
    from diffill.model.configuration import DiffillConfig
    from diffill.model.network import DiffillForMaskedLM

    torch.manual_seed(0)
    model = DiffillForMaskedLM(DiffillConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=48, causal=True))
    rows = [Example([5, 6, 7, 8, 9], [True] * 5), Example([12, 13, 14], [True] * 3)]
    batch = causal_batch(rows, tok)
    loss, stats = causal_loss(model, batch)
    logits = model(torch.tensor([[5, 6, 7, 8, 9]])).logits[0, :4]
    logits2 = model(torch.tensor([[12, 13, 14]])).logits[0, :2]
    ce = torch.nn.functional.cross_entropy(torch.cat([logits, logits2]), torch.tensor([6, 7, 8, 9, 13, 14]))
    torch.testing.assert_close(loss, ce, atol=1e-5, rtol=1e-4)
    assert stats["trained"] == 6
