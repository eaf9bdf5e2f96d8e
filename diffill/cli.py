"""The ``diffill`` command line. Each subcommand lives in ``diffill/commands/<name>.py``.

Exit codes: 0 success, 1 partial failure (some regions failed), 2 bad input or a missing resource,
130 after Ctrl-C and 143 after SIGTERM (both stop the command the same way: no file is left half
written), 141 (as a shell reports SIGPIPE) when whoever reads stdout closed it early (``| head``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

from diffill.errors import DiffillError

COMMANDS = ["infill", "corpus", "index", "train", "evaluate", "bench", "refactor", "adapt", "adapt_base", "serve",
            "calibrate", "init_model"]
# the command names whose module in diffill/commands is named otherwise
MODULE_OF = {"eval": "evaluate", "adapt-base": "adapt_base", "init-model": "init_model"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that the same clean-up runs."""


_MAIN_PID = os.getpid()


def _terminate(signum, frame):
    if os.getpid() != _MAIN_PID:  # a forked worker: die as SIGTERM asks, its parent cleans up
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    raise Terminated


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2
        self.exit(2, f"diffill: error: {message}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``only`` (a module of ``COMMANDS``) that command alone: a
    command's run then imports none of the others' modules (`diffill serve` starts sooner)."""
    parser = _Parser(prog="diffill", description="Code infilling by masked diffusion.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS if only is None else [only]:
        importlib.import_module(f"diffill.commands.{name}").register(sub)
    return parser


def command_module(argv: list[str]) -> str | None:
    """The module of the command ``argv`` names (its first word that is not an option), if any."""
    word = next((a for a in argv if not a.startswith("-")), None)
    module = MODULE_OF.get(word, word)
    return module if module in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(command_module(argv)).parse_args(argv)
    except SystemExit as e:  # a usage error (2, message printed) or --help (0): a code, in-process too
        return e.code if isinstance(e.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    handles = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if handles else None
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except DiffillError as e:
        print(f"diffill: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("diffill: terminated" if isinstance(e, Terminated) else "diffill: interrupted", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if handles:
            signal.signal(signal.SIGTERM, previous)


def _stdout_closed() -> int:
    """stdout's reader went away (``diffill ... | head``): stop quietly, as the Python docs' "Note on
    SIGPIPE" says: point stdout at devnull so that the flush at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file behind sys.stdout (captured in-process)
        pass
    return 141


if __name__ == "__main__":
    sys.exit(main())
