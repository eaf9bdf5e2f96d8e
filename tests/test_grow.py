import json

import pytest
import torch

from diffill.model.configuration import DiffillConfig
from diffill.model.grow import copies_after, grow, grow_model, main
from diffill.model.network import DiffillForMaskedLM
from diffill.model.train import init_state

CFG = dict(vocab_size=300, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48)


def _model(seed=0):
    torch.manual_seed(seed)
    return DiffillForMaskedLM(DiffillConfig(**CFG)).eval()


def test_copies_are_spread_over_the_depth():
    assert copies_after(6, 10) == [1, 2, 3, 4]
    assert copies_after(6, 12) == [0, 1, 2, 3, 4, 5]
    assert copies_after(6, 7) == [3]
    assert copies_after(3, 3) == []


def test_a_grown_model_computes_what_the_source_did():
    m = _model()
    ids = torch.randint(4, 300, (2, 19))
    before = m(ids).logits
    grown = grow_model(m, 5)
    assert len(grown.layers) == grown.config.num_hidden_layers == 5
    torch.testing.assert_close(grown(ids).logits, before, atol=1e-5, rtol=1e-5)
    # the new blocks are copies, not the same modules: training one leaves its source alone
    assert grown.layers[2].self_attn.q_proj.weight is not grown.layers[1].self_attn.q_proj.weight
    assert not grown.layers[2].mlp.down_proj.weight.any()


def test_the_new_blocks_learn():
    grown = grow_model(_model(), 4).train()
    ids = torch.randint(4, 300, (2, 11))
    opt = torch.optim.SGD(grown.parameters(), lr=0.5)
    for _ in range(2):  # the first step moves the zeroed output projections, the second the rest
        opt.zero_grad()
        grown(ids).logits.logsumexp(-1).mean().backward()
        opt.step()
    twin = grown.layers[2]
    assert twin.self_attn.o_proj.weight.any() and twin.mlp.down_proj.weight.any()
    assert not torch.equal(twin.self_attn.q_proj.weight, grown.layers[1].self_attn.q_proj.weight)


def test_grow_writes_a_checkpoint_that_goes_on_counting(tiny_checkpoint, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in tiny_checkpoint.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    (src / "trainer_state.json").write_text(json.dumps({"step": 40, "tokens": 900, "cpu_seconds": 7.0,
                                                        "wall_seconds": 4.0}))
    out = grow(src, tmp_path / "grown", 3)
    model = DiffillForMaskedLM.from_pretrained(str(out))
    assert model.config.num_hidden_layers == 3
    assert (out / "tokenizer.json").is_file()
    assert init_state(out)["step"] == 40 and init_state(out)["tokens"] == 900
    source = DiffillForMaskedLM.from_pretrained(str(src)).eval()
    ids = torch.randint(4, source.config.vocab_size, (1, 9))
    torch.testing.assert_close(model.eval()(ids).logits, source(ids).logits, atol=1e-5, rtol=1e-5)


def test_growing_needs_more_layers(tiny_checkpoint, tmp_path, capsys):
    with pytest.raises(ValueError, match="more than that"):
        grow_model(_model(), 3)
    with pytest.raises(SystemExit) as e:
        main([str(tiny_checkpoint), str(tmp_path / "out"), "--layers", "2"])
    assert e.value.code == 2 and "model.grow: error" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "nothing"), str(tmp_path / "out"), "--layers", "4"])
    assert e.value.code == 2 and "holds no checkpoint" in capsys.readouterr().err


def test_a_grown_trunk_trains_on_from_its_step(tiny_corpus, tmp_path):
    """The documented recipe: grow a run's trunk checkpoint, then ``train --init`` the grown model."""
    from diffill.model.train import TrainConfig, train

    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    cfg = TrainConfig(batch_size=4, warmup_steps=1, total_steps=20, model=tiny, eval_minutes=1e9)
    train(tiny_corpus, tmp_path / "run", cfg, until_step=3, progress=False)
    grown = grow(tmp_path / "run" / "checkpoint", tmp_path / "grown", 3)
    state = train(tiny_corpus, tmp_path / "deep", cfg, until_step=5, init=grown, progress=False)
    assert state["step"] == 5
    config = json.loads((tmp_path / "deep" / "checkpoint" / "config.json").read_text())
    assert config["num_hidden_layers"] == 3
