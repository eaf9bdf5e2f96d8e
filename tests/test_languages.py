"""The languages a model serves (diffill/languages.py): those its config.json lists, else every
language with a grammar; ``--languages`` (and the language server's setting) override them."""

from __future__ import annotations

import json
import shutil

import pytest

from diffill.cli import main
from diffill.engine import Engine, EngineConfig, InfillOptions, InfillRequest
from diffill.errors import DiffillError, UnknownLanguageError
from diffill.grammar.registry import GRAMMAR_NAMES
from diffill.languages import checkpoint_languages, parse_setting
from diffill.model.families.init import init_model
from diffill.model.loading import DEFAULT_CHECKPOINT, quiet_loading

TS = "function add(a: number, b: number): number {\n  return a + b;\n}\n"
GO = "package main\n\nfunc add(a int, b int) int {\n\treturn \n}\n"


@pytest.fixture(scope="module")
def python_only(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint, its config.json saying it was trained on Python."""
    out = tmp_path_factory.mktemp("python-only") / "ckpt"
    shutil.copytree(tiny_checkpoint, out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "languages": ["python"]}))
    return out


def test_the_shipped_model_says_it_knows_python_only():
    assert checkpoint_languages(DEFAULT_CHECKPOINT) == ("python",)


def test_the_cli_refuses_a_typescript_file_with_the_shipped_model_and_says_how_to_override(tmp_path, capsys):
    f = tmp_path / "app.ts"
    f.write_text(TS)
    assert main(["infill", str(f), "--at", "2:3", "--library", "none"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "trained on python only, not typescript" in captured.err and "--languages" in captured.err


def test_languages_option_overrides_the_model_s_list(tmp_path, capsys):
    f = tmp_path / "app.ts"
    f.write_text(TS)
    assert main(["infill", str(f), "--at", "2:3", "--library", "none", "--languages", "python,typescript",
                 "--json"]) == 0
    assert "text" in json.loads(capsys.readouterr().out)


def test_an_engine_fills_only_the_languages_its_checkpoint_lists(python_only):
    engine = Engine(EngineConfig(model=str(python_only), library="none"))
    assert engine.info()["languages"] == ["python"]
    with pytest.raises(UnknownLanguageError, match="not go"):
        engine.infill(InfillRequest(GO, GO.index("return ") + 7, GO.index("return ") + 7, path="main.go"))
    with pytest.raises(UnknownLanguageError):  # the languageId names it too
        engine.infill(InfillRequest(GO, 0, 0, language="go"))
    # a request's own languages (the language server's setting) and a language without a grammar
    at = GO.index("return ") + 7
    assert engine.infill(InfillRequest(GO, at, at, path="main.go"), options=InfillOptions(languages=("go",)))
    assert engine.infill(InfillRequest("some notes\n", 5, 5, path="notes.txt")).start == 5
    everything = Engine(EngineConfig(model=str(python_only), library="none", languages="all"))
    assert everything.info()["languages"] == list(GRAMMAR_NAMES)


def test_a_family_checkpoint_that_lists_no_languages_serves_every_grammar(tmp_path):
    with quiet_loading():
        folder = init_model(tmp_path / "dream", "dream-coder-7b", tiny=True)
    assert "languages" not in json.loads((folder / "config.json").read_text())
    engine = Engine(EngineConfig(model=str(folder), library="none"))
    assert engine.info()["languages"] == list(GRAMMAR_NAMES)
    at = TS.index("return ") + 7
    assert engine.infill(InfillRequest(TS, at, at, path="app.ts")).start == at


def test_a_languages_setting_is_checked():
    assert parse_setting("Python, typescriptreact") == ("python", "tsx")
    assert parse_setting(["all"]) == GRAMMAR_NAMES
    with pytest.raises(DiffillError, match="unknown language 'cobol'"):
        parse_setting("python,cobol")
    assert parse_setting(["markdown", "python"], strict=False) == ("python",)
