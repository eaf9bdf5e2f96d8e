"""Options every model-using command shares: ``--model PATH``, ``--adapter PATH|none``, ``--dtype``;
and argparse ``type=`` checks of numbers, so that a bad value is a usage error (exit 2)."""

from __future__ import annotations

import argparse
import math

from diffill.precision import DEVICES, DTYPES

ADAPTER_HELP = ("LoRA adapter folder merged into the model, 'shipped' for the shipped infill adapter, "
                "or 'none' (default: none, the bare model)")


def int_between(low: int, high: int | None = None):
    """An argparse ``type``: an integer from ``low`` to ``high`` (no upper bound when None)."""
    wanted = f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    return parse


non_negative_int = int_between(0)  # seeds; thread counts where 0 means torch's default
positive_int = int_between(1)


def path_text(text: str) -> str:
    """An argparse ``type``: a path that is not empty (``Path("")`` would be the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def fraction(text: str) -> float:
    """An argparse ``type``: a number from 0 to 1 (a confidence threshold, as the LSP setting)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def add_adapter_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", type=path_text, default="none", metavar="PATH|shipped|none",
                        help=ADAPTER_HELP)


def add_dtype_option(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` and ``--device``: the model's precision and where it runs."""
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="inference weights (default auto: bfloat16 where the CPU has native bf16 kernels, "
                             "else float32; always bfloat16 on a GPU)")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="where the model runs (default auto: a CUDA GPU when there is one for the open "
                             "families of docs/models.md; the shipped model stays on the CPU unless cuda is named)")


def add_copy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-copy", dest="copy", action="store_false",
                        help="fill holes by the model alone, without continuations copied from the rest of the "
                             "file and a workspace adapter's repository (model/ngram.py)")
    add_library_option(parser)


def add_library_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--library", type=path_text, default="default", metavar="PATH|none",
                        help="library index to copy from as well (model/library_index.py; default: the one "
                             "`diffill index` builds, when it exists)")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model PATH``, ``--adapter PATH|none``, ``--dtype`` and ``--no-copy``."""
    parser.add_argument("--model", type=path_text, default=None, metavar="PATH",
                        help="checkpoint folder (default: the shipped model)")
    add_adapter_option(parser)
    add_dtype_option(parser)
    add_copy_option(parser)
    add_languages_option(parser)


def add_languages_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--languages", default=None, metavar="LANG,...|all",
                        help="languages to fill (default: those the model was trained on, from its config.json; "
                             "a checkpoint that lists none fills every language with a grammar)")


def check_training_budget(minutes: float | None, steps: int | None, cases: int) -> None:
    """Usage errors of the training commands' ``--minutes``, ``--steps`` and ``--cases``."""
    from diffill.errors import DiffillError

    if minutes is not None and minutes <= 0:
        raise DiffillError("--minutes must be positive")
    if steps is not None and steps < 1:
        raise DiffillError("--steps must be at least 1")
    if cases < 1:
        raise DiffillError("--cases must be at least 1")
