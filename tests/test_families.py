"""Open diffusion code model families (model/families): shape-only checkpoints written by
``diffill init-model``, the project's own networks loading published parameter names through the
Auto classes, each family's infill layout, and every engine feature (beam, copying, the syntax
constraint, refactoring) through them on tiny checkpoints.

The parity tests compare an own network with its family's published modeling code. That code
cannot be shipped here; each runs when an environment variable names a folder holding it:
``DIFFILL_PUBLISHED_DREAM`` (configuration_dream.py, modeling_dream.py and the files they import),
``DIFFILL_PUBLISHED_LLADA`` (configuration_llada.py, modeling_llada.py), and
``DIFFILL_PUBLISHED_OPEN_DCODER`` (Open-dLLM's ``veomni`` folder).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
import types
from pathlib import Path

import pytest
import torch

from diffill.cli import main
from diffill.engine import Engine, EngineConfig, InfillRequest
from diffill.errors import DiffillError
from diffill.lsp_server.settings import Settings, merge
from diffill.model.families import FAMILIES, detect_family
from diffill.model.families.init import init_model
from diffill.model.families.serving import DeviceError, load_family, resolve_device
from diffill.model.families.specs import SPECS
from diffill.model.loading import quiet_loading
from diffill.syntax import guard_for

LIKES = list(SPECS)
OWN = ["dream-coder-7b", "open-dcoder-0.5b", "llada-8b"]  # the families with the project's own network
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

DOC = ("def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return \n\n\n"
       "class Box:\n    def __init__(self, size):\n        self.size = size\n\n    def area(self):\n        \n")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    with quiet_loading():
        return {like: init_model(root / like, like, tiny=True) for like in LIKES}


@pytest.fixture(scope="module")
def engines(shapes) -> dict[str, Engine]:
    return {like: Engine(EngineConfig(model=str(folder))) for like, folder in shapes.items()}


# -- shape-only checkpoints ----------------------------------------------------------------------


@pytest.mark.parametrize("like", LIKES)
def test_init_model_writes_the_published_vocabulary_and_special_ids(shapes, like):
    spec, folder = SPECS[like], shapes[like]
    config = json.loads((folder / "config.json").read_text())
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    _, tok = load_family(spec.family, folder, "cpu") if spec.family != "diffusion_gemma" else (None, None)
    for text, i in spec.tokens.all():
        assert hf.convert_tokens_to_ids(text) == i
        if tok is not None:
            assert i not in tok.encode(f"x = 1{text}")  # in a file, it is text
    assert hf.mask_token_id == spec.tokens.mask[1] and hf.eos_token_id == spec.tokens.eos[1]
    vocab = config.get("text_config", config).get("embedding_size") or config.get("text_config", config)["vocab_size"]
    published = spec.config.get("embedding_size") or spec.config.get("vocab_size") or 262144
    assert vocab == published
    assert detect_family(folder) == spec.family
    # the stand-in BPE round-trips code
    text = "def f(x):\n    return {'a': x}  # é\n"
    assert hf.decode(hf.encode(text, add_special_tokens=False)) == text


def test_init_model_command_refuses_a_used_folder_and_unknown_names(tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    assert main(["init-model", str(used), "--like", "llada-8b", "--tiny"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (used / "keep.txt").read_text() == "mine" and len(list(used.iterdir())) == 1
    assert main(["init-model", str(tmp_path / "x"), "--like", "gpt-2"]) == 2
    assert not (tmp_path / "x").exists()


def test_full_size_shapes_have_the_published_parameter_counts():
    from diffill.model.families.init import build_model

    # built on the meta device: only the shapes, no memory
    with torch.device("meta"):
        counts = {like: sum(p.numel() for p in build_model(SPECS[like], tiny=False).parameters()) for like in OWN}
    assert 7.0e9 < counts["dream-coder-7b"] < 8.0e9  # Qwen2.5-Coder-7B: 7.6B
    assert 0.45e9 < counts["open-dcoder-0.5b"] < 0.55e9  # Qwen2.5-Coder-0.5B: 0.49B (tied)
    assert 7.5e9 < counts["llada-8b"] < 8.5e9  # LLaDA-8B: 8.0B


# -- own networks under published names -----------------------------------------------------------


PUBLISHED_NAMES = {
    "dream-coder-7b": ["model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.bias",
                       "model.layers.1.mlp.gate_proj.weight", "model.layers.1.post_attention_layernorm.weight",
                       "model.norm.weight", "lm_head.weight"],
    "open-dcoder-0.5b": ["model.embed_tokens.weight", "model.layers.1.self_attn.k_proj.bias",
                         "model.layers.1.mlp.down_proj.weight", "model.norm.weight"],
    "llada-8b": ["model.transformer.wte.weight", "model.transformer.blocks.1.attn_out.weight",
                 "model.transformer.blocks.1.ff_proj.weight", "model.transformer.blocks.1.up_proj.weight",
                 "model.transformer.blocks.1.attn_norm.weight", "model.transformer.ln_f.weight",
                 "model.transformer.ff_out.weight"],
}


@pytest.mark.parametrize("like", OWN)
def test_own_networks_hold_the_published_parameter_names(shapes, like):
    from safetensors import safe_open

    with safe_open(str(shapes[like] / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert set(PUBLISHED_NAMES[like]) <= names


def test_published_folders_load_through_the_auto_classes_without_their_code(shapes, tmp_path):
    """A published Dream or LLaDA config.json names its own code (auto_map); the Auto classes build
    the project's network for it, and the engine serves it, with no code from the folder."""
    from transformers import AutoModel

    from diffill.model.families import _registered
    from diffill.model.families.llada import LLaDAModelLM
    from diffill.model.families.qwen2 import DreamModel

    _registered()
    for like, cls, code in (("dream-coder-7b", DreamModel, "modeling_dream"), ("llada-8b", LLaDAModelLM, "modeling_llada")):
        folder = tmp_path / like
        shutil.copytree(shapes[like], folder)
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoModel": f"{code}.Published"}
        (folder / "config.json").write_text(json.dumps(config))
        (folder / f"{code}.py").write_text("raise SystemExit('the folder code ran')\n")
        with quiet_loading():
            model = AutoModel.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
        assert type(model) is cls
        engine = Engine(EngineConfig(model=str(folder), constrained=False, copy=False))
        assert engine.config.backend == SPECS[like].family


# -- infill layouts --------------------------------------------------------------------------------


@pytest.mark.parametrize("like", OWN)
def test_each_family_lays_out_a_hole_as_it_was_trained(engines, like):
    be, tok = engines[like].backend, engines[like].tok
    t = SPECS[like].tokens
    pre, suf = tok.encode("x = "), tok.encode("\ny = 2\n")
    lay = be.prepare([pre], [suf], 3)
    lead = [] if like == "open-dcoder-0.5b" else [t.bos[1]]
    tail = [t.eos[1]] if like == "dream-coder-7b" else []
    assert lay.input_ids[0].tolist() == lead + pre + [t.mask[1]] * 3 + suf + tail
    shift = 1 if FAMILIES[SPECS[like].family].shifted else 0
    first = len(lead) + len(pre)
    assert lay.canvas_index[0].tolist() == [first - shift + k for k in range(3)]


@pytest.mark.parametrize("like", OWN)
def test_backend_logits_are_the_networks_at_the_canvas_and_never_unknown_ids(engines, like):
    be, tok = engines[like].backend, engines[like].tok
    pre, suf = [tok.encode("def f(x):\n    return ")], [tok.encode("\n")]
    lay = be.prepare(pre, suf, 4)
    canvas = torch.full((1, 4), tok.mask_id)
    got = be.logits(lay, canvas)
    full = be.model(input_ids=lay.input_ids).logits
    want = full[0, lay.canvas_index[0]]
    allowed = tok.allowed()
    assert torch.allclose(got[0][:, allowed], want[:, allowed].float(), atol=1e-5)
    assert bool((got[0][:, ~allowed] < -1e8).all())
    assert not allowed[tok.mask_id] and allowed[tok.eoi_id]
    assert int(allowed.sum()) < 9000  # the stand-in vocabulary, not the padded published one


@pytest.mark.parametrize("like", OWN)
def test_context_cache_is_exact_until_the_canvas_changes_and_refresh_makes_it_exact(shapes, like):
    be, tok = load_family(SPECS[like].family, shapes[like], "cpu")
    with torch.no_grad():  # sharpened, so that the cache's approximation shows
        for p in be.model.parameters():
            if p.dim() > 1:
                p.mul_(5.0)
    pre = [tok.encode("def f(x):\n    return "), tok.encode("import os\n")]  # rows of different lengths
    suf = [tok.encode("\n\nprint(f(2))\n"), []]
    ok = tok.allowed()
    canvas = torch.full((2, 6), tok.mask_id)
    exact = be.logits(be.prepare(pre, suf, 6), canvas)[..., ok]
    state = be.prepare(pre, suf, 6, cache=True)
    assert torch.allclose(be.logits(state, canvas)[..., ok], exact, atol=1e-5)  # the pass that fills the cache
    assert state.context is not None
    assert torch.allclose(be.logits(state, canvas)[..., ok], exact, atol=1e-4)  # the active block alone
    canvas[:, :2] = torch.tensor([600, 700])
    exact = be.logits(be.prepare(pre, suf, 6), canvas)[..., ok]
    cached = be.logits(state, canvas)[..., ok]
    assert float((cached - exact).abs().max()) > 1e-3  # the context was computed with the old canvas
    rows = torch.tensor([1, 0, 0])  # a beam's candidates share their row's context
    assert torch.allclose(be.logits(state.take(rows), canvas[rows])[..., ok], cached[rows], atol=1e-4)
    fresh = be.prepare(pre, suf, 6, cache=True, refresh=1)
    be.logits(fresh, torch.full((2, 6), tok.mask_id))
    assert torch.allclose(be.logits(fresh, canvas)[..., ok], exact, atol=1e-4)


# -- the engine's features through every family ----------------------------------------------------


def _holes():
    one_line = DOC.index("return \n") + len("return ")
    block = DOC.rindex("        \n") + 8
    mid_word = DOC.index("self.size = size") + len("self.si")
    return [one_line, block, mid_word]


@pytest.mark.parametrize("like", LIKES)
def test_every_family_fills_holes_that_are_valid_with_copying_and_beam(engines, like):
    engine = engines[like]
    reqs = [InfillRequest(DOC, at, at, language="python") for at in _holes()]
    results = engine.infill_many(reqs)
    for req, r in zip(reqs, results):
        guard = guard_for(DOC, req.start, req.end, engine.tok, "python")
        assert guard.checker.is_valid(r.text), (like, r.text)
        assert all(guard.checker.is_valid(a) for a in r.alternatives)
        assert r.forward_passes >= 1 or r.text
    # the one-line hole's own document holds its answer: copying finds it with this tokenizer
    assert results[0].text == "a + b"
    alone = Engine(EngineConfig(model=engine.config.model, copy=False)).infill(reqs[0])
    assert alone.text != "a + b"


def test_families_serve_through_refactor_holes(shapes, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.py").write_text("def add(a, b):\n    return a + b\n\n\ndef twice(a):\n    ...\n")
    for like in ("dream-coder-7b", "llada-8b"):
        code = main(["refactor", str(src), "--holes", "--json", "--model", str(shapes[like]), "--device", "cpu"])
        summary = json.loads(capsys.readouterr().out)
        assert code in (0, 1) and summary["regions"] == 1, summary
    assert (src / "m.py").read_text().endswith("    ...\n")  # a dry run writes nothing


def test_infill_command_on_a_shape_only_checkpoint(shapes, tmp_path, capsys):
    f = tmp_path / "h.py"
    f.write_text(DOC)
    assert main(["infill", str(f), "--at", "6:12", "--model", str(shapes["open-dcoder-0.5b"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["text"] == "a + b" and out["start"] == DOC.index("return \n") + len("return ")


async def test_an_inline_completion_from_a_family_checkpoint_end_to_end(shapes, tmp_path):
    """``diffill serve`` on a Dream-shaped checkpoint, driven by a real LSP client."""
    from lsprotocol import types
    from pytest_lsp import ClientServerConfig, client_capabilities
    from pytest_lsp.client import make_test_lsp_client

    folder = shapes["dream-coder-7b"]
    cmd = [sys.executable, "-m", "diffill.cli", "serve", "--model", str(folder), "--threads", "1",
           "--device", "cpu"]
    client = await ClientServerConfig(server_command=cmd, client_factory=make_test_lsp_client).start()
    try:
        await client.initialize_session(types.InitializeParams(
            capabilities=client_capabilities("visual-studio-code"), initialization_options={"minConfidence": 0},
            workspace_folders=[types.WorkspaceFolder(uri=tmp_path.as_uri(), name="ws")]))
        uri = (tmp_path / "m.py").as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=DOC)))
        result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=5, character=11),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked)))
        assert result.items[0].insert_text == "a + b"
        status = await client.workspace_execute_command_async(types.ExecuteCommandParams(command="diffill.status"))
        assert status["loaded"] and status["model"] == str(folder) and status["settings"]["device"] == "cpu"
    finally:
        await client.shutdown_session()
        await client.stop()


def test_a_backend_named_for_another_familys_folder_is_refused(shapes):
    with pytest.raises(DiffillError, match="does not hold a dream model"):
        Engine(EngineConfig(model=str(shapes["llada-8b"]), backend="dream"))
    with pytest.raises(DiffillError, match="does not hold a llada model"):
        Engine(EngineConfig(model=str(shapes["dream-coder-7b"]), backend="llada"))


def test_a_library_index_of_another_tokenizer_is_refused(shapes, tmp_path):
    with pytest.raises(DiffillError, match="library index"):
        Engine(EngineConfig(model=str(shapes["llada-8b"]), library=str(tmp_path / "no-index")))


# -- devices ------------------------------------------------------------------------------------


def test_devices_are_checked():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="device must be one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error(shapes, tmp_path, capsys):
    f = tmp_path / "h.py"
    f.write_text(DOC)
    assert main(["infill", str(f), "--at", "6:12", "--model", str(shapes["llada-8b"]), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert main(["infill", str(f), "--at", "6:12", "--device", "cuda"]) == 2  # the shipped model too


def test_the_language_server_takes_a_device_setting():
    s, problems = merge(Settings(), {"diffill": {"device": "cuda"}})
    assert s.device == "cuda" and not problems
    s, problems = merge(s, {"device": "gpu"})
    assert s.device == "cuda" and "device" in problems[0]


@CUDA
@pytest.mark.parametrize("like", OWN)
def test_families_run_on_the_gpu_in_bfloat16(shapes, like):
    engine = Engine(EngineConfig(model=str(shapes[like]), device="cuda"))
    p = next(engine.model.parameters())
    assert p.is_cuda and p.dtype == torch.bfloat16
    at = _holes()[0]
    r = engine.infill(InfillRequest(DOC, at, at, language="python"))
    assert r.text == "a + b"
    be, tok = load_family(SPECS[like].family, shapes[like], "cpu")
    lay = be.prepare([tok.encode("def f(x):\n    return ")], [[]], 4)
    cpu = torch.log_softmax(be.logits(lay, torch.full((1, 4), tok.mask_id)), -1)
    lay = engine.backend.prepare([tok.encode("def f(x):\n    return ")], [[]], 4)
    gpu = torch.log_softmax(engine.backend.logits(lay, torch.full((1, 4), tok.mask_id)), -1)
    assert float((cpu - gpu)[:, :, tok.allowed()].abs().max()) < 0.1


@CUDA
def test_the_shipped_model_runs_on_the_gpu():
    engine = Engine(EngineConfig(device="cuda"))
    assert next(engine.model.parameters()).is_cuda
    r = engine.infill(InfillRequest("import os\n\nprint(os.getcwd())\nprint(os.", 41, 41, language="python"))
    assert r.forward_passes >= 1


# -- parity with the published modeling code --------------------------------------------------------


def _package(name: str, folder: Path) -> None:
    """``folder`` importable as package ``name`` without running its ``__init__`` (which may import
    a whole training stack)."""
    pkg = types.ModuleType(name)
    pkg.__path__ = [str(folder)]
    sys.modules[name] = pkg


def _published(env: str, like: str):
    """(published model class, its config class) for ``like``, from the folder ``env`` names."""
    folder = os.environ.get(env)
    if not folder:
        pytest.skip(f"{env} names no folder of the published modeling code")
    root = Path(folder)
    if like == "dream-coder-7b":
        _package("published_dream", root)
        return (importlib.import_module("published_dream.modeling_dream").DreamModel,
                importlib.import_module("published_dream.configuration_dream").DreamConfig)
    if like == "llada-8b":
        _package("published_llada", root)
        return (importlib.import_module("published_llada.modeling_llada").LLaDAModelLM,
                importlib.import_module("published_llada.configuration_llada").LLaDAConfig)
    for sub in ("", "models", "models/transformers", "models/transformers/qwen2", "data", "distributed", "utils"):
        _package(".".join(["veomni", *filter(None, sub.split("/"))]), root / sub)
    module = importlib.import_module("veomni.models.transformers.qwen2.modeling_qwen2")
    from transformers import Qwen2Config

    return module.Qwen2ForCausalLM, Qwen2Config


def _published_layout(like: str, tok, prefix: str, suffix: str, n: int) -> list[int]:
    """A hole's input ids as the family's published scripts build them."""
    t = SPECS[like].tokens
    if like == "dream-coder-7b":  # DreamOn's infilling prompt: <bos> prefix masks suffix <eos>
        return [t.bos[1], *tok.hf.encode(prefix, add_special_tokens=False), *[t.mask[1]] * n,
                *tok.hf.encode(suffix, add_special_tokens=False), t.eos[1]]
    if like == "llada-8b":  # LLaDA's prompts start with <|startoftext|>
        return [t.bos[1], *tok.hf.encode(prefix, add_special_tokens=False), *[t.mask[1]] * n,
                *tok.hf.encode(suffix, add_special_tokens=False)]
    # Open-dCoder's infill evaluation: encode(prefix) + masks + encode(suffix), no special tokens
    return [*tok.hf.encode(prefix, add_special_tokens=False), *[t.mask[1]] * n,
            *tok.hf.encode(suffix, add_special_tokens=False)]


@pytest.mark.parametrize("like,env", [("dream-coder-7b", "DIFFILL_PUBLISHED_DREAM"),
                                      ("llada-8b", "DIFFILL_PUBLISHED_LLADA"),
                                      ("open-dcoder-0.5b", "DIFFILL_PUBLISHED_OPEN_DCODER")])
def test_own_network_matches_the_published_code(tmp_path, like, env):
    published_cls, published_config = _published(env, like)
    with quiet_loading():
        folder = init_model(tmp_path / like, like, tiny=True)
    be, tok = load_family(SPECS[like].family, folder, "cpu")
    ours = be.model
    with torch.no_grad():  # std 0.02 weights give near-uniform logits; wider ones make differences show
        for name, p in ours.named_parameters():
            if p.dim() > 1:
                p.mul_(5.0)
    config = json.loads((folder / "config.json").read_text())
    config = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "diffill_shape_only")}
    published = published_config(**config)
    if like == "llada-8b":  # built on the CPU (some copies of its code build on "cuda" by default)
        module = sys.modules[published_cls.__module__]
        inner = module.create_model_config_from_pretrained_config(published)
        inner.init_device = "cpu"
        theirs = published_cls(published, model=module.LLaDAModel(inner)).eval()
    else:
        theirs = published_cls(published).eval()
    state = ours.state_dict()
    missing, unexpected = theirs.load_state_dict(state, strict=False)
    missing = [k for k in missing if "rotary" not in k and not (k == "lm_head.weight" and config.get("tie_word_embeddings"))]
    assert not missing and not unexpected, (missing, unexpected)
    if config.get("tie_word_embeddings"):
        theirs.tie_weights()

    prefix, suffix, n = "def area(self):\n    return ", "\n\nprint(Box(2).area())\n", 5
    ids = _published_layout(like, tok, prefix, suffix, n)
    lay = be.prepare([tok.encode(prefix)], [tok.encode(suffix)], n)
    assert lay.input_ids[0].tolist() == ids  # equal input ids for the same hole

    x = torch.tensor([ids])
    extra = {"is_causal": False} if like == "open-dcoder-0.5b" else {}
    worst = {}
    for dtype in (torch.float32, torch.bfloat16):
        ours.to(dtype)
        theirs.to(dtype)
        with torch.no_grad():
            a = ours(input_ids=x).logits.float()
            b = theirs(input_ids=x, **extra).logits.float()
        scale = float(b.abs().max())
        worst[str(dtype)] = (float((a - b).abs().max()), scale)
        tolerance = 1e-4 * scale if dtype == torch.float32 else 0.05 * scale
        assert float((a - b).abs().max()) <= tolerance, worst
        assert (a.argmax(-1) == b.argmax(-1)).float().mean() >= (1.0 if dtype == torch.float32 else 0.9)
    print(f"\n{like}: input ids identical ({len(ids)}); largest logit difference {worst}")
