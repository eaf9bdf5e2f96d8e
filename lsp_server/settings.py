"""The server's settings: initializationOptions and workspace/didChangeConfiguration (section
``diffill``). Unknown keys are ignored; a bad value is reported and the old value kept."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from diffill.confidence import MIN_CONFIDENCE
from diffill.precision import DEVICES

SECTION = "diffill"
MAX_TOKENS_LIMIT = 1024
MAX_BEAM = 16


@dataclass(frozen=True)
class Settings:
    model: str | None = None  # checkpoint folder; None: the shipped default
    adapter: str | None = None  # adapter folder, "shipped", "none", or None: the workspace's, else none
    use_workspace_adapter: bool = True
    max_tokens: int | None = None  # canvas budget; None: by cursor context
    threshold: float = 0.9  # confidence needed to commit a token in a denoising step
    beam: int | None = None  # candidates a one-line hole is searched with; 0: threshold decoding; None: the engine's
    constraint: bool = True  # tree-sitter syntax constraint
    languages: tuple[str, ...] | None = None  # enabled LSP languageIds; None: all
    index_workspace: bool = True  # fills copy from the workspace folders' source files
    # completions (ghost text and items) only for fills at least this confident (the estimated
    # probability that a fill is exactly right, diffill.confidence); 0: every fill
    min_confidence: float = MIN_CONFIDENCE
    device: str = "auto"  # cpu | cuda | auto: where the model runs (auto: a GPU for the open families)
    # build a request's context on the last requests' where only text near the cursor changed;
    # None: the engine's setting
    context_reuse: bool | None = None

    def enabled_for(self, language_id: str) -> bool:
        return self.languages is None or language_id in self.languages


def _path(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str) and v.strip():
        return v.strip()
    raise ValueError("expected a folder path (a non-empty string) or null")


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError("expected true or false")


def _bool_or_null(v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    raise ValueError("expected true, false or null")


def _int_or_null(low: int, high: int):
    def parse(v: Any) -> int | None:
        if v is None:
            return None
        if isinstance(v, int) and not isinstance(v, bool) and low <= v <= high:
            return v
        raise ValueError(f"expected an integer from {low} to {high}, or null")

    return parse


_max_tokens = _int_or_null(1, MAX_TOKENS_LIMIT)
_beam = _int_or_null(0, MAX_BEAM)


def _threshold(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0:
        return float(v)
    raise ValueError("expected a number from 0 to 1")


def _device(v: Any) -> str:
    if v in DEVICES:
        return v
    raise ValueError(f"expected one of {', '.join(DEVICES)}")


def _languages(v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, list) and all(isinstance(x, str) and x for x in v):
        return tuple(v)
    raise ValueError("expected a list of languageIds (strings), or null")


# JSON key -> (field, parser)
_KEYS = {
    "model": ("model", _path),
    "adapter": ("adapter", _path),
    "useWorkspaceAdapter": ("use_workspace_adapter", _bool),
    "indexWorkspace": ("index_workspace", _bool),
    "maxTokens": ("max_tokens", _max_tokens),
    "threshold": ("threshold", _threshold),
    "minConfidence": ("min_confidence", _threshold),
    "beam": ("beam", _beam),
    "constraint": ("constraint", _bool),
    "languages": ("languages", _languages),
    "device": ("device", _device),
    "contextReuse": ("context_reuse", _bool_or_null),
}


def section_of(raw: Any) -> Any:
    """The ``diffill`` section of a settings object; a bare section is accepted as it is."""
    if isinstance(raw, dict) and isinstance(raw.get(SECTION), dict):
        return raw[SECTION]
    return raw


def merge(old: Settings, raw: Any) -> tuple[Settings, list[str]]:
    """Settings with every valid known key of ``raw`` applied, and one message per rejected value."""
    raw = section_of(raw)
    if raw is None:
        return old, []
    if not isinstance(raw, dict):
        return old, [f"diffill settings must be an object, got {type(raw).__name__}; keeping the old settings"]
    changes: dict[str, Any] = {}
    problems = []
    for key, value in raw.items():
        if key not in _KEYS:
            continue
        name, parse = _KEYS[key]
        try:
            changes[name] = parse(value)
        except ValueError as e:
            problems.append(f"diffill setting {key}={value!r} ignored: {e}; keeping {getattr(old, name)!r}")
    return replace(old, **changes), problems
