"""The languages a model serves: the ones it was trained on, which its checkpoint's config.json lists
(``"languages": ["python"]``, written by ``diffill train`` and the export for the project's own
model), or, where it lists none, every language the grammar registry knows. A setting (``--languages``,
the language server's ``languages``) overrides them. A file in a language the model was not trained
on gets no fill: a small model fills it with guesses shaped like the code it knows.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffill.errors import DiffillError, UnknownLanguageError
from diffill.grammar.registry import GRAMMAR_NAMES, by_extension, by_language_id

ALL = "all"  # a setting that serves every language

__all__ = ["ALL", "UnknownLanguageError", "checkpoint_languages", "language_name", "parse_setting", "refusal",
           "served", "serves"]


def language_name(language_id: str | None = None, path: str | None = None) -> str | None:
    """The grammar name of a request's language (its LSP languageId first, else its path's
    extension); None when the registry knows neither."""
    found = by_language_id(language_id) if language_id else None
    if found is None and path:
        found = by_extension(path)
    return found.name if found is not None else None


def checkpoint_languages(folder: str | Path) -> tuple[str, ...] | None:
    """The ``languages`` list of a checkpoint folder's config.json; None when it has none (or no
    readable config: its loading says what is wrong)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    found = config.get("languages") if isinstance(config, dict) else None
    if not isinstance(found, list) or not all(isinstance(x, str) for x in found) or not found:
        return None
    return tuple(x.strip().lower() for x in found)


def served(model: str | Path | None, setting: str | list[str] | tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The languages a model folder (None: the shipped model) is served for: ``setting`` when given
    (``parse_setting``), else the ones its config.json lists, else every language with a grammar."""
    from diffill.model.loading import DEFAULT_CHECKPOINT

    return parse_setting(setting) or checkpoint_languages(Path(model) if model else DEFAULT_CHECKPOINT) or GRAMMAR_NAMES


def parse_setting(names: str | list[str] | tuple[str, ...] | None, strict: bool = True) -> tuple[str, ...] | None:
    """A languages setting as grammar names: None (the model's own), ``"all"`` (every language the
    registry knows), or names and LSP languageIds, comma-separated or listed. A name the registry
    does not know is an error, or with ``strict`` off (an editor's list of languageIds) skipped."""
    if names is None:
        return None
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [x.strip().lower() for x in items if x.strip()]
    if ALL in items:
        return GRAMMAR_NAMES
    out = []
    for item in items:
        name = language_name(item)
        if name is None and strict:
            raise DiffillError(f"unknown language {item!r} (known: {', '.join(GRAMMAR_NAMES)}, or {ALL})")
        if name is not None:
            out.append(name)
    return tuple(dict.fromkeys(out))


def serves(languages: tuple[str, ...], name: str | None) -> bool:
    """Whether ``languages`` covers a request in language ``name``; a language the registry does not
    know (None) is served as before, without the syntax constraint. TSX goes with TypeScript."""
    if name is None:
        return True
    return name in languages or (name == "tsx" and "typescript" in languages)


def refusal(languages: tuple[str, ...], name: str) -> str:
    """What a refused request is told: what the model knows, and how to fill it anyway."""
    return (f"the model was trained on {', '.join(languages)} only, not {name}: its fill would be a guess "
            f"shaped like {languages[0] if len(languages) == 1 else 'those languages'}; to fill it anyway pass "
            f"--languages {','.join((*languages, name))} (language server: the diffill.languages setting)")
