"""Which files a refactoring run reads: the given paths walked, filtered by language, include and
exclude globs and ``.gitignore``; never a file outside them, never through a symbolic link."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pathspec

from diffill.errors import DiffillError
from diffill.refactor.syntax import language_for_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """A file as it was read: its text and what tells whether it changed since."""

    path: str
    lang: str
    text: str
    digest: str  # sha256 of the bytes read
    size: int
    mtime_ns: int


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _globs(patterns: Iterable[str]) -> pathspec.PathSpec | None:
    patterns = [p for p in patterns if p]
    return pathspec.PathSpec.from_lines("gitignore", patterns) if patterns else None


class _GitIgnore:
    """``.gitignore`` files from the repository's top (or the walked root) down to each folder."""

    def __init__(self, root: Path):
        self.top = root
        for d in [root, *root.parents]:
            if (d / ".git").exists():
                self.top = d
                break
        self._specs: dict[Path, pathspec.GitIgnoreSpec | None] = {}

    def _spec(self, folder: Path) -> pathspec.GitIgnoreSpec | None:
        if folder not in self._specs:
            f = folder / ".gitignore"
            spec = None
            if f.is_file():
                try:
                    spec = pathspec.GitIgnoreSpec.from_lines(f.read_text(encoding="utf-8", errors="replace").splitlines())
                except (OSError, ValueError) as e:  # a broken .gitignore ignores nothing
                    log.warning("cannot use %s: %s", f, e)
            self._specs[folder] = spec
        return self._specs[folder]

    def ignored(self, path: Path, is_dir: bool) -> bool:
        """The deepest ``.gitignore`` with a matching pattern decides, as in git."""
        folder = path.parent
        chain = []
        while True:
            chain.append(folder)
            if folder == self.top or folder == folder.parent:
                break
            folder = folder.parent
        for folder in chain:
            spec = self._spec(folder)
            if spec is None:
                continue
            rel = path.relative_to(folder).as_posix() + ("/" if is_dir else "")
            result = spec.check_file(rel)
            if result.include is not None:
                return bool(result.include)
        return False


@dataclass
class FileFilter:
    langs: set[str] | None = None  # languageIds; None: every known language
    include: list[str] | None = None  # gitignore-style globs a file must match (relative to its root)
    exclude: list[str] | None = None  # globs a file must not match
    gitignore: bool = True

    def __post_init__(self):
        self._include = _globs(self.include or [])
        self._exclude = _globs(self.exclude or [])

    def wants(self, rel: str, lang: str | None) -> bool:
        if lang is None or (self.langs is not None and lang not in self.langs):
            return False
        if self._include is not None and not self._include.match_file(rel):
            return False
        return not (self._exclude is not None and self._exclude.match_file(rel))


def collect_files(paths: list[str], filt: FileFilter) -> tuple[list[tuple[str, str]], list[Skipped]]:
    """``(path, languageId)`` for every source file under ``paths`` that passes ``filt``, and the
    given paths that cannot be used. A missing path is a DiffillError."""
    found: dict[Path, tuple[str, str]] = {}
    skipped: list[Skipped] = []
    for given in paths:
        p = Path(given)
        if p.is_symlink():
            skipped.append(Skipped(given, "symbolic link (not followed)"))
            continue
        if not p.exists():
            raise DiffillError(f"no such file or folder: {given}")
        if p.is_file():
            lang = language_for_path(p)
            if lang is None:
                skipped.append(Skipped(given, "unknown language"))
            elif filt.wants(p.name, lang):
                found.setdefault(p.resolve(), (given, lang))
            continue
        if not p.is_dir():
            skipped.append(Skipped(given, "not a regular file"))
            continue
        root = p.resolve()
        ignore = _GitIgnore(root) if filt.gitignore else None
        for folder, dirs, files in os.walk(root, followlinks=False):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if d != ".git" and not (here / d).is_symlink()
                             and not (ignore and ignore.ignored(here / d, True)))
            for name in sorted(files):
                f = here / name
                if f.is_symlink() or not f.is_file():
                    continue
                rel = f.relative_to(root).as_posix()
                if not filt.wants(rel, language_for_path(f)) or (ignore and ignore.ignored(f, False)):
                    continue
                found.setdefault(f, (str(p / rel), language_for_path(f) or ""))
    return list(found.values()), skipped


def read_snapshot(path: str, lang: str) -> Snapshot | Skipped:
    """The file's text and fingerprint, or why it is skipped (unreadable, binary, not UTF-8)."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
    except OSError as e:
        return Skipped(path, f"cannot read: {e.strerror}")
    if b"\x00" in data:
        return Skipped(path, "binary file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return Skipped(path, f"not valid UTF-8 (byte {e.start})")
    return Snapshot(path, lang, text, digest(data), st.st_size, st.st_mtime_ns)
