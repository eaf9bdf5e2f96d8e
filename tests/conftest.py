"""Shared fixtures: a tiny corpus and a tiny randomly initialised checkpoint (built in seconds)."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# tests never copy from a library index the developer built (a test that wants one builds its own)
os.environ["DIFFILL_LIBRARY_INDEX"] = "none"
# nor keep merged adapter weights in the user's cache (a test that wants them points it elsewhere)
os.environ["DIFFILL_MERGED_CACHE"] = "none"

import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])
TINY_SOURCES = ["textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "bisect.py", "heapq.py",
                "colorsys.py", "keyword.py", "this.py", "numbers.py", "calendar.py", "string.py"]


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory) -> Path:
    """A folder of a dozen standard-library modules."""
    d = tmp_path_factory.mktemp("sources")
    for name in TINY_SOURCES:
        if (STDLIB / name).is_file():
            (d / name).write_text((STDLIB / name).read_text(encoding="utf-8"), encoding="utf-8")
    return d


@pytest.fixture(scope="session")
def tiny_corpus(tiny_sources, tmp_path_factory) -> Path:
    from diffill.model.corpus import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    build_corpus(out, [tiny_sources], vocab_size=512)
    return out


TINY_MODEL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="session")
def tok(tiny_corpus):
    """The tiny corpus's tokenizer."""
    from diffill.model.tokenizer import CodeTokenizer, load_tokenizer

    return CodeTokenizer(load_tokenizer(tiny_corpus / "tokenizer"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_corpus, tmp_path_factory) -> Path:
    """A randomly initialised 2-layer model with the tiny corpus's tokenizer, saved as a checkpoint."""
    from diffill.model.configuration import DiffillConfig
    from diffill.model.network import DiffillForMaskedLM
    from diffill.model.tokenizer import CodeTokenizer, load_tokenizer

    torch.manual_seed(0)
    hf = load_tokenizer(tiny_corpus / "tokenizer")
    tok = CodeTokenizer(hf)
    cfg = DiffillConfig(vocab_size=tok.vocab_size, pad_token_id=tok.pad_id, mask_token_id=tok.mask_id,
                        eoi_token_id=tok.eoi_id, bos_token_id=tok.bos_id, **TINY_MODEL)
    out = tmp_path_factory.mktemp("ckpt")
    DiffillForMaskedLM(cfg).save_pretrained(str(out))
    hf.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_causal_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint's shape and tokenizer with causal attention, randomly initialised."""
    from diffill.model.configuration import DiffillConfig
    from diffill.model.network import DiffillForMaskedLM
    from diffill.model.tokenizer import load_tokenizer

    torch.manual_seed(1)
    cfg = DiffillConfig.from_pretrained(str(tiny_checkpoint))
    cfg.causal = True
    out = tmp_path_factory.mktemp("causal")
    DiffillForMaskedLM(cfg).save_pretrained(str(out))
    load_tokenizer(tiny_checkpoint).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def narrow_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with a config that says it was trained with a 6 + 3-token context window."""
    import json
    import shutil

    out = tmp_path_factory.mktemp("narrow") / "ckpt"
    shutil.copytree(tiny_checkpoint, out)
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "prefix_tokens": 6, "suffix_tokens": 3}))
    return out


@pytest.fixture
def spy_requests(monkeypatch):
    """``spy_requests(cls, method)``: a list that gets every request ``cls.method(self, requests,
    ...)`` is given during the test, in order; the method still runs."""
    def watch(cls, name: str) -> list:
        seen = []
        real = getattr(cls, name)

        def spy(self, requests, *args, **kwargs):
            seen.extend(requests)
            return real(self, requests, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)
        return seen

    return watch


@pytest.fixture
def sampled_requests(spy_requests) -> list:
    """Every request the sampler is given during the test, in order."""
    from diffill.model.decoders import Decoder

    return spy_requests(Decoder, "sample")


@pytest.fixture(scope="session")
def tiny_engine(tiny_checkpoint):
    from diffill.engine import Engine, EngineConfig

    return Engine(EngineConfig(model=str(tiny_checkpoint)))


SHIPPED = REPO / "model" / "checkpoints" / "diffill-base"


@pytest.fixture(scope="session")
def shipped_engine():
    """The shipped default model (skips only if a checkout has no weights yet)."""
    from diffill.engine import Engine, EngineConfig

    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip("no shipped checkpoint in this checkout")
    return Engine(EngineConfig())
