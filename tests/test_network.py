import pytest
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedModel

from diffill.model.configuration import DiffillConfig
from diffill.model.loading import DEFAULT_CHECKPOINT as SHIPPED
from diffill.model.loading import ModelLoadError
from diffill.model.network import DiffillForMaskedLM

CFG = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48)


def _model(seed=0):
    torch.manual_seed(seed)
    return DiffillForMaskedLM(DiffillConfig(**CFG)).eval()


def test_save_and_reload_give_identical_logits(tmp_path):
    m = _model()
    ids = torch.randint(4, 300, (2, 17))
    before = m(ids).logits
    m.save_pretrained(str(tmp_path))
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))
    again = DiffillForMaskedLM.from_pretrained(str(tmp_path))
    assert torch.equal(again(ids).logits, before)


def test_the_plain_network_loads_the_same_weights_and_computes_the_same_logits(tmp_path):
    from diffill.model.layers import DiffillNetwork
    from diffill.model.loading import load_checkpoint, load_network

    m = _model()
    m.save_pretrained(str(tmp_path))
    (tmp_path / "tokenizer.json").write_bytes((SHIPPED / "tokenizer.json").read_bytes())
    with pytest.raises(ModelLoadError, match="vocabularies differ"):  # 300 ids against the BPE's 8192
        load_network(tmp_path)
    net, _ = load_network(SHIPPED)
    hf, _ = load_checkpoint(SHIPPED)
    assert isinstance(net, DiffillNetwork) and not isinstance(net, PreTrainedModel)
    assert net.state_dict().keys() == hf.state_dict().keys()
    ids = torch.randint(4, 8000, (2, 23))
    at = torch.tensor([[3, 5], [7, 22]])
    assert torch.equal(net(ids).logits, hf(ids).logits)
    assert torch.equal(net(ids, logits_at=at).logits, hf(ids, logits_at=at).logits)
    assert net.config.to_dict()["prefix_tokens"] == hf.config.prefix_tokens


def test_registered_with_auto_classes(tmp_path):
    _model().save_pretrained(str(tmp_path))
    assert AutoConfig.from_pretrained(str(tmp_path)).model_type == "diffill"
    assert isinstance(AutoModelForMaskedLM.from_pretrained(str(tmp_path)), DiffillForMaskedLM)


def test_attention_is_bidirectional():
    m = _model()
    ids = torch.randint(4, 300, (1, 10))
    other = ids.clone()
    other[0, 9] = (ids[0, 9] + 1) % 300
    # changing the last token changes the first position's logits: no causal mask
    assert not torch.allclose(m(ids).logits[0, 0], m(other).logits[0, 0])


def _causal(seed=0):
    torch.manual_seed(seed)
    return DiffillForMaskedLM(DiffillConfig(**CFG, causal=True)).eval()


def test_a_causal_network_reads_only_earlier_positions():
    m = _causal()
    ids = torch.randint(4, 300, (2, 12))
    later = ids.clone()
    later[:, 7:] = (ids[:, 7:] + 1) % 300
    a, b = m(ids).logits, m(later).logits
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_a_causal_network_with_padding_keeps_its_real_positions():
    m = _causal()
    ids = torch.randint(4, 300, (1, 9))
    padded = torch.cat([ids, torch.zeros((1, 5), dtype=torch.long)], 1)
    attn = torch.cat([torch.ones((1, 9)), torch.zeros((1, 5))], 1).long()
    torch.testing.assert_close(m(padded, attention_mask=attn).logits[:, :9], m(ids).logits, atol=1e-5, rtol=1e-4)


def test_causal_is_saved_and_read_by_both_networks(tmp_path):
    from diffill.model.layers import DiffillNetwork, NetworkConfig

    m = _causal()
    m.save_pretrained(str(tmp_path))
    assert DiffillForMaskedLM.from_pretrained(str(tmp_path)).config.causal
    import json

    plain = DiffillNetwork(NetworkConfig.from_dict(json.loads((tmp_path / "config.json").read_text())))
    plain.load_state_dict(m.state_dict())
    ids = torch.randint(4, 300, (1, 10))
    torch.testing.assert_close(plain(ids).logits, m(ids).logits)
    assert not NetworkConfig().causal and not DiffillConfig().causal


def test_incremental_causal_passes_give_the_whole_row_logits():
    m = _causal()
    ids = torch.randint(4, 300, (1, 11))
    full = m(ids).logits[0]
    logits, cache = m.forward_causal(ids[:, :6])
    torch.testing.assert_close(logits[0], full[5], atol=1e-5, rtol=1e-4)
    for i in range(6, 11):
        logits, cache = m.forward_causal(ids[:, i : i + 1], cache)
        torch.testing.assert_close(logits[0], full[i], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="causal"):
        _model().forward_causal(ids)


def test_logits_at_selects_rows_of_the_full_output():
    m = _model()
    ids = torch.randint(4, 300, (2, 12))
    full = m(ids).logits
    sel = torch.zeros_like(ids, dtype=torch.bool)
    sel[0, 3] = sel[1, 7] = True
    torch.testing.assert_close(m(ids, logits_at=sel).logits, full[sel])
    idx = torch.tensor([[1, 2], [5, 6]])
    torch.testing.assert_close(m(ids, logits_at=idx).logits, torch.stack([full[0, 1:3], full[1, 5:7]]))


def test_padding_does_not_change_real_positions():
    m = _model()
    ids = torch.randint(4, 300, (1, 9))
    padded = torch.cat([ids, torch.zeros((1, 5), dtype=torch.long)], 1)
    attn = torch.cat([torch.ones((1, 9)), torch.zeros((1, 5))], 1).long()
    torch.testing.assert_close(m(padded, attention_mask=attn).logits[:, :9], m(ids).logits, atol=1e-5, rtol=1e-4)


def test_input_and_output_embeddings_are_tied():
    m = _model()
    names = [n for n, _ in m.named_parameters()]
    assert "embed_tokens.weight" in names and not any("lm_head" in n for n in names)


def _paths(m, ids):
    """Logits of the whole-row pass, and of a cached context plus a canvas-only pass."""
    with torch.inference_mode():
        full = m(ids).logits
        pos = torch.arange(ids.shape[1])[None]
        kv = m.encode_context(ids, pos)
        canvas = torch.arange(4, 8)[None]
        context = [(k[:, :, :4], v[:, :, :4]) for k, v in kv]
        step = m.forward_canvas(ids[:, 4:8], canvas, context)
    return full, step


def test_fused_projections_give_the_same_logits_on_every_path():
    ids = torch.randint(4, 300, (1, 12))
    for dtype in (torch.float32, torch.bfloat16):
        m = _model().to(dtype)
        plain = _paths(m, ids)
        assert m.fuse_projections() and m.fused
        for got, want in zip(_paths(m, ids), plain):
            torch.testing.assert_close(got, want, atol=1e-5 if dtype == torch.float32 else 2e-2, rtol=1e-3)


def test_fused_copies_are_dropped_when_they_could_go_stale():
    m = _model()
    assert m.fuse_projections()
    m.train()  # the optimiser would move the weights, not the copies
    assert not m.fused
    m.eval()
    assert m.fuse_projections()
    m.to(torch.bfloat16)  # the copies would keep float32
    assert not m.fused
    assert m.fuse_projections()
    m.unfuse_projections()
    assert not m.fused


def test_prepacked_bfloat16_weights_give_the_same_logits_bit_for_bit():
    from diffill.model.layers import packed

    ids = torch.randint(4, 300, (1, 12))
    m = _model().to(torch.bfloat16)
    assert m.fuse_projections()
    if packed(m.embed_tokens.weight) is None:
        pytest.skip("this torch has no oneDNN prepacking")
    assert all(b.self_attn.packs and b.mlp.packs for b in m.layers)
    with_packs = _paths(m, ids)
    for b in m.layers:
        b.self_attn.packs = b.mlp.packs = None
    m.__dict__["_embed_pack"] = None
    for got, want in zip(with_packs, _paths(m, ids)):
        assert torch.equal(got, want)
    assert m.fuse_projections()
    m.to(torch.float32)  # the packs would keep bfloat16
    assert not any(b.self_attn.packs or b.mlp.packs for b in m.layers) and m.__dict__["_embed_pack"] is None
    assert m.fuse_projections() and not any(b.self_attn.packs for b in m.layers)  # float32: F.linear as it is
