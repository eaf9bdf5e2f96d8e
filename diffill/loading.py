"""Engines built from the options every model-using front end shares (``--model``, ``--adapter``,
``--dtype``, ``--no-copy``, ``--library``), for the CLI's commands and the benchmarks alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine (torch) loads only when one is built
    from diffill.engine import Engine, EngineConfig

SHARED = ("model", "adapter", "dtype", "device", "copy", "library", "languages")  # EngineConfig fields the shared options set


def engine_config_from(options: Any, **changes: Any) -> EngineConfig:
    """An EngineConfig from ``options``' shared attributes (``SHARED``; absent ones keep their
    defaults), then ``changes``. Every context is encoded whole unless ``changes`` say otherwise:
    a command's requests have no typing history, and context reuse (an approximation) would make a
    fill depend on the requests filled before it."""
    from diffill.engine import EngineConfig

    given = {k: getattr(options, k) for k in SHARED if hasattr(options, k)}
    return EngineConfig(**{"context_reuse": False, **given, **changes})


def make_engine(config: EngineConfig) -> Engine:
    """An Engine for one process (module-level, so that worker processes can build their own)."""
    from diffill.engine import Engine

    return Engine(config)
