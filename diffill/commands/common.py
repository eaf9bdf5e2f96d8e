"""Options every model-using command shares: ``--model PATH`` and ``--adapter PATH|none``."""

from __future__ import annotations

import argparse

ADAPTER_HELP = ("LoRA adapter folder merged into the model, or 'none' for the bare base "
                "(default: the shipped infill adapter, when it exists and fits the model)")


def add_adapter_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", default="default", metavar="PATH|none", help=ADAPTER_HELP)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model PATH`` and ``--adapter PATH|none``."""
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="checkpoint folder (default: the shipped model)")
    add_adapter_option(parser)


def engine_config_from_args(args: argparse.Namespace, **changes):
    """An EngineConfig from ``--model`` / ``--adapter`` (absent options keep their defaults)."""
    from diffill.engine import EngineConfig

    return EngineConfig(model=getattr(args, "model", None), adapter=getattr(args, "adapter", "default"),
                        **changes)
