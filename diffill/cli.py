"""The ``diffill`` command line. Each subcommand lives in ``diffill/commands/<name>.py``.

Exit codes: 0 success, 1 partial failure (some regions failed), 2 bad input or a missing resource.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from diffill.errors import DiffillError

COMMANDS = ["infill", "corpus", "index", "train", "evaluate", "bench", "refactor", "adapt", "adapt_base", "serve"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        self.exit(2, f"diffill: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="diffill", description="Code infilling by masked diffusion.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"diffill.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except DiffillError as e:
        print(f"diffill: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diffill: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
