"""The workspace's source files as a token cache that fills copy from (model/ngram.py).

The editor's workspace folders are read as ``diffill adapt`` collects a repository (git-tracked
files, or what ``.gitignore`` leaves; no binary, vendored or generated files), up to a character
budget. Files change on disk while the editor runs (a save, a ``git checkout``, a formatter):
``refresh`` brings the changed files' copies in line, so fills do not copy lines that are gone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from diffill.adapters.sources import LANGUAGES, collect_sources, source_files
from diffill.model.ngram import TokenCache, Without

log = logging.getLogger(__name__)

# the characters of the workspace's source files read (in sorted path order): tokenizing and
# indexing cost about 5 ms per 10,000 characters, so at most about 1 s
WORKSPACE_CHARS = 2_000_000
# the files whose changes on disk an editor reports (an LSP file watcher's glob): the source files
WATCHED = "**/*.{" + ",".join(sorted(ext.lstrip(".") for ext in LANGUAGES)) + "}"


class WorkspaceCopy:
    """The token streams of the source files under some folders, one stream a file."""

    def __init__(self, tok, folders: list[str], budget: int = WORKSPACE_CHARS):
        self.tok, self.budget = tok, budget
        self.roots: list[Path] = []
        self.files: dict[str, int] = {}  # resolved path -> its stream
        self.chars: dict[int, int] = {}  # stream -> its file's characters
        self.cache = TokenCache.for_tokenizer(tok)
        texts: list[str] = []
        for folder in folders:
            try:
                found = collect_sources(folder, max_chars=budget - sum(self.chars.values())).files
            except OSError as e:
                log.warning("cannot index the workspace folder %s: %s", folder, e)
                continue
            self.roots.append(Path(folder).resolve())
            for f in found:
                self.files[str((Path(folder) / f.path).resolve())] = len(texts)
                self.chars[len(texts)] = len(f.text)
                texts.append(f.text)
        if texts:
            self.cache.extend(tok.encode_batch(texts))

    def summary(self) -> dict:
        return {"files": sum(1 for n in self.chars.values() if n), "tokens": len(self.cache)}

    def without(self, path: str | None):
        """The cache, less the stream of the file at ``path`` (its saved copy of a document being
        edited, whose text the hole's own context already has)."""
        own = self.files.get(str(Path(path).resolve())) if path else None
        return Without(self.cache, own) if own is not None else self.cache

    def refresh(self, paths: list[str]) -> dict:
        """Re-read these files (saved, created, deleted or changed on disk): a known file's stream
        is replaced (emptied when it is gone or no longer a source file); a new source file under a
        workspace folder joins while the budget allows. Returns {"updated", "added", "removed"}."""
        done = {"updated": 0, "added": 0, "removed": 0}
        wanted = list(dict.fromkeys(str(Path(p).resolve()) for p in paths))
        for root in self.roots:
            mine = [p for p in wanted if Path(p).is_relative_to(root)]
            wanted = [p for p in wanted if p not in mine]
            for path, found in source_files(root, mine).items() if mine else ():
                stream = self.files.get(path)
                if stream is not None:
                    self.cache.replace(stream, self.tok.encode(found.text) if found else [])
                    self.chars[stream] = len(found.text) if found else 0
                    done["updated" if found else "removed"] += 1
                    if not found:
                        del self.files[path]
                elif found and sum(self.chars.values()) + len(found.text) <= self.budget:
                    self.files[path] = self.cache.streams
                    self.chars[self.cache.streams] = len(found.text)
                    self.cache.extend([self.tok.encode(found.text)])
                    done["added"] += 1
        return done
