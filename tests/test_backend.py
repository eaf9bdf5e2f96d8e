"""Backends: the exact and cached paths of the diffill network, transformers masked LMs (and
remote code only when asked), DiffusionGemma, and backend selection in the engine."""

from __future__ import annotations

import json

import pytest
import torch

from diffill.engine import Engine, EngineConfig, InfillRequest
from diffill.errors import DiffillError
from diffill.model.backend import DiffillBackend, layout_rows
from diffill.model.foreign import load_backend
from conftest import SHIPPED
from diffill.model.loading import ModelLoadError, load_checkpoint
from diffill.model.decoders import Decoder
from diffill.model.decoding import Request, SamplerConfig
from diffill.model.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def diffill(tiny_checkpoint):
    model, tok = load_checkpoint(tiny_checkpoint)
    # a random init at std 0.02 is nearly uniform everywhere; sharpen it so paths can differ
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(20.0)
    return DiffillBackend(model, tok), tok


def _rows(tok):
    pairs = [("def f(x):\n    return ", "\n\nprint(f(2))\n"), ("import os\nimport sys\n\n", "")]
    return [tok.encode(p) for p, _ in pairs], [tok.encode(s) for _, s in pairs]


def _logprobs(x):
    return torch.log_softmax(x, -1)


def test_cached_path_equals_exact_while_the_canvas_is_unchanged(diffill):
    be, tok = diffill
    pre, suf = _rows(tok)  # two rows of different lengths: padding and context masks matter
    canvas = torch.full((2, 6), tok.mask_id)
    exact = be.logits(be.prepare(pre, suf, 6), canvas)
    state = be.prepare(pre, suf, 6, cache=True)
    first = be.logits(state, canvas)  # the full pass that fills the cache
    second = be.logits(state, canvas)  # canvas only, against the cache
    assert state.context is not None
    assert torch.allclose(first, exact, atol=1e-4)
    assert torch.allclose(second, exact, atol=1e-3)


def test_cached_path_is_close_to_exact_after_commits_and_refresh_makes_it_exact(diffill):
    be, tok = diffill
    pre, suf = _rows(tok)
    canvas = torch.full((2, 6), tok.mask_id)
    state = be.prepare(pre, suf, 6, cache=True)
    be.logits(state, canvas)
    canvas[:, :3] = torch.tensor([20, 30, 40])
    exact = _logprobs(be.logits(be.prepare(pre, suf, 6), canvas))
    cached = _logprobs(be.logits(state, canvas))
    gap = (exact - cached).abs().max().item()
    assert 0 < gap  # the approximation: context states were computed with the old canvas
    agree = (exact.argmax(-1) == cached.argmax(-1)).float().mean().item()
    assert agree >= 0.5
    fresh = be.prepare(pre, suf, 6, cache=True, refresh=1)
    be.logits(fresh, torch.full((2, 6), tok.mask_id))
    assert torch.allclose(_logprobs(be.logits(fresh, canvas)), exact, atol=1e-4)


@pytest.mark.parametrize("cache", [False, True])
def test_logits_at_slots_are_the_full_logits_there(diffill, cache):
    be, tok = diffill
    pre, suf = _rows(tok)
    canvas = torch.full((2, 5), tok.mask_id)
    canvas[0, 1] = 20
    full = be.logits(be.prepare(pre, suf, 5, cache=cache), canvas)
    slots = torch.tensor([[0, 2, 4], [1, 1, 3]])
    picked = be.logits(be.prepare(pre, suf, 5, cache=cache), canvas, slots)
    assert torch.allclose(picked, full.gather(1, slots[..., None].expand(-1, -1, full.shape[-1])), atol=1e-4)


def test_canvas_passes_at_slots_are_the_full_logits_there_and_do_not_depend_on_earlier_passes(diffill):
    be, tok = diffill
    pre, suf = _rows(tok)
    state = be.prepare(pre, suf, 5, cache=True)
    be.logits(state, torch.full((2, 5), tok.mask_id))  # fills the cache
    first, second = torch.full((2, 5), tok.mask_id), torch.full((2, 5), tok.mask_id)
    first[:, :2], second[:, 0] = torch.tensor([20, 30]), 40
    be.logits(state, first)  # writes its own keys and values beside the context
    full = be.logits(state, second)
    slots = torch.tensor([[0, 3], [4, 4]])
    picked = be.logits(state, second, slots)
    assert torch.allclose(picked, full.gather(1, slots[..., None].expand(-1, -1, full.shape[-1])), atol=1e-4)
    fresh = be.prepare(pre, suf, 5, cache=True)
    be.logits(fresh, torch.full((2, 5), tok.mask_id))
    assert torch.equal(be.logits(fresh, second), full)


def test_candidates_taken_from_one_state_do_not_see_each_others_canvas(diffill):
    be, tok = diffill
    pre, suf = _rows(tok)
    state = be.prepare(pre[:1], suf[:1], 4, cache=True)
    be.logits(state, torch.full((1, 4), tok.mask_id))
    canvases = torch.full((3, 4), tok.mask_id)
    canvases[0, 0], canvases[1, :2], canvases[2, 3] = 20, torch.tensor([30, 40]), 50
    together = be.logits(state.take(torch.tensor([0, 0, 0])), canvases)
    for row in range(3):
        alone = be.logits(state.take(torch.tensor([0])), canvases[row : row + 1])
        assert torch.allclose(together[row], alone[0], atol=1e-5)


def test_shifted_layout_reads_the_logits_one_position_earlier():
    lay = layout_rows([[5, 6, 7], [5]], [[8], []], 2, mask_id=1, pad_id=0, shifted=True)
    assert lay.canvas_index.tolist() == [[2, 3], [0, 1]]
    assert lay.input_ids.tolist() == [[5, 6, 7, 1, 1, 8], [5, 1, 1, 0, 0, 0]]
    with pytest.raises(ValueError, match="prefix"):
        layout_rows([[]], [[]], 2, mask_id=1, pad_id=0, shifted=True)


def test_rows_can_be_rounded_up_to_a_width_multiple():
    lay = layout_rows([[5, 6, 7], [5]], [[8], []], 2, mask_id=1, pad_id=0, multiple=4)
    assert lay.input_ids.tolist() == [[5, 6, 7, 1, 1, 8, 0, 0], [5, 1, 1, 0, 0, 0, 0, 0]]
    assert lay.attention_mask.tolist() == [[1] * 6 + [0] * 2, [1] * 3 + [0] * 5]


@pytest.mark.parametrize("cache", [False, True])
def test_bfloat16_rows_come_in_few_widths_with_the_same_logits(tiny_checkpoint, cache):
    model, tok = load_checkpoint(tiny_checkpoint, dtype=torch.bfloat16)
    with torch.no_grad():  # sharpened, as in the ``diffill`` fixture, so that padding would show
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(20.0)
    be = DiffillBackend(model, tok)
    assert be.width_multiple == DiffillBackend.BF16_WIDTH_MULTIPLE
    assert DiffillBackend(load_checkpoint(tiny_checkpoint)[0], tok).width_multiple == 1  # float32
    pre, suf = _rows(tok)
    canvas = torch.full((2, 6), tok.mask_id)
    canvas[:, 0] = 20

    def passes():  # the full pass, then (cached) the canvas alone
        state = be.prepare(pre, suf, 6, cache=cache)
        return state, [_logprobs(be.logits(state, canvas)) for _ in range(2)]

    state, rounded = passes()
    assert state.input_ids.shape[1] % DiffillBackend.BF16_WIDTH_MULTIPLE == 0
    be.width_multiple = 1
    state, plain = passes()
    assert state.input_ids.shape[1] % DiffillBackend.BF16_WIDTH_MULTIPLE != 0
    for a, b in zip(rounded, plain):  # bf16 rounding only (attending to the padding moves them by ~3)
        assert torch.equal(a.argmax(-1), b.argmax(-1))
        assert float((a - b).abs().max()) < 0.5


# -- transformers masked LMs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_folder(tiny_corpus, tmp_path_factory):
    from transformers import BertConfig, BertForMaskedLM

    hf = load_tokenizer(tiny_corpus / "tokenizer")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(hf), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, pad_token_id=hf.pad_token_id)
    out = tmp_path_factory.mktemp("bert")
    BertForMaskedLM(cfg).save_pretrained(str(out))
    hf.save_pretrained(str(out))
    return out


def test_masked_lm_backend_gives_the_models_logits_at_the_canvas(bert_folder):
    be, tok = load_backend("masked_lm", bert_folder)
    assert not be.shifted and tok.mask_id == tok.hf.mask_token_id
    pre, suf = [tok.encode("x = 1\n")], [tok.encode("\ny = 2\n")]
    state = be.prepare(pre, suf, 4)
    canvas = torch.full((1, 4), tok.mask_id)
    got = be.logits(state, canvas)
    ids = torch.tensor([pre[0] + [tok.mask_id] * 4 + suf[0]])
    want = be.model(input_ids=ids).logits[:, len(pre[0]) : len(pre[0]) + 4]
    assert torch.allclose(got, want, atol=1e-5)
    (r,) = Decoder(be, SamplerConfig()).sample([Request(pre[0], suf[0])], 4)
    assert r.complete and r.forward_passes >= 1


def test_engine_serves_a_masked_lm_backend_and_rejects_unknown_ones(bert_folder):
    engine = Engine(EngineConfig(model=str(bert_folder), backend="masked_lm", constrained=False))
    r = engine.infill(InfillRequest("x = 1\n\ny = 2\n", 6, 6, max_tokens=4))
    assert r.forward_passes >= 1
    with pytest.raises(DiffillError, match="unknown backend"):
        Engine(EngineConfig(model=str(bert_folder), backend="gpt"))
    with pytest.raises(DiffillError, match="needs --model"):
        Engine(EngineConfig(backend="masked_lm"))
    with pytest.raises(DiffillError, match="unknown backend 'nope'"):
        Engine(EngineConfig(backend="nope"))  # not "needs --model"


TOY_CONFIG = '''
from transformers import PretrainedConfig

class ToyConfig(PretrainedConfig):
    model_type = "toy_dream"

    def __init__(self, vocab_size=64, **kwargs):
        self.vocab_size = vocab_size
        super().__init__(**kwargs)
'''

TOY_MODEL = '''
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput
from .configuration_toy import ToyConfig

class ToyModel(PreTrainedModel):
    """Position p predicts token id p (mod vocab): shows which positions a backend reads."""
    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        self.bias = torch.nn.Parameter(torch.zeros(config.vocab_size))
        self.post_init()

    def forward(self, input_ids, attention_mask=None, **kwargs):
        pos = torch.arange(input_ids.shape[1]) % self.config.vocab_size
        logits = torch.nn.functional.one_hot(pos, self.config.vocab_size).float() * 10 + self.bias
        return MaskedLMOutput(logits=logits[None].expand(input_ids.shape[0], -1, -1))
'''


@pytest.fixture(scope="module")
def remote_code_folder(tiny_corpus, tmp_path_factory):
    """A Dream-like checkpoint that ships its own code (shifted logits), in a local folder."""
    hf = load_tokenizer(tiny_corpus / "tokenizer")
    out = tmp_path_factory.mktemp("toy_dream")
    (out / "configuration_toy.py").write_text(TOY_CONFIG)
    (out / "modeling_toy.py").write_text(TOY_MODEL)
    config = {"model_type": "toy_dream", "vocab_size": len(hf), "logits_shifted": True,
              "architectures": ["ToyModel"],
              "auto_map": {"AutoConfig": "configuration_toy.ToyConfig", "AutoModel": "modeling_toy.ToyModel"}}
    (out / "config.json").write_text(json.dumps(config))
    from safetensors.torch import save_file

    save_file({"bias": torch.zeros(len(hf))}, str(out / "model.safetensors"))
    hf.save_pretrained(str(out))
    return out


def test_remote_code_runs_only_when_asked(remote_code_folder):
    with pytest.raises(ModelLoadError, match="trust-remote-code"):
        load_backend("masked_lm", remote_code_folder)
    with pytest.raises(DiffillError, match="trust-remote-code"):
        Engine(EngineConfig(model=str(remote_code_folder), backend="masked_lm"))
    be, tok = load_backend("masked_lm", remote_code_folder, trust_remote_code=True)
    assert be.shifted
    state = be.prepare([[10, 11, 12]], [[13]], 2)
    got = be.logits(state, torch.full((1, 2), tok.mask_id)).argmax(-1)
    assert got.tolist() == [[2, 3]]  # canvas slots sit at positions 3, 4; shifted: read at 2, 3


def test_backends_load_local_folders_only(tmp_path):
    with pytest.raises(ModelLoadError, match="local folders"):
        load_backend("masked_lm", tmp_path / "org" / "some-model")


def test_damaged_or_foreign_folders_are_clear_errors(tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(SHIPPED, bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="corrupt config.json"):
        load_backend("masked_lm", bad)
    with pytest.raises(ModelLoadError, match="cannot load diffusion_gemma model"):
        load_backend("diffusion_gemma", SHIPPED)  # a diffill checkpoint is not a DiffusionGemma one


# -- DiffusionGemma ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma_folder(tiny_corpus, tmp_path_factory):
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

    hf = load_tokenizer(tiny_corpus / "tokenizer")
    torch.manual_seed(0)
    cfg = DiffusionGemmaConfig(
        text_config=dict(vocab_size=len(hf), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=32,
                         max_position_embeddings=512, pad_token_id=hf.pad_token_id, eos_token_id=hf.eos_token_id,
                         bos_token_id=hf.bos_token_id, num_experts=2, top_k_experts=1, moe_intermediate_size=32),
        vision_config=dict(model_type="gemma4_vision", hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=2, head_dim=8, position_embedding_size=64),
        canvas_length=16)
    out = tmp_path_factory.mktemp("dgemma")
    DiffusionGemmaForBlockDiffusion(cfg).save_pretrained(str(out))
    hf.save_pretrained(str(out))
    return out


def test_diffusion_gemma_backend_denoises_a_canvas(gemma_folder):
    be, tok = load_backend("diffusion_gemma", gemma_folder)
    pre = [tok.encode("def f(x):\n    return "), tok.encode("import os\n")]
    suf = [[], []]
    canvas = torch.full((2, 6), tok.mask_id)
    canvas[0, 0] = 30
    plain = be.logits(be.prepare(pre, suf, 6), canvas)
    assert plain.shape == (2, 6, be.vocab_size)
    cached_state = be.prepare(pre, suf, 6, cache=True)
    be.logits(cached_state, canvas)
    cached = be.logits(cached_state, canvas)  # the prompt's cache is reused: the same logits
    assert torch.allclose(plain, cached, atol=1e-4)
    a = Decoder(be, SamplerConfig(max_per_step=2)).sample([Request(p, []) for p in pre], 6)
    b = Decoder(be, SamplerConfig(max_per_step=2)).sample([Request(p, []) for p in pre], 6)
    assert [r.tokens for r in a] == [r.tokens for r in b]  # seeded noise: runs repeat
    assert all(r.forward_passes >= 3 for r in a)
    # its state copies per candidate too, so one-line holes can be beam-searched
    taken = cached_state.take(torch.tensor([1, 0, 0]))
    assert torch.allclose(be.logits(taken, canvas[[1, 0, 0]]), cached[[1, 0, 0]], atol=1e-4)
    beamed = Decoder(be, SamplerConfig(beam=3, cache=True)).sample([Request(p, []) for p in pre], 6)
    assert all(r.complete and r.forward_passes >= 1 for r in beamed)
