"""Bad command-line values: one ``diffill: error: ...`` line and exit code 2, caught while the
arguments are parsed (before any model loads), never a traceback; a closed stdout ends quietly."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from diffill.cli import build_parser, command_module, main
from conftest import REPO


def usage_error(capsys, argv: list[str]) -> str:
    """Run ``diffill ARGV`` in-process; it must exit 2 with one error line naming the option."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("diffill: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", [
    ["eval", "heldout"],
    ["bench", "speed"],
    ["bench", "validity"],
    ["bench", "refactor"],
    ["adapt", "."],
])
def test_a_negative_seed_is_a_usage_error(capsys, command):
    err = usage_error(capsys, [*command, "--seed", "-1"])
    assert "argument --seed: expected an integer of at least 0, got '-1'" in err


@pytest.mark.parametrize("command, threads", [
    (["bench", "refactor"], "-1"),
    (["bench", "lsp"], "-1"),
    (["bench", "lsp"], "0"),
    (["bench", "speed"], "0"),
    (["bench", "validity"], "-2"),
    (["serve"], "-1"),
    (["bench", "speed"], "two"),
])
def test_a_thread_count_out_of_range_is_a_usage_error(capsys, command, threads):
    err = usage_error(capsys, [*command, "--threads", threads])
    assert "argument --threads: expected an integer of at least" in err


def test_good_values_still_parse():
    parse = build_parser().parse_args
    assert parse(["serve", "--threads", "0"]).threads == 0  # torch's default
    assert parse(["bench", "refactor", "--threads", "0", "--seed", "3"]).threads == 0
    speed = parse(["bench", "speed", "--threshold", "1", "--kinds", "multi_line,", "--settings", " threshold"])
    assert speed.threshold == 1.0 and speed.kinds == ["multi_line"] and speed.settings == ["threshold"]
    assert parse(["bench", "speed"]).kinds == ["single_line", "mid_word", "multi_line"]
    assert parse(["bench", "lsp", "--max-tokens", "1024"]).max_tokens == 1024
    assert parse(["refactor", ".", "--holes", "--lang", "python,go", "--lang", "javascript"]).lang == [
        ["python", "go"], ["javascript"]]


@pytest.mark.parametrize("where", ["missing", "folder"])
def test_serve_log_file_that_cannot_be_written(tmp_path, capsys, where):
    path = tmp_path / "no" / "such" / "x.log" if where == "missing" else tmp_path
    err = usage_error(capsys, ["serve", "--log-file", str(path)])
    assert f"cannot write the log file {path}" in err


@pytest.mark.parametrize("png", [["--png", "none"], [], ["--png", "FOLDER"]])
def test_bench_report_to_a_folder_writes_nothing(tmp_path, capsys, png):
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder if png != ["--png", "FOLDER"] else tmp_path / "report.html"
    argv = ["bench", "report", str(out), "--no-run", *[str(folder) if a == "FOLDER" else a for a in png]]
    err = usage_error(capsys, argv)
    assert f"{folder} is a folder" in err
    assert list(folder.iterdir()) == [] and not (tmp_path / "report.html").exists()


def test_bench_report_png_without_a_folder(tmp_path, capsys):
    err = usage_error(capsys, ["bench", "report", str(tmp_path / "r.html"), "--no-run",
                               "--png", str(tmp_path / "no" / "plot.png")])
    assert "no folder for the PNG" in err and not (tmp_path / "r.html").exists()


CLOSED_STDOUT = textwrap.dedent("""
    import sys
    from diffill import cli
    from diffill.commands import refactor

    def run(args):  # a command with much to print, no model needed
        for _ in range(20000):
            sys.stdout.write("+" * 99 + "\\n")
        return 0

    refactor.run = run
    sys.exit(cli.main(["refactor", ".", "--holes"]))
""")


def test_a_closed_stdout_ends_quietly():
    """``diffill refactor DIR --holes | head -c 10``: no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-c", CLOSED_STDOUT], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # as `head -c 10` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""


def test_a_closed_stdout_in_process(monkeypatch, capsys):
    from diffill.commands import refactor

    def run(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(refactor, "run", run)
    assert main(["refactor", ".", "--holes"]) == 141
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv, message", [
    (["refactor", ".", "--holes", "--lang", ",,"], "argument --lang: ',,' names no language"),
    (["refactor", ".", "--holes", "--lang", "cobol"], "argument --lang: unknown language 'cobol'"),
    (["bench", "speed", "--kinds", ""], "argument --kinds: expected at least one kind"),
    (["bench", "speed", "--kinds", "paragraph"], "argument --kinds: unknown kind 'paragraph'"),
    (["bench", "speed", "--settings", ","], "argument --settings: expected at least one setting"),
    (["bench", "speed", "--threshold", "5"], "argument --threshold: expected a number from 0 to 1, got '5'"),
    (["bench", "speed", "--threshold", "nan"], "argument --threshold: expected a number from 0 to 1"),
    (["bench", "speed", "--threshold", "-0.1"], "argument --threshold: expected a number from 0 to 1"),
    (["bench", "lsp", "--max-tokens", "0"], "argument --max-tokens: expected an integer from 1 to 1024"),
    (["bench", "lsp", "--max-tokens", "1025"], "argument --max-tokens: expected an integer from 1 to 1024"),
])
def test_values_that_select_nothing_or_are_out_of_range(capsys, argv, message):
    assert message in usage_error(capsys, argv)


def test_a_binary_file_in_a_corpus_folder(tmp_path):
    from diffill.errors import DiffillError
    from diffill.evaluation import heldout_texts

    (tmp_path / "good.py").write_text("x = 1\n", encoding="utf-8")
    (tmp_path / "blob.py").write_bytes(b"x = 1\n\x00\x00binary\n")
    with pytest.raises(DiffillError, match="blob.py looks binary"):
        heldout_texts(tmp_path)


@pytest.mark.parametrize("argv,message", [
    (["eval", "heldout", "--beam", "-1"], "argument --beam: expected an integer of at least 0"),
    (["eval", "heldout", "--cases", "0"], "argument --cases: expected an integer of at least 1"),
    (["eval", "compare", "default", "--cases", "0"], "argument --cases: expected an integer of at least 1"),
])
def test_eval_counts_are_checked_before_a_model_loads(capsys, argv, message):
    assert message in usage_error(capsys, argv)


@pytest.mark.parametrize("argv", [
    ["infill", "x.py", "--at", "1:1", "--model", ""],
    ["infill", "x.py", "--at", "1:1", "--adapter", ""],
    ["infill", "x.py", "--at", "1:1", "--library", " "],
    ["eval", "heldout", "--model", ""],
])
def test_an_empty_path_is_a_usage_error_not_the_current_folder(capsys, argv):
    assert "expected a path, got an empty string" in usage_error(capsys, argv)


def test_each_command_parses_alike_when_its_module_is_registered_alone():
    whole = build_parser()
    commands = next(a for a in whole._actions if a.dest == "command").choices
    for name in commands:
        module = command_module(["-v", name, "--help"])
        alone = build_parser(module)
        assert list(next(a for a in alone._actions if a.dest == "command").choices) == [name]
        assert commands[name].format_help() == next(
            a for a in alone._actions if a.dest == "command").choices[name].format_help()
    assert command_module(["--verbose"]) is None and command_module(["no-such-command"]) is None
    assert main(["no-such-command"]) == 2  # the whole command line then says what there is
