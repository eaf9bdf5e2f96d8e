"""adapters/: LoRA attach, save/load, base fingerprint, switch and merge, training, repository sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import torch
import yaml

from diffill.adapters import (
    AdaptedModel,
    AdapterError,
    AdapterInfo,
    LoraSettings,
    attach,
    base_fingerprint,
    list_adapters,
    read_info,
    save_adapter,
)
from diffill.adapters.lora import card_front_matter
from diffill.adapters.sources import RepoFile, collect_sources, source_files, split_heldout
from diffill.adapters.training import AdaptConfig, TrainingFile, train_adapter
from diffill.model.backend import DiffillBackend
from diffill.model.context import Window, window_of
from diffill.model.loading import load_checkpoint

IDS = torch.tensor([[5, 9, 17, 33, 60, 7, 101, 44, 12, 8], [40, 41, 42, 43, 44, 45, 46, 47, 48, 49]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def random_adapter(checkpoint, out, seed: int, settings: LoraSettings | None = None):
    """Save an adapter with non-zero LoRA weights (a fresh one is the identity) for ``checkpoint``;
    modules it trains whole are perturbed too."""
    base, _ = load_checkpoint(checkpoint)
    sha = base_fingerprint(base)
    peft_model = attach(base, settings, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif "modules_to_save" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    expected = logits(base)
    save_adapter(peft_model, out, sha, base_model=str(checkpoint), training={"seed": seed})
    return expected


@pytest.fixture(scope="module")
def saved(tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    one = random_adapter(tiny_checkpoint, root / "one", seed=1)
    two = random_adapter(tiny_checkpoint, root / "two", seed=2)
    return root, one, two


@pytest.fixture(scope="module")
def other_base(tiny_checkpoint, tmp_path_factory):
    """The tiny model with one weight changed: a different base with the same shapes."""
    model, _ = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        model.layers[0].mlp.up_proj.weight[0, 0] += 0.5
    out = tmp_path_factory.mktemp("other")
    model.save_pretrained(str(out))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_checkpoint / name, out / name)
    return out


def test_adapter_folder_holds_peft_files_metadata_and_card(saved, tiny_checkpoint):
    root, _, _ = saved
    names = {p.name for p in (root / "one").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "diffill_adapter.json", "README.md"} <= names
    config = json.loads((root / "one" / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"}
    base, _ = load_checkpoint(tiny_checkpoint)
    assert read_info(root / "one").base_sha256 == base_fingerprint(base)
    assert not list(root.glob(".one*")), "no temporary folder is left behind"
    card = (root / "one" / "README.md").read_text()
    assert card.startswith("---\n"), "a Hugging Face card opens with YAML front matter"
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "peft" and meta["base_model"] and "model-index" not in meta
    assert card.split("---\n", 2)[2].lstrip().startswith("# "), "the card's text follows its front matter"


def test_card_front_matter_indexes_the_figures_after_training(tmp_path):
    info = AdapterInfo(path=tmp_path, base_sha256="0" * 64, base_model="/models/diffill-base",
                       metrics={"before": {"line_infill_exact_match": 0.1},
                                "after": {"line_infill_exact_match": 0.25, "masked_token_accuracy": 0.5}})
    meta = yaml.safe_load(card_front_matter(info, "infill").split("---\n")[1])
    assert meta["base_model"] == "diffill-base", "a label, not a path on the machine that trained it"
    (index,) = meta["model-index"]
    assert index["name"] == "infill"
    assert [(m["type"], m["value"]) for m in index["results"][0]["metrics"]] == [("exact_match", 0.25),
                                                                                 ("accuracy", 0.5)]


def test_save_load_round_trip_gives_identical_logits(saved, tiny_checkpoint):
    root, expected, _ = saved
    base, _ = load_checkpoint(tiny_checkpoint)
    AdaptedModel(base).switch(root / "one", merge=False)
    assert torch.equal(logits(base), expected)


def test_merged_and_unmerged_give_the_same_logits(saved, tiny_checkpoint):
    root, expected, _ = saved
    base, _ = load_checkpoint(tiny_checkpoint)
    bare = logits(base)
    served = AdaptedModel(base)
    served.switch(root / "one", merge=True)
    merged = logits(base)
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(merged, bare, atol=1e-3), "the adapter changes the model"


def test_served_weights_are_fused_only_when_lora_is_merged_or_off(saved, tiny_checkpoint):
    root, one, two = saved
    base, _ = load_checkpoint(tiny_checkpoint)
    served = AdaptedModel(base)
    served.switch(root / "one", merge=False)
    assert not base.fused, "fusing would skip the unmerged LoRA matmuls"
    torch.testing.assert_close(logits(base), one, atol=1e-5, rtol=1e-5)
    served.switch(root / "two")  # merged: fused from the merged weights, not the last ones fused
    assert base.fused
    torch.testing.assert_close(logits(base), two, atol=1e-5, rtol=1e-5)
    served.switch(None)
    assert base.fused
    fresh, _ = load_checkpoint(tiny_checkpoint)
    torch.testing.assert_close(logits(base), logits(fresh), atol=1e-5, rtol=1e-5)


def test_switching_between_adapters_and_back_to_the_base(saved, tiny_checkpoint):
    root, one, two = saved
    base, _ = load_checkpoint(tiny_checkpoint)
    bare = logits(base)
    served = AdaptedModel(base)
    for path, want in [("one", one), ("two", two), (None, bare), ("one", one)]:
        info = served.switch(root / path if path else None)
        assert (info.path.name if info else None) == path
        torch.testing.assert_close(logits(base), want, atol=1e-5, rtol=1e-5)
    assert len(served.loaded()) == 2


def test_an_adapter_trained_with_a_wider_window_is_served_with_it(saved, tiny_checkpoint, tmp_path):
    root, _, _ = saved
    base, tok = load_checkpoint(tiny_checkpoint)
    own = window_of(base.config)
    wide = Window(own.prefix_tokens * 3, own.suffix_tokens * 2)
    sha = base_fingerprint(base)
    save_adapter(attach(load_checkpoint(tiny_checkpoint)[0]), tmp_path / "wide", sha, window=wide)
    assert read_info(tmp_path / "wide").window == wide
    assert read_info(root / "one").window is None, "an adapter saved without one keeps the base's"
    served = AdaptedModel(base)
    backend = DiffillBackend(base, tok)
    for path, want in [("wide", wide), ("one", own), ("wide", wide), (None, own)]:
        served.switch((tmp_path if path == "wide" else root) / path if path else None)
        assert window_of(base.config) == want and backend.window == want


def test_switching_back_restores_the_bfloat16_base_exactly(saved, tiny_checkpoint):
    """Unmerging by subtraction drifts bfloat16 weights; the server restores them instead."""
    root, _, _ = saved
    base, _ = load_checkpoint(tiny_checkpoint, dtype=torch.bfloat16)
    bare = {k: v.clone() for k, v in base.state_dict().items()}
    bare_logits = logits(base)
    served = AdaptedModel(base)
    for _ in range(10):
        for path in ("one", "two", None):
            served.switch(root / path if path else None)
    assert not served.active
    for name, w in base.state_dict().items():
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        if "lora_" not in name:
            assert torch.equal(w, bare[key]), name
    assert torch.equal(logits(base), bare_logits)


def test_an_adapter_with_whole_embeddings_round_trips_merges_and_switches_off(saved, tiny_checkpoint, tmp_path):
    """Token embeddings trained whole (tied to the output layer) travel with the adapter; they are
    served, merged or not, and switching to another adapter or the bare base puts the base's back."""
    root, one, _ = saved
    expected = random_adapter(tiny_checkpoint, tmp_path / "emb", seed=3,
                              settings=LoraSettings(whole=("embed_tokens",)))
    config = json.loads((tmp_path / "emb" / "adapter_config.json").read_text())
    assert config["modules_to_save"] == ["embed_tokens"]
    base, _ = load_checkpoint(tiny_checkpoint)
    bare = logits(base)
    served = AdaptedModel(base)
    served.switch(tmp_path / "emb", merge=False)
    assert torch.equal(logits(base), expected)
    for path, want in [(tmp_path / "emb", expected), (root / "one", one), (None, bare), (tmp_path / "emb", expected)]:
        served.switch(path)
        torch.testing.assert_close(logits(base), want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(expected, bare, atol=1e-3), "the embeddings change the model"
    assert not torch.allclose(expected, one, atol=1e-3)


def test_adapter_on_the_wrong_base_is_refused(saved, other_base):
    root, _, _ = saved
    model, _ = load_checkpoint(other_base)
    with pytest.raises(AdapterError, match="trained on another base model"):
        AdaptedModel(model).switch(root / "one")


def test_engine_refuses_a_wrong_base_adapter_but_the_shipped_one_falls_back(saved, other_base, monkeypatch):
    from diffill.adapters import serving as adapter_serving
    from diffill.engine import Engine, EngineConfig
    from diffill.errors import DiffillError

    root, _, _ = saved
    with pytest.raises(DiffillError, match="another base model"):
        Engine(EngineConfig(model=str(other_base), adapter=str(root / "one")))
    monkeypatch.setattr(adapter_serving, "SHIPPED_ADAPTER", root / "one")
    engine = Engine(EngineConfig(model=str(other_base), adapter="shipped"))  # made for another base
    assert engine.adapter is None and engine.info()["adapter"] == "none"


def test_engine_merges_the_adapter_and_reports_it(saved, tiny_checkpoint, monkeypatch):
    from diffill.adapters import serving as adapter_serving
    from diffill.engine import Engine, EngineConfig

    root, expected, _ = saved
    engine = Engine(EngineConfig(model=str(tiny_checkpoint), adapter=str(root / "one"), dtype="float32"))
    assert engine.info()["adapter"] == str((root / "one").resolve())
    torch.testing.assert_close(logits(engine.model), expected, atol=1e-5, rtol=1e-5)
    assert engine.use_adapter("none") is None and engine.info()["adapter"] == "none"
    # "shipped": the shipped adapter, used only when asked for and made for this base
    monkeypatch.setattr(adapter_serving, "SHIPPED_ADAPTER", root / "two")
    assert Engine(EngineConfig(model=str(tiny_checkpoint))).adapter is None, "by default the model alone"
    assert Engine(EngineConfig(model=str(tiny_checkpoint), adapter="shipped")).adapter == str((root / "two").resolve())
    monkeypatch.setattr(adapter_serving, "SHIPPED_ADAPTER", root / "missing")
    assert Engine(EngineConfig(model=str(tiny_checkpoint), adapter="shipped")).adapter is None


def test_fingerprint_is_stable_and_sees_any_weight_change(tiny_checkpoint, other_base):
    a, _ = load_checkpoint(tiny_checkpoint)
    b, _ = load_checkpoint(tiny_checkpoint, dtype=torch.bfloat16)
    c, _ = load_checkpoint(other_base)
    assert base_fingerprint(a) == base_fingerprint(load_checkpoint(tiny_checkpoint)[0])
    assert base_fingerprint(a) != base_fingerprint(c)
    assert len(base_fingerprint(b)) == 64
    # float32 weights loaded as bfloat16 for inference keep their fingerprint (adapters still fit)
    assert base_fingerprint(b) == base_fingerprint(a)
    attach(a)
    with pytest.raises(AdapterError, match="LoRA layers"):
        base_fingerprint(a)


def test_list_and_read_info(saved, tmp_path):
    root, _, _ = saved
    (root / "not-an-adapter").mkdir(exist_ok=True)
    assert [i.path.name for i in list_adapters(root)] == ["one", "two"]
    assert read_info(root / "two").training == {"seed": 2}
    with pytest.raises(AdapterError, match="not a diffill adapter"):
        read_info(root / "not-an-adapter")
    with pytest.raises(AdapterError, match="not found"):
        read_info(tmp_path / "nowhere")


def test_saving_over_an_existing_adapter_replaces_it(saved, tiny_checkpoint, tmp_path):
    root, _, _ = saved
    out = tmp_path / "adapter"
    shutil.copytree(root / "one", out)
    random_adapter(tiny_checkpoint, out, seed=2)
    assert read_info(out).training == {"seed": 2}
    assert (out / "adapter_model.safetensors").read_bytes() == (root / "two" / "adapter_model.safetensors").read_bytes()


def _train(checkpoint, texts, steps=3):
    model, tok = load_checkpoint(checkpoint)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    files = [TrainingFile(t, True) for t in texts]
    peft_model, result = train_adapter(model, tok, files, AdaptConfig(batch_size=4), steps=steps, progress=False)
    lora = {k: v.clone() for k, v in peft_model.state_dict().items() if "lora_" in k}
    base = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
            for k, v in peft_model.state_dict().items() if "lora_" not in k}
    return before, base, lora, result


def test_training_is_deterministic_and_changes_only_lora_weights(tiny_checkpoint, tiny_sources):
    texts = [p.read_text() for p in sorted(tiny_sources.glob("*.py"))[:4]]
    before, base, lora, result = _train(tiny_checkpoint, texts)
    _, _, lora_again, _ = _train(tiny_checkpoint, texts)
    assert result.steps == 3 and result.tokens_seen > 0 and result.loss == result.loss
    assert lora and all(torch.equal(lora[k], lora_again[k]) for k in lora)
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in lora.items() if "lora_B" in k)
    assert set(base) == set(before) and all(torch.equal(base[k], before[k]) for k in before)


def test_whole_modules_train_as_a_copy_beside_the_lora_weights(tiny_checkpoint, tiny_sources):
    model, tok = load_checkpoint(tiny_checkpoint)
    embeddings = model.embed_tokens.weight.detach().clone()
    cfg = AdaptConfig(batch_size=4, lora=LoraSettings(whole=("embed_tokens",)))
    files = [TrainingFile(p.read_text(), True) for p in sorted(tiny_sources.glob("*.py"))[:4]]
    peft_model, _ = train_adapter(model, tok, files, cfg, steps=2, progress=False)
    state = peft_model.state_dict()
    original = next(v for k, v in state.items() if "embed_tokens.original_module" in k)
    copy = next(v for k, v in state.items() if "embed_tokens.modules_to_save" in k)
    assert torch.equal(original, embeddings), "the base's embeddings stay as they were"
    assert not torch.equal(copy, embeddings), "the adapter's copy trained"
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in state.items()), "and so did LoRA"


def test_an_adapter_trains_on_the_window_its_base_reads(narrow_checkpoint, tiny_sources, monkeypatch):
    from diffill.model import objective
    from diffill.model.context import Window

    windows = set()
    real = objective.encode_window

    def spy(tok, prefix, suffix, window):
        windows.add(window)
        return real(tok, prefix, suffix, window)

    monkeypatch.setattr(objective, "encode_window", spy)
    _train(narrow_checkpoint, [p.read_text() for p in sorted(tiny_sources.glob("*.py"))[:4]], steps=1)
    assert windows == {Window(6, 3)}


def test_training_needs_a_budget(tiny_checkpoint):
    model, tok = load_checkpoint(tiny_checkpoint)
    with pytest.raises(ValueError, match="budget"):
        train_adapter(model, tok, [TrainingFile("x = 1\n", True)], AdaptConfig())


# -- repository sources ---------------------------------------------------------------------

def make_repo(root):
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "core.py").write_text("def f(x):\n    return x + 1\n")
    (root / "pkg" / "util.js").write_text("function g(a) {\n  return a * 2;\n}\n")
    (root / "pkg" / "data_pb2.py").write_text("x = 1\n")
    (root / "pkg" / "stamp.py").write_text("# Code generated by a tool. DO NOT EDIT.\nx = 1\n")
    (root / "pkg" / "blob.py").write_bytes(b"\x00\x01\x02binary")
    (root / "pkg" / "latin.py").write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    (root / "pkg" / "huge.py").write_text("x = 1\n" * 200_000)
    (root / "pkg" / "minified.js").write_text("var a=1;" * 200 + "\n")
    (root / "vendor").mkdir()
    (root / "vendor" / "lib.py").write_text("y = 2\n")
    (root / "node_modules" / "m").mkdir(parents=True)
    (root / "node_modules" / "m" / "index.js").write_text("z = 3\n")
    (root / "README.md").write_text("# hello\n")
    (root / "build").mkdir()
    (root / "build" / "out.py").write_text("w = 4\n")
    (root / "sub").mkdir()
    (root / "sub" / "keep.py").write_text("k = 5\n")
    (root / "sub" / "local.py").write_text("l = 6\n")
    (root / "sub" / ".gitignore").write_text("local.py\n")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "run.log").write_text("log\n")


def test_collect_respects_gitignore_and_skips_what_is_not_source(tmp_path):
    make_repo(tmp_path)
    coll = collect_sources(tmp_path)
    assert coll.source == "walk"
    assert [f.path for f in coll.files] == ["pkg/core.py", "pkg/util.js", "sub/keep.py"]
    assert [f.language for f in coll.files] == ["python", "javascript", "python"]
    assert coll.skipped["vendored"] == 2
    assert coll.skipped["generated"] == 3  # *_pb2.py, a "do not edit" header, a minified file
    assert coll.skipped["binary"] == 2  # NUL bytes, not UTF-8
    assert coll.skipped["over 1 MB"] == 1


def test_one_file_is_taken_or_left_as_the_whole_collection_would(tmp_path):
    """``source_files`` (the workspace index's refresh) agrees with ``collect_sources`` file by file."""
    make_repo(tmp_path)
    taken = {str((tmp_path / f.path).resolve()) for f in collect_sources(tmp_path).files}
    every = [p for p in tmp_path.rglob("*") if p.is_file()] + [tmp_path / "gone.py", tmp_path.parent / "out.py"]
    found = source_files(tmp_path, every)
    assert {p for p, f in found.items() if f is not None} == taken
    assert found[str((tmp_path / "pkg" / "core.py").resolve())].path == "pkg/core.py"
    if shutil.which("git"):  # in a git repository: tracked files only
        subprocess.run(["git", "-C", str(tmp_path), "init", "-q"], check=True)
        subprocess.run(["git", "-C", str(tmp_path), "add", "-f", "pkg/core.py", "build/out.py"], check=True)
        found = source_files(tmp_path, [tmp_path / "pkg" / "core.py", tmp_path / "sub" / "keep.py",
                                        tmp_path / "build" / "out.py"])
        assert [f.path if f else None for f in found.values()] == ["pkg/core.py", None, "build/out.py"]


def test_collect_stops_reading_at_a_character_budget(tmp_path):
    make_repo(tmp_path)
    everything = collect_sources(tmp_path).files
    first = len(everything[0].text)
    coll = collect_sources(tmp_path, max_chars=first)
    assert [f.path for f in coll.files] == [everything[0].path]
    assert coll.skipped["over the character budget"] >= 2


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_collect_uses_git_tracked_files_in_a_git_repository(tmp_path):
    make_repo(tmp_path)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-f", "pkg/core.py", "vendor/lib.py", "build/out.py"], check=True)
    (tmp_path / "untracked.py").write_text("u = 1\n")
    coll = collect_sources(tmp_path)
    assert coll.source == "git"
    assert [f.path for f in coll.files] == ["build/out.py", "pkg/core.py"]  # tracked wins over .gitignore
    assert coll.skipped["vendored"] == 1


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_an_untracked_folder_inside_a_git_repository_is_walked(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    make_repo(tmp_path / "download")
    coll = collect_sources(tmp_path / "download")
    assert coll.source == "walk" and len(coll.files) == 3


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_collecting_a_git_repository_runs_no_command_from_its_config(tmp_path):
    """A downloaded folder's .git/config cannot make indexing run a command (core.fsmonitor)."""
    repo, marker = tmp_path / "repo", tmp_path / "fsmonitor-ran"
    make_repo(repo)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-f", "pkg/core.py"], check=True)
    subprocess.run([*git, "config", "core.fsmonitor", f"touch {marker}; false"], check=True)
    subprocess.run([*git, "config", "core.pager", f"touch {marker}"], check=True)
    coll = collect_sources(repo)
    assert coll.source == "git" and [f.path for f in coll.files] == ["pkg/core.py"]
    source_files(repo, [repo / "pkg" / "core.py"])
    assert not marker.exists()


@pytest.mark.parametrize("tracked", [False, True])
def test_links_out_of_the_folder_are_never_read(tmp_path, tracked):
    """A link inside the folder to a file outside it (a secret), however it is named, is skipped;
    a link to a source file inside the folder is read; so is nothing that is not a regular file."""
    if tracked and shutil.which("git") is None:
        pytest.skip("git is not installed")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "keys.py").write_text('DB_PASSWORD = "QWPX-77c1e0f"\n')
    (secret / "id_rsa").write_text("-----BEGIN PRIVATE KEY-----\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "app.py").write_text("import os\n")
    (ws / "leak.py").symlink_to(secret / "keys.py")
    (ws / "key.py").symlink_to(secret / "id_rsa")
    (ws / "notes.txt").write_text("x = 1\n")
    (ws / "alias.py").symlink_to(ws / "notes.txt")  # inside, but not a source file
    (ws / "same.py").symlink_to(ws / "app.py")
    os.mkfifo(ws / "pipe.py")  # reading it would block
    if tracked:
        subprocess.run(["git", "-C", str(ws), "init", "-q"], check=True)
        subprocess.run(["git", "-C", str(ws), "add", "-f", "app.py", "leak.py", "key.py", "alias.py",
                        "same.py"], check=True)
    coll = collect_sources(ws)
    assert sorted(f.path for f in coll.files) == ["app.py", "same.py"]
    assert not any("QWPX" in f.text or "PRIVATE" in f.text for f in coll.files)
    assert coll.skipped["links outside the folder"] == 2
    refreshed = source_files(ws, [ws / "leak.py", ws / "key.py", ws / "pipe.py"])
    assert all(found is None for found in refreshed.values())


def test_heldout_split_is_deterministic_and_about_ten_percent():
    files = [RepoFile(f"m{i}.py", "x = 1\n", "python") for i in range(50)]
    train, held = split_heldout(files)
    assert len(held) == 5 and len(train) == 45
    assert not {f.path for f in train} & {f.path for f in held}
    assert {f.path for f in split_heldout(list(reversed(files)))[1]} == {f.path for f in held}
    assert len(split_heldout(files[:2])[1]) == 1
    with pytest.raises(ValueError, match="at least 2"):
        split_heldout(files[:1])


def test_eval_compare_takes_an_adapter_per_model(saved, tiny_checkpoint, tiny_sources, capsys):
    from diffill.cli import main

    root, _, _ = saved
    names = [f"{tiny_checkpoint}@none", f"{tiny_checkpoint}@{root / 'one'}"]
    assert main(["eval", "compare", *names, "--corpus", str(tiny_sources), "--cases", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in report["models"]] == names and report["cases"] == 4
    # the adapter named after "@" is the one loaded, not --adapter's
    assert main(["eval", "compare", f"{tiny_checkpoint}@{root / 'missing'}", "--corpus", str(tiny_sources),
                 "--cases", "2", "--adapter", "none"]) == 2
    assert "missing" in capsys.readouterr().err
