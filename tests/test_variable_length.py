"""DreamOn's variable-length canvas (model.variable_length) on a tiny random-init DreamOn checkpoint:
its detection, fills through the engine and the CLI, and the canvas growing where ``<|expand|>`` is
predicted (up to its maximum) and shrinking where the delete state ``<|endoftext|>`` is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffill.cli import main
from diffill.engine import Engine, EngineConfig, InfillOptions, InfillRequest
from diffill.errors import DiffillError
from diffill.model.decoders import Decoder
from diffill.model.decoding import Request, SamplerConfig
from diffill.model.families import detect_family
from diffill.model.families.init import init_model
from diffill.model.families.serving import load_family
from diffill.model.families.specs import SPECS
from diffill.model.loading import quiet_loading
from diffill.model.variable_length import INITIAL, VariableLength, VariableLengthSampler, _resized
from diffill.syntax import guard_for

DOC = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \n\n\nprint(mul(2, 3))\n"
BLOCK = DOC.index("    \n\n\nprint") + 4  # the body of mul, a multi-line hole
FORCE = 50.0
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    with quiet_loading():
        return {like: init_model(root / like, like, tiny=True) for like in ("dreamon-v0-7b", "dream-coder-7b")}


@pytest.fixture()
def engine(folders) -> Engine:
    return Engine(EngineConfig(model=str(folders["dreamon-v0-7b"])))


def _bias(backend, token_at):
    """``backend.logits`` with ``FORCE`` added to the token ``token_at(slot, length)`` names at each slot."""
    logits = backend.__dict__.setdefault("_unbiased", backend.logits)

    def biased(state, canvas, slots=None):
        out = logits(state, canvas, slots)
        at = slots if slots is not None else torch.arange(canvas.shape[1])[None].expand(canvas.shape[0], -1)
        for i, row in enumerate(at.tolist()):
            for k, slot in enumerate(row):
                token = token_at(slot, canvas.shape[1])
                if token is not None:
                    out[i, k, token] += FORCE
        return out

    backend.logits = biased


def _rows(engine, text=DOC, at=BLOCK):
    tok = engine.tok
    return [Request(tok.encode(text[:at]), tok.encode(text[at:]))]


# -- detection -------------------------------------------------------------------------------------


def test_dreamon_is_detected_by_its_expand_token_and_serves_with_expand_and_delete(folders):
    folder = folders["dreamon-v0-7b"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "Dream"  # the config is Dream's: the tokenizer tells DreamOn apart
    assert detect_family(folder) == "dreamon" and detect_family(folders["dream-coder-7b"]) == "dream"
    be, tok = load_family("dreamon", folder, "cpu")
    assert tok.hf.convert_tokens_to_ids("<|expand|>") == 151667 == be.expand_id
    assert be.delete_id == tok.eoi_id == 151643 and be.mask_id == 151666
    assert be.expand_id in be.banned_ids  # a fixed canvas (beam search) never proposes it
    # Dream's infill layout: <|beginoftext|> prefix canvas suffix <|endoftext|>
    assert be.rows([[7]], [[8]], 2).input_ids.tolist() == [[151665, 7, 151666, 151666, 8, 151643]]
    assert dict(SPECS["dreamon-v0-7b"].tokens.all())["<|expand|>"] == 151667


def test_detection_reads_either_tokenizer_file_and_survives_damaged_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "Dream"}))
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    (tmp_path / "tokenizer.json").write_text("[]")
    assert detect_family(tmp_path) == "dream"
    added = {"151667": {"content": "<|expand|>", "special": True}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": added}))
    assert detect_family(tmp_path) == "dreamon"


def test_backend_overrides(folders):
    # served as dream: the same network on a fixed canvas
    fixed = Engine(EngineConfig(model=str(folders["dreamon-v0-7b"]), backend="dream"))
    assert getattr(fixed.backend, "expand_id", None) is None
    with pytest.raises(DiffillError, match="no <\\|expand\\|> token"):
        Engine(EngineConfig(model=str(folders["dream-coder-7b"]), backend="dreamon"))


# -- fills -----------------------------------------------------------------------------------------


def test_a_fill_through_the_engine_and_the_cli(engine, folders, tmp_path, capsys):
    lengths = []
    r = engine.infill(InfillRequest(DOC, BLOCK, BLOCK, language="python", multiline=True),
                      on_step=lambda t: lengths.append(len(t.canvas[0])))
    assert r.forward_passes >= 1 and lengths and lengths[0] <= INITIAL
    assert guard_for(DOC, BLOCK, BLOCK, engine.tok, "python").checker.is_valid(r.text)
    f = tmp_path / "m.py"
    f.write_text(DOC)
    assert main(["infill", str(f), "--at", "6:5", "--model", str(folders["dreamon-v0-7b"]), "--json",
                 "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["start"] == BLOCK and isinstance(out["text"], str)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_forced_expand_grows_the_canvas_to_its_maximum_and_no_further(folders, device):
    engine = Engine(EngineConfig(model=str(folders["dreamon-v0-7b"]), device=device))
    be = engine.backend
    _bias(be, lambda slot, n: be.expand_id)
    prepared = []
    prepare = be.prepare
    be.prepare = lambda p, s, length, *a: prepared.append(length) or prepare(p, s, length, *a)
    lengths = []
    out = Decoder(be, SamplerConfig(beam=0)).sample(_rows(engine), 10, on_step=lambda t: lengths.append(len(t.canvas[0])))
    assert max(lengths) == 10 and lengths[-1] == 10 and lengths == sorted(lengths)
    assert prepared == [4, 8, 10]  # the context is recomputed at each new length
    assert out[0].complete and len(out[0].tokens) == 10
    assert be.expand_id not in out[0].tokens and be.delete_id not in out[0].tokens


def test_forced_delete_shrinks_the_canvas(engine):
    be = engine.backend
    x = engine.tok.encode("x")[0]
    # a delete at the canvas's last slot, "x" elsewhere: the fill keeps the slots before it
    _bias(be, lambda slot, n: be.delete_id if slot == n - 1 else x)
    out = Decoder(be, SamplerConfig(beam=0)).sample(_rows(engine), 16)[0]
    assert out.complete and out.tokens == [x] * (INITIAL - 1)
    # a delete everywhere: nothing is left
    _bias(be, lambda slot, n: be.delete_id)
    assert Decoder(be, SamplerConfig(beam=0)).sample(_rows(engine), 16)[0].tokens == []


@pytest.mark.parametrize("forced", ["expand", "delete"])
def test_engine_fills_never_hold_expand_or_delete_and_pass_the_syntax_constraint(engine, forced):
    be = engine.backend
    _bias(be, lambda slot, n: be.expand_id if forced == "expand" else (be.delete_id if slot == n - 1 else None))
    holes = [(BLOCK, True), (DOC.index("a + b"), False)]
    for beam in (None, 0):  # one-line holes are beam-searched by default, on a fixed canvas
        for at, multiline in holes:
            req = InfillRequest(DOC, at, at, language="python", multiline=multiline)
            r = engine.infill(req, options=InfillOptions(beam=beam))
            assert "<|expand|>" not in r.text and "<|endoftext|>" not in r.text
            assert guard_for(DOC, at, at, engine.tok, "python").checker.is_valid(r.text), r.text
            for alt in r.alternatives:
                assert guard_for(DOC, at, at, engine.tok, "python").checker.is_valid(alt)


def test_a_fixed_canvas_never_commits_expand(engine):
    be = engine.backend
    _bias(be, lambda slot, n: be.expand_id)
    for cfg in (SamplerConfig(beam=3),):
        out = Decoder(be, cfg).sample(_rows(engine, at=DOC.index("a + b")), 6)[0]
        assert be.expand_id not in out.tokens


def test_the_resize_rule():
    m, e, d, a, b = 0, 1, 2, 10, 11
    # a committed delete goes with every mask right of it; committed code right of it stays
    assert _resized([a, m, d, m, b], [True, False, True, False, False], m, e, d, 5, 9) == ([0, 1, 4], 0)
    # an expand is two masks while budget and length allow, then one
    assert _resized([e, e, a], [True, True, False], m, e, d, 5, 4) == ([-1, -1, -1, 2], 1)
    assert _resized([e, a], [True, False], m, e, d, 0, 9) == ([-1, 1], 0)
    # an uncommitted guess is not acted on
    assert _resized([m, m], [False, False], m, e, d, 5, 9) == ([0, 1], 0)


def test_settings_are_checked(engine):
    with pytest.raises(ValueError):
        VariableLength(initial=0)
    from diffill.model.sampler import Experiment

    with pytest.raises(ValueError, match="fixed canvas"):
        VariableLengthSampler(engine.backend, SamplerConfig(), Experiment(grow_by=4))
