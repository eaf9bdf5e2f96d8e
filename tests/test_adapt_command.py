"""``diffill adapt``, ``diffill adapt-base`` and the ``--adapter`` option of the other commands."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from diffill.adapters import read_info, workspace_adapter
from diffill.adapters.lora import REPOSITORY_TOKENS
from diffill.adaptation import SHIPPED_WINDOW
from diffill.cli import main
from diffill.engine import Engine, EngineConfig
from diffill.errors import DiffillError


@pytest.fixture()
def repo(tiny_sources, tmp_path):
    """A small repository: a dozen Python modules, a vendored copy and a README."""
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    for p in sorted(tiny_sources.glob("*.py")):
        shutil.copy(p, root / "src" / p.name)
    (root / "third_party").mkdir()
    shutil.copy(next(tiny_sources.glob("*.py")), root / "third_party" / "copy.py")
    (root / "README.md").write_text("# repo\n")
    return root


@pytest.fixture(scope="module")
def corpus(tiny_corpus, tmp_path_factory):
    """The tiny corpus with a held-out split (its dozen files are too few for the hash split to
    hold any out): the first two training files, listed again as held out. They are their own
    near-twins in training, so evaluations here keep near-twins (``--keep-near-twins``)."""
    out = tmp_path_factory.mktemp("corpus") / "corpus"
    shutil.copytree(tiny_corpus, out)
    lines = (out / "train-00000.jsonl").read_text().splitlines()[:2]
    (out / "heldout-00000.jsonl").write_text("\n".join(lines) + "\n")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["splits"]["heldout"] = {"files": 2, "shards": [{"text": "heldout-00000.jsonl",
                                                              "tokens": "train-00000.npy", "files": 2}]}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def run_json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_adapt_runs_end_to_end_and_the_adapter_serves(repo, tiny_checkpoint, capsys):
    report = run_json(capsys, ["adapt", str(repo), "--model", str(tiny_checkpoint), "--steps", "2",
                               "--cases", "4", "--json"])
    assert set(report) >= {"before", "after", "files", "tokens", "adapter", "minutes"}
    for key in ("before", "after"):
        assert 0.0 <= report[key]["line_infill_exact_match"] <= 1.0
    n_sources = len(list((repo / "src").glob("*.py")))
    assert report["files"] + report["heldout_files"] == n_sources  # README and third_party/ skipped
    assert report["heldout_files"] == 1 and report["tokens"] > 1000 and report["steps"] == 2
    adapter = repo / ".diffill" / "adapter"
    assert report["adapter"] == str(adapter) and workspace_adapter(repo) == adapter
    info = read_info(adapter)
    assert info.training["files"] == report["files"] and info.metrics["after"] == report["after"]
    target = next((repo / "src").glob("*.py"))
    out = run_json(capsys, ["infill", str(target), "--at", "2:1", "--max-tokens", "4", "--model",
                            str(tiny_checkpoint), "--adapter", str(adapter), "--json"])
    assert out["start"] == out["end"]
    # the adapter keeps its training files' tokens, which the engine's fills copy from
    engine = Engine(EngineConfig(model=str(tiny_checkpoint), adapter=str(adapter)))
    assert engine.repository is not None and len(engine.repository) == report["tokens"]
    assert Engine(EngineConfig(model=str(tiny_checkpoint), adapter="none")).repository is None


def test_an_adapter_with_damaged_repository_tokens_is_refused_clearly(repo, tiny_checkpoint, capsys):
    run_json(capsys, ["adapt", str(repo), "--model", str(tiny_checkpoint), "--steps", "1", "--cases", "2", "--json"])
    adapter = repo / ".diffill" / "adapter"
    (adapter / REPOSITORY_TOKENS).write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DiffillError, match="not a token cache"):
        Engine(EngineConfig(model=str(tiny_checkpoint), adapter=str(adapter)))


def test_adapt_prints_before_and_after(repo, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "elsewhere" / "adapter"
    assert main(["adapt", str(repo), "--model", str(tiny_checkpoint), "--steps", "1", "--cases", "2",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "before" in text and "after" in text and str(out) in text
    assert read_info(out).training["steps"] == 1
    assert not (repo / ".diffill").exists() and workspace_adapter(repo) is None


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_adapt_trains_on_git_tracked_files_only(repo, tiny_checkpoint, capsys):
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    tracked = sorted(p.relative_to(repo).as_posix() for p in (repo / "src").glob("*.py"))[:5]
    subprocess.run([*git, "add", *tracked], check=True)
    report = run_json(capsys, ["adapt", str(repo), "--model", str(tiny_checkpoint), "--steps", "1",
                               "--cases", "2", "--json"])
    assert report["files"] + report["heldout_files"] == 5


def exit_code_and_error(capsys, argv) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_adapt_errors_exit_2_with_a_clear_message(tmp_path, tiny_checkpoint, repo, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.md").write_text("# notes\n")
    (docs / "logo.png").write_bytes(b"\x89PNG\x00\x00")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [
        (["adapt", str(empty)], "is empty"),
        (["adapt", str(docs)], "no source files in a supported language"),
        (["adapt", str(repo), "--out", str(blocker / "adapter")], "cannot write the adapter"),
        (["adapt", str(repo), "--out", str(blocker)], "not a folder"),
        (["adapt", str(tmp_path / "missing")], "no such folder"),
        (["adapt", str(repo), "--minutes", "0"], "--minutes"),
    ]
    for argv, message in cases:
        code, err = exit_code_and_error(capsys, [*argv, "--model", str(tiny_checkpoint)])
        assert code == 2, argv
        assert message in err and err.startswith("diffill: error:"), (argv, err)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_adapt_on_a_git_repository_without_files_is_empty(tmp_path, tiny_checkpoint, capsys):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "untracked.py").write_text("x = 1\n")
    code, err = exit_code_and_error(capsys, ["adapt", str(tmp_path), "--model", str(tiny_checkpoint)])
    assert code == 2 and "empty (no files tracked by git)" in err


def test_adapter_option_errors_exit_2(tmp_path, tiny_checkpoint, tiny_sources, capsys):
    target = next(tiny_sources.glob("*.py"))
    argv = ["infill", str(target), "--at", "1:1", "--model", str(tiny_checkpoint), "--adapter"]
    code, err = exit_code_and_error(capsys, [*argv, str(tmp_path / "nowhere")])
    assert code == 2 and "adapter folder not found" in err
    code, err = exit_code_and_error(capsys, [*argv, str(tmp_path)])
    assert code == 2 and "not a diffill adapter folder" in err


def test_eval_heldout_takes_adapter_none(tiny_checkpoint, corpus, capsys):
    figures = run_json(capsys, ["eval", "heldout", "--keep-near-twins", "--model", str(tiny_checkpoint),
                                "--corpus", str(corpus),
                                "--cases", "2", "--adapter", "none", "--json"])
    assert figures["adapter"] == "none" and 0.0 <= figures["line_infill_exact_match"] <= 1.0


def test_adapt_base_recipe_writes_an_adapter_with_a_card(tiny_checkpoint, corpus, tmp_path, capsys):
    out = tmp_path / "infill"
    summary = run_json(capsys, ["adapt-base", "--corpus", str(corpus), "--model", str(tiny_checkpoint),
                                "--steps", "2", "--cases", "3", "--out", str(out)])
    assert summary["steps"] == 2 and summary["adapter"] == str(out)
    card = (out / "README.md").read_text()
    assert "## Recipe" in card and "diffill adapt-base --corpus" in card and "| base + this adapter |" in card
    assert read_info(out).window == SHIPPED_WINDOW, "served with the window it trained with, wider than the base's"
    assert summary["window"] == {"prefix_tokens": SHIPPED_WINDOW.prefix_tokens,
                                 "suffix_tokens": SHIPPED_WINDOW.suffix_tokens}
    figures = run_json(capsys, ["eval", "heldout", "--keep-near-twins", "--model", str(tiny_checkpoint),
                                "--corpus", str(corpus),
                                "--cases", "2", "--adapter", str(out), "--json"])
    assert figures["adapter"] == str(out.resolve())


def test_adapt_base_needs_a_corpus(tmp_path, tiny_checkpoint, capsys):
    code, err = exit_code_and_error(capsys, ["adapt-base", "--corpus", str(tmp_path), "--model",
                                             str(tiny_checkpoint), "--steps", "1"])
    assert code == 2 and "not a corpus folder" in err


def test_adapt_measures_with_the_library_index_it_is_given(repo, tiny_checkpoint, tmp_path, capsys):
    """Before and after copy from ``--library`` as the engine's fills do: an index that holds the
    held-out files themselves bridges their lines."""
    from diffill.model.library_index import build_index
    from diffill.model.loading import load_checkpoint

    _, tok = load_checkpoint(tiny_checkpoint)
    texts = [p.read_text() for p in sorted((repo / "src").glob("*.py"))]
    build_index(tok, tok.encode_batch(texts), tmp_path / "index", ["test"])
    argv = ["adapt", str(repo), "--model", str(tiny_checkpoint), "--steps", "1", "--cases", "20", "--json"]
    bare = run_json(capsys, [*argv, "--library", "none", "--out", str(tmp_path / "a")])
    lib = run_json(capsys, [*argv, "--library", str(tmp_path / "index"), "--out", str(tmp_path / "b")])
    assert lib["before"]["line_infill_exact_match"] > bare["before"]["line_infill_exact_match"]
    assert read_info(tmp_path / "b").training["library"] == str(tmp_path / "index")
    assert read_info(tmp_path / "a").training["library"] == "none"
