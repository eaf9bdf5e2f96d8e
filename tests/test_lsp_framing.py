"""The language server's input framing (lsp_server/framing.py): a bound on one message's size, and
resynchronisation after a message whose Content-Length is wrong or missing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from diffill.lsp_server.framing import SKIPPED, FramedStdin


def test_a_body_over_the_limit_is_read_past_and_the_next_message_is_intact(caplog):
    raw = io.BytesIO(b'{"a":1}' + b"x" * 93 + b"Content-Length: 2\r\n\r\n{}")
    stdin = FramedStdin(raw, limit=10)
    assert stdin.read(7) == b'{"a":1}'  # within the limit: as it is
    assert stdin.read(93) == SKIPPED and json.loads(SKIPPED)["method"].startswith("$/")  # no server handles it
    assert "over the 10-byte limit" in caplog.text
    assert stdin.readline() == b"Content-Length: 2\r\n" and stdin.readline() == b"\r\n" and stdin.read(2) == b"{}"


def test_a_body_longer_than_the_input_ends_the_input(caplog):
    stdin = FramedStdin(io.BytesIO(b"short"), limit=3)
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


def frame(obj, delta: int = 0, length: bool = True) -> bytes:
    """A message whose Content-Length is ``delta`` bytes off (or missing)."""
    body = json.dumps(obj).encode()
    head = b"Content-Length: %d\r\n" % (len(body) + delta) if length else b"Content-Type: x\r\n"
    return head + b"\r\n" + body


def request(n: int, method: str = "workspace/executeCommand") -> dict:
    params = {"command": "diffill.status", "arguments": []} if method.startswith("workspace") else None
    return {"jsonrpc": "2.0", "id": n, "method": method, "params": params}


def messages(stdin: FramedStdin) -> list:
    """What pygls' loop makes of the input: the bodies after each header block, parsed."""
    out, length = [], 0
    while line := stdin.readline():
        if line.startswith(b"Content-Length: "):
            length = int(line.split(b":")[1])
        elif line == b"\r\n" and length:
            out.append(json.loads(stdin.read(length)))
            length = 0
    return out


def test_short_long_and_missing_lengths_lose_only_what_they_must(caplog):
    data = (frame(request(1)) + frame(request(2), delta=-5) + frame(request(3)) + frame(request(4), delta=7)
            + frame(request(5)) + frame(request(6), length=False) + frame(request(7)))
    got = messages(FramedStdin(io.BytesIO(data)))
    ids = [m.get("id") for m in got]
    # short and long lengths are repaired; a body with no length cannot be found, but the next one is
    assert ids == [1, 2, 3, 4, 5, 7]
    assert got[1] == request(2) and got[3] == request(4)
    assert "shorter than its Content-Length" in caplog.text and "longer than its Content-Length" in caplog.text


def test_garbage_before_a_header_is_dropped_and_a_body_that_is_not_json_is_skipped():
    data = b"garbage" + frame(request(1)) + b"Content-Length: 5\r\n\r\nnope!" + frame(request(2))
    stdin = FramedStdin(io.BytesIO(data))
    assert stdin.readline() == b"Content-Length: %d\r\n" % len(json.dumps(request(1)))
    stdin.readline()
    assert json.loads(stdin.read(len(json.dumps(request(1)))))["id"] == 1
    assert stdin.readline() == b"Content-Length: 5\r\n" and stdin.readline() == b"\r\n"
    assert stdin.read(5) == SKIPPED
    assert [m["id"] for m in messages(stdin)] == [2]


def test_a_long_length_with_nothing_more_sent_is_answered_without_waiting_for_more(tmp_path):
    """The client sends one request whose length is too long and waits for its answer: the server
    must not wait for bytes that will never come (a real pipe, not an in-memory stream)."""
    r, w = os.pipe()
    os.write(w, frame(request(1), delta=40))
    stdin = FramedStdin(os.fdopen(r, "rb", buffering=0))
    assert messages_until(stdin, 1) == [request(1)]
    os.close(w)


def messages_until(stdin: FramedStdin, n: int) -> list:
    out, length = [], 0
    while len(out) < n and (line := stdin.readline()):
        if line.startswith(b"Content-Length: "):
            length = int(line.split(b":")[1])
        elif line == b"\r\n" and length:
            out.append(json.loads(stdin.read(length)))
    return out


def test_the_server_answers_after_wrong_lengths_and_ends_on_shutdown_and_exit(tiny_checkpoint, tmp_path):
    """A length 5 bytes short, one 7 bytes long and one missing used to leave the server deaf for
    good: nothing answered, ``shutdown`` and ``exit`` ignored."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"processId": None, "rootUri": None, "capabilities": {}}}
    data = (frame(init) + frame({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            + frame(request(2), delta=-5) + frame(request(3), delta=7) + frame(request(4), length=False)
            + frame(request(5)) + frame(request(6, "shutdown"))
            + frame({"jsonrpc": "2.0", "method": "exit", "params": None}))
    log = tmp_path / "server.log"
    proc = subprocess.run(
        [sys.executable, "-m", "diffill.cli", "serve", "--model", str(tiny_checkpoint), "--threads", "1",
         "--log-file", str(log)], input=data, capture_output=True, timeout=120)
    answered = {json.loads(body).get("id") for body in bodies(proc.stdout)}
    assert {1, 2, 3, 5, 6} <= answered, (answered, log.read_text()[-2000:])
    assert proc.returncode == 0  # shutdown, then exit


def bodies(out: bytes) -> list[bytes]:
    """The message bodies the server wrote, by their Content-Length headers."""
    found = []
    while (at := out.find(b"Content-Length: ")) >= 0:
        head_end = out.index(b"\r\n\r\n", at)
        length = int(out[at + 16 : out.index(b"\r\n", at)])
        found.append(out[head_end + 4 : head_end + 4 + length])
        out = out[head_end + 4 + length :]
    return found
