"""The language server's bound on one message's size (lsp_server/framing.py)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from lsp_server.framing import SKIPPED, BoundedStdin


def test_a_body_over_the_limit_is_read_past_and_the_next_message_is_intact(caplog):
    raw = io.BytesIO(b"x" * 100 + b"Content-Length: 2\r\n\r\n{}")
    stdin = BoundedStdin(raw, limit=10)
    assert stdin.read(5) == b"xxxxx"  # within the limit: as it is
    assert stdin.read(95) == SKIPPED and json.loads(SKIPPED)["method"].startswith("$/")  # no server handles it
    assert "over the 10-byte limit" in caplog.text
    assert stdin.readline() == b"Content-Length: 2\r\n" and stdin.readline() == b"\r\n" and stdin.read(2) == b"{}"


def test_a_body_longer_than_the_input_ends_the_input(caplog):
    stdin = BoundedStdin(io.BytesIO(b"short"), limit=3)
    assert stdin.read(10**11) == b""  # as at the end of the input: pygls stops reading
    assert "ended 5 bytes into it" in caplog.text


def test_the_server_survives_a_huge_content_length(tiny_checkpoint, tmp_path):
    """Before the bound, ``Content-Length: 99999999999`` killed the server with a MemoryError."""

    def frame(obj) -> bytes:
        body = json.dumps(obj).encode()
        return b"Content-Length: %d\r\n\r\n" % len(body) + body

    init = frame({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"processId": None, "rootUri": None, "capabilities": {}}})
    log = tmp_path / "server.log"
    proc = subprocess.run(
        [sys.executable, "-m", "diffill.cli", "serve", "--model", str(tiny_checkpoint), "--threads", "1",
         "--log-file", str(log)],
        input=b"Content-Length: 99999999999\r\n\r\n" + init, capture_output=True, timeout=120)
    assert b"Traceback" not in proc.stderr and "MemoryError" not in log.read_text()
    assert "over the" in log.read_text() and "ended" in log.read_text()
    assert proc.returncode == 1  # the input ended without shutdown and exit, as LSP says
