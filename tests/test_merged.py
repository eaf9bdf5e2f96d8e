"""adapters/merged.py: the shipped adapter's merge kept in the user's cache and served from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffill.adapters import serving as adapter_serving
from diffill.adapters import attach, base_fingerprint, save_adapter
from diffill.adapters.merged import MergedWeights, merged_key
from diffill.engine import Engine, EngineConfig, InfillRequest
from diffill.model.loading import load_checkpoint

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "model" / "checkpoints" / "diffill-base"
SHIPPED_ADAPTER = REPO / "adapters" / "checkpoints" / "infill"
DOC = "def mean(values):\n    total = sum(values)\n    return total / \n\n\ndef count(items):\n    return \n"
HOLES = [DOC.index("/ ") + 2, len(DOC) - 1]


def make_adapter(checkpoint: Path, out: Path, seed: int) -> Path:
    """An adapter for ``checkpoint`` whose LoRA weights are not zero (it changes the fills)."""
    base, _ = load_checkpoint(checkpoint)
    peft_model = attach(base, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    save_adapter(peft_model, out, base_fingerprint(load_checkpoint(checkpoint)[0]))
    return out


def fills(engine: Engine) -> list[tuple[str, list[str]]]:
    out = [engine.infill(InfillRequest(DOC, at, at, language="python")) for at in HOLES]
    return [(r.text, r.alternatives) for r in out]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "merged"
    monkeypatch.setenv("DIFFILL_MERGED_CACHE", str(root))
    return root


@pytest.fixture(scope="module")
def tiny_adapter(tiny_checkpoint, tmp_path_factory) -> Path:
    return make_adapter(tiny_checkpoint, tmp_path_factory.mktemp("adapter") / "infill", seed=5)


@pytest.fixture
def shipped_is(monkeypatch):
    """``shipped_is(folder)``: serve ``folder`` as the shipped adapter."""
    return lambda folder: monkeypatch.setattr(adapter_serving, "SHIPPED_ADAPTER", Path(folder))


def tiny_engine(checkpoint: Path) -> Engine:
    return Engine(EngineConfig(model=str(checkpoint), dtype="float32", copy=False, adapter="shipped"))


def test_written_once_then_served_without_peft_and_fills_unchanged(tiny_checkpoint, tiny_adapter, cache, shipped_is,
                                                                   monkeypatch):
    shipped_is(tiny_adapter)
    monkeypatch.setenv("DIFFILL_MERGED_CACHE", "none")
    through_peft = tiny_engine(tiny_checkpoint)
    bare = Engine(EngineConfig(model=str(tiny_checkpoint), dtype="float32", copy=False, adapter="none"))
    monkeypatch.setenv("DIFFILL_MERGED_CACHE", str(cache))
    first = tiny_engine(tiny_checkpoint)
    files = list(cache.rglob("*.safetensors"))
    assert len(files) == 1 and first.adapter == str(tiny_adapter.resolve())
    written = files[0].stat().st_mtime_ns
    warm = tiny_engine(tiny_checkpoint)
    assert warm.adapters._peft is None, "the cached merge is served without peft"
    assert warm.adapter == first.adapter and files[0].stat().st_mtime_ns == written
    assert fills(warm) == fills(through_peft) == fills(first)
    assert fills(bare) != fills(through_peft), "the adapter changes the fills"


def test_a_cached_merge_carries_the_base_fingerprint_so_no_load_recomputes_it(tiny_checkpoint, tiny_adapter, cache,
                                                                              shipped_is, monkeypatch):
    shipped_is(tiny_adapter)
    first = tiny_engine(tiny_checkpoint)
    expected = first.adapters.base_sha256

    def refuse(*args, **kwargs):
        raise AssertionError("the base was fingerprinted again")

    monkeypatch.setattr(adapter_serving, "base_fingerprint", refuse)
    warm = tiny_engine(tiny_checkpoint)
    assert warm.adapters._peft is None and warm.adapters.base_sha256 == expected
    assert warm.fingerprint() == first.fingerprint()


def test_switching_away_from_a_cached_merge_restores_the_base(tiny_checkpoint, tiny_adapter, cache, shipped_is,
                                                               tmp_path):
    shipped_is(tiny_adapter)
    tiny_engine(tiny_checkpoint)
    warm = tiny_engine(tiny_checkpoint)
    bare = Engine(EngineConfig(model=str(tiny_checkpoint), dtype="float32", copy=False, adapter="none"))
    other = make_adapter(tiny_checkpoint, tmp_path / "other", seed=6)
    warm.use_adapter("none")
    assert fills(warm) == fills(bare)
    warm.use_adapter(str(other))  # through peft, on the base weights (its base check passes)
    warm.use_adapter("shipped")
    assert fills(warm) == fills(tiny_engine(tiny_checkpoint))


def test_a_changed_adapter_or_base_gets_its_own_merge(tiny_checkpoint, tiny_adapter, tmp_path):
    key = merged_key(tiny_checkpoint / "model.safetensors", tiny_adapter, "float32")
    assert merged_key(tiny_checkpoint / "model.safetensors", tiny_adapter, "bfloat16") != key
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for p in tiny_adapter.iterdir():
        (adapter / p.name).write_bytes(p.read_bytes())
    assert merged_key(tiny_checkpoint / "model.safetensors", adapter, "float32") == key
    meta = json.loads((adapter / "diffill_adapter.json").read_text())
    (adapter / "diffill_adapter.json").write_text(json.dumps({**meta, "created": "later"}))
    assert merged_key(tiny_checkpoint / "model.safetensors", adapter, "float32") != key
    base = tmp_path / "base.safetensors"
    data = bytearray((tiny_checkpoint / "model.safetensors").read_bytes())
    data[-1] ^= 1
    base.write_bytes(bytes(data))
    assert merged_key(base, tiny_adapter, "float32") != key


def test_a_retrained_adapter_is_merged_again(tiny_checkpoint, tiny_adapter, cache, shipped_is, tmp_path):
    shipped_is(tiny_adapter)
    tiny_engine(tiny_checkpoint)
    retrained = make_adapter(tiny_checkpoint, tmp_path / "infill", seed=7)
    shipped_is(retrained)
    engine = tiny_engine(tiny_checkpoint)
    assert engine.adapters._peft is not None, "merged through peft, not served from the old merge"
    assert len(list(cache.rglob("*.safetensors"))) == 2


@pytest.mark.parametrize("damage", ["garbage", "flipped byte", "empty"])
def test_a_damaged_merge_is_refused_and_rebuilt(tiny_checkpoint, tiny_adapter, cache, shipped_is, damage):
    shipped_is(tiny_adapter)
    expected = fills(tiny_engine(tiny_checkpoint))
    path = next(cache.rglob("*.safetensors"))
    data = bytearray(path.read_bytes())
    if damage == "garbage":
        data = bytearray(b"not a safetensors file")
    elif damage == "flipped byte":
        data[-5] ^= 0x40  # inside the last tensor: it still parses
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    engine = tiny_engine(tiny_checkpoint)
    assert engine.adapters._peft is not None, "the damaged file was not served"
    assert fills(engine) == expected
    assert MergedWeights(path).load(load_checkpoint(tiny_checkpoint)[0]) is not None, "rebuilt"
    assert engine.adapter == str(tiny_adapter.resolve())


def test_no_cache_when_switched_off(tiny_checkpoint, tiny_adapter, shipped_is, monkeypatch, tmp_path):
    shipped_is(tiny_adapter)
    monkeypatch.setenv("DIFFILL_MERGED_CACHE", "none")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tiny_engine(tiny_checkpoint)
    assert not list(tmp_path.rglob("*.safetensors"))


@pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file()
                    or not (SHIPPED_ADAPTER / "adapter_model.safetensors").is_file(),
                    reason="no shipped model or adapter in this checkout")
def test_the_cli_serves_the_shipped_merge_without_importing_peft(tmp_path):
    """Through the command line, with ``--adapter shipped``: the first call merges with peft and
    keeps the merge, the next imports no peft and prints the same fill."""
    src = tmp_path / "stats.py"
    src.write_text("def mean(values):\n    total = sum(values)\n    return \n")
    code = ("import sys; from diffill.cli import main; code = main(sys.argv[1:]); "
            "print('peft' in sys.modules, file=sys.stderr); "
            "sys.exit(code)")
    env = {**os.environ, "DIFFILL_MERGED_CACHE": str(tmp_path / "merged"), "OMP_NUM_THREADS": "1"}

    def infill() -> tuple[str, str]:
        done = subprocess.run([sys.executable, "-c", code, "infill", str(src), "--at", "3:12", "--json",
                               "--adapter", "shipped"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["text"], done.stderr.strip().splitlines()[-1]

    cold_fill, cold_modules = infill()
    warm_fill, warm_modules = infill()
    assert (cold_modules, warm_modules) == ("True", "False")
    assert warm_fill == cold_fill
