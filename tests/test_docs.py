"""The user documentation says what the code does: the README opens with the set-up commands, its
tables of commands and settings name what the CLI and the language server accept, with the
server's real defaults, and every relative link points to a file of the repository."""

import re
from dataclasses import fields

import pytest
from conftest import REPO

from diffill.cli import build_parser
from diffill.lsp_server.settings import _KEYS, Settings

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]


def _rows(text: str, header_start: str) -> list[list[str]]:
    """The body rows of the markdown table whose header row starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
        rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


def _subcommands(parser) -> dict:
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices


def _command(words: list[str]):
    """The argparse parser of ``diffill WORDS...`` (as far as the words name subcommands)."""
    parser = build_parser()
    for word in words:
        subs = _subcommands(parser) if any(a.__class__.__name__ == "_SubParsersAction" for a in parser._actions) else {}
        if word not in subs:
            break
        parser = subs[word]
    return parser


def test_readme_opens_with_the_two_set_up_commands_and_stays_short():
    text = README.read_text()
    assert len(text.encode()) <= 12_000
    lines = text.splitlines()
    assert lines[0].startswith("# ") and lines[1] == "" and lines[2] == "```sh"
    assert lines[3].startswith("make run ") and lines[4].startswith("make test ") and lines[5] == "```"


def test_readme_command_table_names_real_commands_and_options():
    rows = _rows(README.read_text(), "| command |")
    assert rows
    for command_cell, meaning in rows:
        for command in re.findall(r"`(diffill [^`]+)`", command_cell):
            words = command.split()[1:]
            variants = words[1].split("|") if len(words) > 1 and "|" in words[1] else [None]
            for variant in variants:
                names = [w for w in words[1:] if re.fullmatch(r"[a-z][a-z-]*", w)]
                path = [words[0]] + ([variant] if variant else names)
                parser = _command(path)
                assert parser.prog.split()[1:] == path, command
                for option in re.findall(r"`(--[a-z-]+)", command_cell + meaning):
                    assert option in parser._option_string_actions, f"{command}: {option}"


@pytest.mark.parametrize("command", [["infill"], ["refactor"], ["eval", "heldout"], ["eval", "compare"],
                                     ["eval", "humaneval-infill"], ["bench", "speed"], ["bench", "refactor"]])
def test_the_model_options_the_readme_lists_are_accepted(command):
    parser = _command(command)
    options = ("--adapter", "--dtype", "--no-copy", "--library")
    if command != ["eval", "compare"]:  # compare takes its models as arguments
        options += ("--model",)
    for option in options:
        assert option in parser._option_string_actions, (command, option)


def _json_value(cell: str):
    if len(cell) > 1 and cell[0] == cell[-1] == '"':  # a string setting's default
        return cell[1:-1]
    return {"null": None, "true": True, "false": False}.get(cell, cell)


@pytest.mark.parametrize("page", ["README.md", "docs/language-server.md"])
def test_settings_tables_list_every_server_setting_with_its_default(page):
    rows = _rows((REPO / page).read_text(), "| name | type | default | meaning |")
    defaults = {f.name: f.default for f in fields(Settings)}
    documented = {}
    for name, _type, default, _meaning in rows:
        key = name.strip("`")
        value = _json_value(default)
        if isinstance(value, str) and not default.startswith('"'):
            value = float(value)
        documented[key] = value
    assert set(documented) == set(_KEYS)
    for key, value in documented.items():
        assert defaults[_KEYS[key][0]] == value, key


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_files_of_the_repository(page):
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        assert (page.parent / target).resolve().exists(), f"{page.name}: {target}"
