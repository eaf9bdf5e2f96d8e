import os

import pytest

from diffill.errors import DiffillError
from diffill.refactor.files import FileFilter, Skipped, collect_files, read_snapshot


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "src" / "b.js").write_text("let x = 1;\n")
    (tmp_path / "src" / "c.go").write_text("package c\n")
    (tmp_path / "src" / "notes.txt").write_text("hello\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "gen.py").write_text("y = 2\n")
    (tmp_path / "src" / "skip_me.py").write_text("z = 3\n")
    (tmp_path / ".gitignore").write_text("build/\n*_me.py\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "hook.py").write_text("h = 1\n")
    return tmp_path


def names(found):
    return sorted(os.path.basename(p) for p, _ in found)


def test_walk_finds_source_files_and_respects_gitignore(tree):
    found, skipped = collect_files([str(tree)], FileFilter())
    assert names(found) == ["a.py", "b.js", "c.go"]
    assert dict((os.path.basename(p), lang) for p, lang in found) == {
        "a.py": "python", "b.js": "javascript", "c.go": "go"}
    assert skipped == []
    found, _ = collect_files([str(tree)], FileFilter(gitignore=False))
    assert names(found) == ["a.py", "b.js", "c.go", "gen.py", "skip_me.py"]


def test_gitignore_above_the_given_folder_applies_inside_a_repository(tree):
    found, _ = collect_files([str(tree / "src")], FileFilter())
    assert names(found) == ["a.py", "b.js", "c.go"]


def test_language_and_glob_filters(tree):
    assert names(collect_files([str(tree)], FileFilter(langs={"python", "go"}))[0]) == ["a.py", "c.go"]
    assert names(collect_files([str(tree)], FileFilter(include=["*.js"]))[0]) == ["b.js"]
    assert names(collect_files([str(tree)], FileFilter(exclude=["src/a.py", "*.go"]))[0]) == ["b.js"]


def test_explicit_files_and_unknown_languages(tree):
    found, skipped = collect_files([str(tree / "src" / "a.py"), str(tree / "src" / "notes.txt")], FileFilter())
    assert names(found) == ["a.py"]
    assert skipped == [Skipped(str(tree / "src" / "notes.txt"), "unknown language")]


def test_the_same_file_twice_is_read_once(tree):
    found, _ = collect_files([str(tree / "src"), str(tree / "src" / "a.py")], FileFilter())
    assert names(found) == ["a.py", "b.js", "c.go"]


def test_symbolic_links_are_never_followed_out_of_the_tree(tree, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.py").write_text("s = 1\n")
    os.symlink(outside / "secret.py", tree / "src" / "link.py")
    os.symlink(outside, tree / "src" / "linkdir")
    found, skipped = collect_files([str(tree / "src")], FileFilter())
    assert names(found) == ["a.py", "b.js", "c.go"]
    _, skipped = collect_files([str(tree / "src" / "link.py")], FileFilter())
    assert skipped[0].reason.startswith("symbolic link")


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(DiffillError, match="no such file"):
        collect_files([str(tmp_path / "nope")], FileFilter())


def test_binary_and_non_utf8_files_are_skipped_with_a_reason(tmp_path):
    (tmp_path / "bin.py").write_bytes(b"x = 1\x00\x01\n")
    (tmp_path / "latin.py").write_bytes(b"s = '\xe9t\xe9'\n")
    (tmp_path / "ok.py").write_bytes("s = 'été'\r\n".encode())
    assert read_snapshot(str(tmp_path / "bin.py"), "python") == Skipped(str(tmp_path / "bin.py"), "binary file")
    assert "not valid UTF-8" in read_snapshot(str(tmp_path / "latin.py"), "python").reason
    snap = read_snapshot(str(tmp_path / "ok.py"), "python")
    assert snap.text == "s = 'été'\r\n" and snap.size == len("s = 'été'\r\n".encode())
