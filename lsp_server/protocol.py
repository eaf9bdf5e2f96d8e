"""pygls protocol with diffill's own rules:

- positions are always UTF-16 (the LSP default), whatever encodings the client offers;
- documents live in the server's own store (LSP line endings, clear errors), not pygls' workspace;
- a request whose parameters do not match the LSP types is answered with InvalidParams, and its
  text says what is wrong (pygls would log it and never answer);
- each request's time from arrival to answer is measured, for ``diffill.status`` and the bench.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any

import attrs
from cattrs.errors import BaseValidationError
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import RPCRequest
from pygls.protocol.language_server import lsp_method

log = logging.getLogger(__name__)

# the ExecuteCommandParams of the command being run (commands get only their arguments)
command_params: contextvars.ContextVar[types.ExecuteCommandParams | None] = contextvars.ContextVar(
    "command_params", default=None)


class AnsweredErrors(logging.Filter):
    """pygls logs every error reply a handler raises (a position outside the document, a document
    never opened) with its whole traceback, as if the server had failed. Those are answers: one
    line each; an unexpected exception keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, JsonRpcException):
            record.msg, record.args, record.exc_info, record.exc_text = f"answered with an error: {error}", (), None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("pygls.protocol.json_rpc").addFilter(AnsweredErrors())


@attrs.define
class MalformedRequest:
    id: Any
    method: str
    message: str


class _TimedWriter:
    """Calls this thread's pending ``before(now)`` hook just before a write."""

    def __init__(self, writer, times: threading.local):
        self._writer, self._times = writer, times

    def write(self, data: bytes):
        before = getattr(self._times, "before", None)
        if before is not None:
            self._times.before = None
            try:
                before(time.perf_counter())
            except Exception:  # timing must never cost an answer
                log.exception("recording an answer's time failed")
        return self._writer.write(data)

    def close(self):
        return self._writer.close()

    def __getattr__(self, name):
        return getattr(self._writer, name)


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    if isinstance(cause, BaseValidationError):
        from cattrs import transform_error

        return "; ".join(transform_error(cause))
    return str(cause) or type(cause).__name__


class DiffillProtocol(LanguageServerProtocol):
    def __init__(self, server, converter):
        super().__init__(server, converter)
        self.diffill_server = server  # records each answer's time (``record_answer``)
        self._arrivals: dict[Any, tuple[str, float]] = {}  # requests not answered yet
        self._answered_early: set[Any] = set()
        self._answer_lock = threading.Lock()
        self._write_times = threading.local()

    # -- messages --------------------------------------------------------------------------

    def structure_message(self, data: dict[str, Any]):
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and isinstance(data.get("method"), str):
                return MalformedRequest(data["id"], data["method"], _describe(exc))
            raise

    def handle_message(self, message):
        if isinstance(message, MalformedRequest):
            log.warning("malformed %s request: %s", message.method, message.message)
            # pygls has no public way to answer a request it could not read: its private sender
            self._send_response(message.id, error=types.ResponseError(
                code=types.ErrorCodes.InvalidParams,
                message=f"invalid parameters for {message.method}: {message.message}"))
            return
        if isinstance(message, RPCRequest):
            self._arrivals[message.id] = (message.method, time.perf_counter())
        super().handle_message(message)

    # every answer, from pygls or the worker, passes here: pygls has no public hook on sending one
    def _send_response(self, msg_id, result=None, error=None):
        with self._answer_lock:
            if msg_id in self._answered_early:  # the worker answered already: this is the same answer
                self._answered_early.discard(msg_id)
                return
            self._answer(msg_id, result, error)

    def answer_from_worker(self, msg_id, result) -> bool:
        """Answer a request from the engine's thread the moment its result exists. The handler's own
        answer, sent later from the event loop, is then dropped. False if it was answered already
        (cancelled, for example)."""
        with self._answer_lock:
            if msg_id not in self._arrivals:
                return False
            self._answered_early.add(msg_id)
            self._answer(msg_id, result, None)
            return True

    def is_waiting(self, msg_id) -> bool:
        """The request has not been answered yet."""
        return msg_id in self._arrivals

    def _answer(self, msg_id, result, error) -> None:
        arrival = self._arrivals.pop(msg_id, None)
        if arrival is not None:
            # "answer out" is when the bytes go to the OS (a write that wakes the client may hand it
            # the CPU at once, and that wait is not the server's); it is recorded before the write,
            # so a request the client sends after reading this answer sees it
            method, t0 = arrival
            self._write_times.before = lambda now: self.diffill_server.record_answer(
                msg_id, method, (now - t0) * 1000.0, error is None)
        try:  # pygls' own sender (private): the one that knows each request's result type
            super()._send_response(msg_id, result, error)
        finally:
            self._write_times.before = None

    def set_writer(self, writer, include_headers: bool = True):
        super().set_writer(_TimedWriter(writer, self._write_times), include_headers)

    # -- built-in features -----------------------------------------------------------------

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        if params.capabilities.general is not None:
            params.capabilities.general.position_encodings = None  # UTF-16, the LSP default
        return (yield from super().lsp_initialize(params))

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None

    @lsp_method(types.WORKSPACE_EXECUTE_COMMAND)
    def lsp_workspace__execute_command(self, params: types.ExecuteCommandParams):
        command_params.set(params)
        return (yield from super().lsp_workspace__execute_command(params))
