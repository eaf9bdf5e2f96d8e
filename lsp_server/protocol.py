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


@attrs.define
class MalformedRequest:
    id: Any
    method: str
    message: str


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    if isinstance(cause, BaseValidationError):
        from cattrs import transform_error

        return "; ".join(transform_error(cause))
    return str(cause) or type(cause).__name__


class DiffillProtocol(LanguageServerProtocol):
    def __init__(self, server, converter):
        super().__init__(server, converter)
        self._arrivals: dict[Any, tuple[str, float]] = {}

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
            self._send_response(message.id, error=types.ResponseError(
                code=types.ErrorCodes.InvalidParams,
                message=f"invalid parameters for {message.method}: {message.message}"))
            return
        if isinstance(message, RPCRequest):
            self._arrivals[message.id] = (message.method, time.perf_counter())
        super().handle_message(message)

    def _send_response(self, msg_id, result=None, error=None):
        super()._send_response(msg_id, result, error)
        arrival = self._arrivals.pop(msg_id, None)
        if arrival is not None:
            method, t0 = arrival
            self._server.record_answer(msg_id, method, (time.perf_counter() - t0) * 1000.0, error is None)

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
