"""LoRA adapters on open diffusion code families (``diffill adapt --model`` on a Dream, Open-dCoder or
LLaDA checkpoint): rows in the family's own layout, training, saving, serving, and the base check.
Shape-only tiny checkpoints (``init_model --tiny``) stand in for the published weights."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from diffill.adapt_bases import family_adapter_config, load_adapt_base
from diffill.adapters import read_info
from diffill.adapters.family import FamilySpanData, canvas_loss
from diffill.adapters.training import TrainingFile
from diffill.cli import main
from diffill.engine import Engine, EngineConfig
from diffill.errors import DiffillError
from diffill.model.families.init import init_model
from diffill.model.loading import quiet_loading

FAMILY_LIKES = {"dream": "dream-coder-7b", "open_dcoder": "open-dcoder-0.5b", "llada": "llada-8b"}


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("family-bases")
    with quiet_loading():
        return {kind: init_model(root / like, like, tiny=True) for kind, like in FAMILY_LIKES.items()}


@pytest.fixture(scope="module")
def files(tiny_sources) -> list[TrainingFile]:
    return [TrainingFile(p.read_text(), True) for p in sorted(tiny_sources.glob("*.py"))[:4]]


@pytest.fixture()
def repo(tiny_sources, tmp_path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for p in sorted(tiny_sources.glob("*.py"))[:5]:
        shutil.copy(p, root / p.name)
    return root


def quick_config(seed: int = 0):
    return replace(family_adapter_config(seed), lr=1e-2, batch_size=2, warmup_steps=1)


@pytest.mark.parametrize("kind", list(FAMILY_LIKES))
def test_training_rows_follow_the_family_s_inference_layout(bases, files, kind):
    base = load_adapt_base(str(bases[kind]), "cpu")
    backend, tok = base.backend, base.tok
    batch = FamilySpanData(files, backend, base.adapt_config(quick_config())).batch(0)
    shift = 1 if kind in ("dream", "open_dcoder") else 0
    assert backend.shifted == bool(shift)
    # each slot's token sits one position right of where its logits are read when shifted
    shown = batch.input_ids.gather(1, batch.canvas_index + shift)
    assert torch.equal(shown, torch.where(batch.masked, tok.mask_id, batch.targets))
    assert batch.masked.any() and not torch.equal(shown, batch.targets)
    lengths = batch.attention_mask.sum(1) if batch.attention_mask is not None else \
        torch.full((batch.input_ids.shape[0],), batch.input_ids.shape[1])
    for row, n in zip(batch.input_ids, lengths):
        if kind == "dream":  # <bos> prefix canvas suffix <eos>
            assert row[0] == tok.bos_id and row[int(n) - 1] == tok.eoi_id
        elif kind == "llada":  # <|startoftext|> prefix canvas suffix
            assert row[0] == tok.bos_id
    # unused slots are end-of-infill targets, after the middle's tokens
    for targets in batch.targets:
        ends = (targets == tok.eoi_id).nonzero()
        if len(ends):
            assert (targets[int(ends[0]):] == tok.eoi_id).all()


@pytest.mark.parametrize("kind", list(FAMILY_LIKES))
def test_an_adapter_lowers_the_family_loss_on_a_tiny_repository(bases, files, kind):
    base = load_adapt_base(str(bases[kind]), "cpu")
    cfg = base.adapt_config(quick_config())
    held = FamilySpanData(files, base.backend, cfg).batch(10_000)  # a batch training never draws
    with torch.no_grad():
        before = canvas_loss(base.model, held)[0].item()
    peft_model, result = base.train(files, cfg, minutes=None, steps=6, progress=False, stream=None)
    with torch.no_grad():
        after = canvas_loss(peft_model, held)[0].item()
    assert result.steps == 6 and after < before


def test_gradient_checkpointing_trains_the_same_adapter(bases, files, monkeypatch):
    import transformers.modeling_utils as hf

    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return torch.utils.checkpoint.checkpoint(*args, **kwargs)

    monkeypatch.setattr(hf, "checkpoint", counted)
    weights = []
    for checkpointing in (False, True):
        base = load_adapt_base(str(bases["dream"]), "cpu")
        cfg = replace(base.adapt_config(quick_config()), gradient_checkpointing=checkpointing)
        peft_model, _ = base.train(files, cfg, minutes=None, steps=2, progress=False, stream=None)
        weights.append({k: v.clone() for k, v in peft_model.state_dict().items() if "lora_B" in k})
        assert not base.model.model.gradient_checkpointing  # switched off again after training
        assert bool(calls) == checkpointing  # each block recomputed in the backward pass
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        assert weights[0][k].abs().sum() > 0
        torch.testing.assert_close(weights[0][k], weights[1][k])


def test_llada_adapters_leave_its_output_layer_alone(bases, repo, tmp_path, capsys):
    out = tmp_path / "adapter"
    assert main(["adapt", str(repo), "--model", str(bases["llada"]), "--steps", "1", "--cases", "2",
                 "--library", "none", "--device", "cpu", "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert names and all(".blocks." in n for n in names)
    trained = {n.split(".blocks.")[1].split(".")[1] for n in names}
    assert trained == {"q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"}


@pytest.mark.parametrize("kind", ["dream", "open_dcoder"])
def test_a_family_adapter_saves_serves_and_is_refused_on_another_base(bases, repo, tmp_path, capsys, kind):
    out = tmp_path / "adapter"
    assert main(["adapt", str(repo), "--model", str(bases[kind]), "--steps", "3", "--cases", "2",
                 "--library", "none", "--device", "cpu", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 3 and report["adapter"] == str(out)
    info = read_info(out)
    assert info.training["base_kind"] == kind and info.training["lora"]["whole"] == []

    bare = Engine(EngineConfig(model=str(bases[kind]), adapter="none", library="none"))
    adapted = Engine(EngineConfig(model=str(bases[kind]), adapter=str(out), library="none"))
    assert adapted.adapter == str(out.resolve()) and bare.adapter is None
    assert info.base_sha256 == adapted.adapters.base_sha256
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(bare.model.named_parameters())[name],
                           adapted.model.get_parameter(name.replace("q_proj.", "q_proj.base_layer.")))

    doc = tmp_path / "doc.py"
    doc.write_text("def add(a, b):\n    return a + b\n\nx = add(1, 2)\n")
    assert main(["infill", str(doc), "--at", "2:5", "--model", str(bases[kind]), "--adapter", str(out),
                 "--library", "none", "--json"]) == 0
    assert "text" in json.loads(capsys.readouterr().out)

    other = init_model(tmp_path / "other", FAMILY_LIKES[kind], tiny=True, seed=1)  # same shape, other weights
    with pytest.raises(DiffillError, match="another base model"):
        Engine(EngineConfig(model=str(other), adapter=str(out), library="none"))
    assert main(["infill", str(doc), "--at", "2:5", "--model", str(other), "--adapter", str(out),
                 "--library", "none", "--json"]) != 0
    assert "another base model" in capsys.readouterr().err


def test_diffusion_gemma_is_refused_with_a_reason(tmp_path, repo, capsys):
    with quiet_loading():
        gemma = init_model(tmp_path / "gemma", "diffusiongemma", tiny=True)
    with pytest.raises(DiffillError, match="DiffusionGemma"):
        load_adapt_base(str(gemma), "cpu")
    assert main(["adapt", str(repo), "--model", str(gemma), "--steps", "1", "--cases", "2"]) != 0
    assert "DiffusionGemma" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_adapting_on_cuda_without_a_gpu_is_refused_before_anything_loads(bases, repo, capsys):
    assert main(["adapt", str(repo), "--model", str(bases["dream"]), "--device", "cuda", "--steps", "1",
                 "--cases", "2"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (repo / ".diffill" / "adapter").exists()
