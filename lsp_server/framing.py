"""The server's stdin as pygls reads it, with a bound on one message's size.

pygls reads a message's body with ``stdin.read(Content-Length)``: a client that sends a huge or
garbled length (``Content-Length: 99999999999``) made that one call allocate the whole buffer and
kill the server with a MemoryError. Here a body over ``MAX_MESSAGE_BYTES`` is read past in chunks
(in step with the stream, in constant memory) and handed on as a notification no server handles,
so the next message is read as usual; the skip is logged.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 2**20  # a whole document of a few megabytes is far below it
_CHUNK = 2**20
SKIPPED = json.dumps({"jsonrpc": "2.0", "method": "$/diffill/skippedMessage"}).encode()


class BoundedStdin:
    """A binary stream whose ``read(n)`` refuses bodies over ``limit`` bytes (see above)."""

    def __init__(self, raw, limit: int = MAX_MESSAGE_BYTES):
        self.raw, self.limit = raw, limit

    def readline(self, *args) -> bytes:
        return self.raw.readline(*args)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n <= self.limit:
            return self.raw.read(n)
        left = n
        while left:
            got = self.raw.read(min(left, _CHUNK))
            if not got:  # the stream ended first: nothing to hand on
                log.error("a message of %d bytes (Content-Length) is over the %d-byte limit, and the input "
                          "ended %d bytes into it", n, self.limit, n - left)
                return b""
            left -= len(got)
        log.error("a message of %d bytes (Content-Length) is over the %d-byte limit: read past and skipped",
                  n, self.limit)
        return SKIPPED

    def __getattr__(self, name):
        return getattr(self.raw, name)
