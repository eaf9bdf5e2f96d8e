"""The server's stdin as pygls reads it: bounded, and resynchronised after a wrongly framed message.

pygls reads a header line with ``readline()`` and a body with ``read(Content-Length)``. Two kinds
of bad input used to break it for good:

- a huge or garbled length (``Content-Length: 99999999999``) made one call allocate the whole
  buffer: a body over ``MAX_MESSAGE_BYTES`` is now read past in chunks, in constant memory, and
  handed on as a notification no server handles;
- a length a few bytes short or long left the reader out of step: the rest of the body, or the
  start of the next header, was glued to the following lines, and no later message was read.
  Now a body that is not one whole JSON value is cut at the value's end (a long length: the
  surplus goes back to the input) or completed from the bytes already sent (a short one), and
  a header line with other bytes before ``Content-Length:`` has them dropped, so the next
  message is read as usual. Each repair is logged.
"""

from __future__ import annotations

import json
import logging
import re
import select

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 2**20  # a whole document of a few megabytes is far below it
_CHUNK = 2**20
SKIPPED = json.dumps({"jsonrpc": "2.0", "method": "$/diffill/skippedMessage"}).encode()
_HEADER = re.compile(rb"[A-Za-z][A-Za-z0-9-]*: [^\r\n]*\r\n")
_LENGTH = b"Content-Length:"
_REST_WAIT_S = 0.5  # how long a short body waits for bytes its sender has not written yet
_DECODER = json.JSONDecoder()


def _ready(raw, timeout: float) -> bool:
    """Whether ``raw`` has bytes to read (or has ended) within ``timeout`` seconds."""
    try:
        fd = raw.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream: never blocks
        return True
    return bool(select.select([fd], [], [], timeout)[0])


def _json_end(body: bytes) -> int | None:
    """The byte length of the JSON value at the start of ``body``, or None if it is not one."""
    text = body.decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip())
    try:
        _, end = _DECODER.raw_decode(text, start)
    except ValueError:
        return None
    return len(text[:end].encode("utf-8", "surrogateescape"))


class FramedStdin:
    """A binary stream with pygls' ``readline()`` and ``read(n)`` over an unbuffered one (``raw``:
    ``read(n)`` returns what is there, ``b""`` at the end), repairing framing as described above."""

    def __init__(self, raw, limit: int = MAX_MESSAGE_BYTES):
        self.raw, self.limit = raw, limit
        self.buf = bytearray()
        self.ended = False

    def _fill(self, wait: float | None = None) -> bool:
        """Read more of the input into the buffer; False at its end, or when ``wait`` seconds pass."""
        if self.ended or (wait is not None and not _ready(self.raw, wait)):
            return False
        data = self.raw.read(_CHUNK)
        if not data:
            self.ended = True
            return False
        self.buf += data
        return True

    def _take(self, n: int) -> bytes:
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def readline(self, *args) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            if not self._fill():
                return self._header(self._take(len(self.buf)))
        return self._header(self._take(end + 1))

    def _header(self, line: bytes) -> bytes:
        at = line.find(_LENGTH)
        if at > 0:
            log.error("skipped %d bytes before a message header (a wrongly framed message)", at)
            return line[at:]
        if line in (b"", b"\r\n") or _HEADER.fullmatch(line):
            return line
        log.error("skipped %d bytes that are not a message header", len(line))
        return line  # pygls ignores a line it cannot read as a header

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            while self._fill():
                pass
            return self._take(len(self.buf))
        if n > self.limit:
            return self._skip(n)
        while len(self.buf) < n:
            if self._fill(wait=_REST_WAIT_S):
                continue
            end = None if self.ended else _json_end(bytes(self.buf))
            if end is not None and not self.buf[end:].strip():  # whole, and no more is coming
                log.error("a message was %d bytes shorter than its Content-Length: read as it is",
                          n - len(self.buf))
                return self._take(len(self.buf))[:end]
            if not self._fill():
                break
        return self._body(self._take(n))

    def _skip(self, n: int) -> bytes:
        left = n
        while left:
            if not self.buf and not self._fill():  # the input ended first: nothing to hand on
                log.error("a message of %d bytes (Content-Length) is over the %d-byte limit, and the input "
                          "ended %d bytes into it", n, self.limit, n - left)
                return b""
            left -= len(self._take(min(left, len(self.buf))))
        log.error("a message of %d bytes (Content-Length) is over the %d-byte limit: read past and skipped",
                  n, self.limit)
        return SKIPPED

    def _body(self, body: bytes) -> bytes:
        """``body`` when it is one JSON value; else that value with the surplus given back to the
        input (the length was long), or completed up to the next header (the length was short)."""
        whole = body[:1] == b"{" and body.rstrip()[-1:] == b"}"
        if whole and (not self.buf or self.buf.startswith(_LENGTH)):
            return body  # the usual case: no second parse
        end = _json_end(body)
        if end is not None:
            surplus = body[end:]
            if surplus.strip():
                log.error("a message was %d bytes shorter than its Content-Length: the rest is read as "
                          "the next message", len(surplus))
                self.buf[:0] = surplus
            return body[:end]
        if not body:
            return body
        more = 0
        while len(body) < self.limit:
            at = self.buf.find(_LENGTH)
            if at >= 0 or self.buf:
                part = self._take(at if at >= 0 else len(self.buf))
                body, more = body + part, more + len(part)
                if _json_end(body) is not None or at >= 0:
                    break
            if not self._fill(wait=_REST_WAIT_S):
                break
        end = _json_end(body)
        if end is not None and more:
            log.error("a message was %d bytes longer than its Content-Length: read to its end", more)
            if body[end:].strip():
                self.buf[:0] = body[end:]
            return body[:end]
        log.error("a message body of %d bytes is not JSON: skipped", len(body))
        return SKIPPED

    def __getattr__(self, name):
        return getattr(self.raw, name)
