"""``diffill serve``: the language server, over stdio (for editors) or TCP (for debugging)."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace

from diffill.commands.common import DEVICES, non_negative_int, path_text
from diffill.errors import DiffillError


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the language server (LSP over stdio)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio (debugging)")
    p.add_argument("--model", type=path_text, default=None, help="checkpoint folder (default: the shipped model); "
                                                  "the client's diffill.model setting wins when set")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="torch threads for the model (default 0: torch's choice)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where the model runs (default auto); the client's diffill.device setting wins when set")
    p.add_argument("--log-file", default=None, help="write the server's log here (default: stderr)")
    p.set_defaults(run=run)


def _host_port(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DiffillError(f"bad --tcp {spec!r}: expected HOST:PORT, e.g. 127.0.0.1:2087")
    return host, int(port)


def run(args) -> int:
    address = _host_port(args.tcp) if args.tcp else None
    from diffill.lsp_server.worker import pause_collection

    pause_collection()  # until the engine has loaded
    root = logging.getLogger()
    if args.log_file:
        try:
            handler = logging.FileHandler(args.log_file, encoding="utf-8")
        except OSError as e:
            raise DiffillError(f"cannot write the log file {args.log_file}: {e.strerror or e}") from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.handlers[:] = [handler]
    sys.setswitchinterval(0.001)  # the event loop gets the GIL back quickly while the model runs

    from diffill.lsp_server.server import build_server

    server = build_server(model=args.model, threads=args.threads)
    server.host.settings = replace(server.host.settings, device=args.device)
    if address:
        server.start_tcp(*address)
    else:
        from diffill.lsp_server.framing import FramedStdin

        # the unbuffered stream beneath: the framing reads what has arrived, never blocks for more
        server.start_io(stdin=FramedStdin(getattr(sys.stdin.buffer, "raw", sys.stdin.buffer)))
    # pygls' stdin reader thread may still block on a read: leave without waiting for it.
    # Exit code as LSP says: 0 after shutdown + exit, 1 when exit came without shutdown.
    code = 0 if server.shut_down else 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # pygls closes stdout on exit
            pass
    logging.shutdown()
    os._exit(code)
