"""The diffill language server (pygls 2): one handler per LSP feature, each a few lines that
translate the request, call the engine through the worker, and turn the result into an answer.

Capabilities: incremental sync, textDocument/inlineCompletion, textDocument/completion (the
infill as a textEdit), textDocument/codeAction ("Infill selection (diffill)"), and the commands
``diffill.infill`` ({uri, range}: regenerate, apply with workspace/applyEdit, $/progress per step,
cancellable) and ``diffill.status``. Saved documents (textDocument/didSave) and files changed on
disk (workspace/didChangeWatchedFiles, a watcher registered where the client allows) are read
again into the workspace index that fills copy from.

The engine, its settings and its bookkeeping live in the engine host (``lsp_server/host.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import default_converter
from pygls.uris import to_fs_path

from diffill import __version__
from diffill.errors import DiffillError, UnknownLanguageError
from diffill.lsp_server.cache import Hole
from diffill.lsp_server.documents import Document, DocumentStore
from diffill.lsp_server.host import EngineHost
from diffill.lsp_server.protocol import DiffillProtocol, command_params
from diffill.lsp_server.worker import Job
from diffill.words import typed_part

if TYPE_CHECKING:
    from diffill.engine import InfillResult, Progress

log = logging.getLogger(__name__)

INFILL_COMMAND = "diffill.infill"
STATUS_COMMAND = "diffill.status"
ACCEPTED_COMMAND = "diffill.accepted"  # run by the editor when ghost text is accepted
INFILL_TITLE = "Infill selection (diffill)"
REQUEST_FAILED = -32803  # LSP ErrorCodes.RequestFailed
COMPLETION_METHODS = {types.TEXT_DOCUMENT_INLINE_COMPLETION, types.TEXT_DOCUMENT_COMPLETION}
NEIGHBOR_DOCUMENTS = 8  # other open documents a fill may copy from, the last opened first
NEIGHBOR_MAX_CHARS = 1_000_000  # larger ones are left out
CONVERTER = default_converter()  # LSP types to and from JSON (command arguments)


def invalid_params(message: str) -> JsonRpcException:
    return JsonRpcException(message, code=types.ErrorCodes.InvalidParams)


def request_failed(message: str) -> JsonRpcException:
    return JsonRpcException(message, code=REQUEST_FAILED)


class DiffillServer(LanguageServer):
    """The protocol side: documents, positions and answers; the engine lives in ``host``."""

    def __init__(self, model: str | None = None, threads: int = 0):
        super().__init__("diffill", __version__, protocol_cls=DiffillProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.docs = DocumentStore()
        self.host = EngineHost(self, self.workspace_folders, model=model, threads=threads)
        self.shut_down = False  # the client asked for shutdown (exit then leaves with 0)

    def shutdown(self) -> None:
        """As pygls', without waiting for the stdin reader thread (it may block on a read until the
        client closes the pipe): `diffill serve` exits right after."""
        # pygls has no public way to stop without joining its reader thread: its own fields, as in its shutdown
        if self._stop_event is not None:
            self._stop_event.set()
        if self._thread_pool:
            self._thread_pool.shutdown(wait=False, cancel_futures=True)
        if self._server:
            self._server.close()
        self.host.worker.stop()

    # -- messages to the user --------------------------------------------------------------

    def log_message(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        log.log(logging.WARNING if kind.value <= types.MessageType.Warning.value else logging.INFO, "%s", message)
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def show_message(self, message: str, kind: types.MessageType) -> None:
        self.log_message(message, kind)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    # -- the workspace ---------------------------------------------------------------------

    def workspace_folders(self) -> list[str]:
        """The workspace folders' paths (then the root's), each once; none before initialization."""
        try:
            uris = [f.uri for f in self.workspace.folders.values()]
            if self.workspace.root_uri:
                uris.append(self.workspace.root_uri)
        except RuntimeError:  # not initialized yet
            return []
        paths = [to_fs_path(uri) for uri in uris]
        return list(dict.fromkeys(p for p in paths if p))

    async def watch_files(self) -> None:
        """Ask the client to report changes to source files on disk, where it allows the
        registration (VS Code and Neovim do)."""
        from diffill.workspace import WATCHED

        workspace = self.client_capabilities.workspace
        watched = workspace.did_change_watched_files if workspace is not None else None
        if watched is None or not watched.dynamic_registration:
            return
        options = types.DidChangeWatchedFilesRegistrationOptions(watchers=[types.FileSystemWatcher(glob_pattern=WATCHED)])
        try:
            await self.client_register_capability_async(types.RegistrationParams(registrations=[types.Registration(
                id=str(uuid.uuid4()), method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES, register_options=options)]))
        except Exception as e:  # the client refused: saves in the editor still refresh the index
            self.log_message(f"diffill: the client did not watch files for the workspace index: {e}",
                             types.MessageType.Warning)

    # -- requests --------------------------------------------------------------------------

    def document(self, uri: str) -> Document:
        try:
            return self.docs.get(uri)
        except DiffillError as e:
            raise invalid_params(str(e)) from None

    def offsets(self, doc: Document, rng: types.Range) -> tuple[int, int]:
        try:
            start = doc.offset_at(rng.start.line, rng.start.character)
            end = doc.offset_at(rng.end.line, rng.end.character)
        except DiffillError as e:
            raise invalid_params(str(e)) from None
        if end < start:
            raise invalid_params(f"range {rng.start.line}:{rng.start.character}-{rng.end.line}:{rng.end.character} "
                                 "ends before it starts")
        return start, end

    async def complete(self, uri: str, position: types.Position,
                       answer: Callable[[list[tuple[str, dict]], types.Position], Any]) -> Any:
        """``answer(infills, position)`` for the cursor: the infill and the beam search's
        runners-up, likeliest first, each with its confidence (``notes``); [] when there is none or
        the infill is less confident than the minConfidence setting (the position is normalised). When the
        model runs, the worker sends the answer itself as soon as the engine returns (no wait for
        the event loop to be scheduled); the loop's identical answer is then dropped by the
        protocol."""
        host = self.host
        doc = self.document(uri)
        pos = types.Position(position.line, position.character)
        rng = types.Range(pos, pos)
        start, _ = self.offsets(doc, rng)
        line, character = doc.position_at(start)
        pos = types.Position(line, character)
        if host.refusal(doc.language_id, to_fs_path(uri)) is not None:
            return answer([], pos)
        hole, extra, version = Hole.at(doc.text, start), host.cache_key(doc.language_id), doc.version
        cached = host.cache.lookup(hole, extra)
        if cached is not None:
            host.counters.cache_hits += 1
            return answer(cached, pos)
        msg_id = self.protocol.msg_id

        def answer_now(result: InfillResult, job: Job) -> None:  # in the worker thread
            if msg_id is None or result.cancelled:
                return
            host.cache.put(hole, extra, choices(result), notes(result))
            if self.docs_version(uri) == version:
                host.timings.pending_engine_ms[msg_id] = (job.engine_ms, (job.started - job.submitted) * 1000.0)
                if not self.protocol.answer_from_worker(msg_id, answer(scored(result), pos)):
                    host.timings.pending_engine_ms.pop(msg_id, None)  # answered already (cancelled)

        result = await self.infill(doc, start, start, kind="complete", max_tokens=host.settings.max_tokens,
                                   after=answer_now)
        if result is not None:
            host.cache.put(hole, extra, choices(result), notes(result))  # still good for forwarding after the edit
        if self.docs_version(uri) != version:
            host.counters.stale_dropped += 1
            return answer([], pos)
        return answer(scored(result) if result is not None else [], pos)

    def docs_version(self, uri: str) -> int | None:
        return self.docs.get(uri).version if uri in self.docs else None

    async def infill(self, doc: Document, start: int, end: int, kind: str, **given: Any) -> InfillResult | None:
        """``host.infill`` for ``doc``, copying from the other open documents; a failure is an LSP
        error (RequestFailed), and the answer's engine time is noted for the request's timing."""
        # one-line and longer fills copy from the other open documents too (model/ngram.py)
        neighbors = self.docs.others(doc.uri, NEIGHBOR_DOCUMENTS, NEIGHBOR_MAX_CHARS)
        try:
            result, job = await self.host.infill(doc, start, end, kind, neighbors, **given)
        except UnknownLanguageError as e:  # asked before the model had loaded (refusal knew no languages)
            if kind != "complete":
                raise request_failed(str(e)) from None
            from diffill.languages import language_name

            self.host.refused_language(language_name(doc.language_id, to_fs_path(doc.uri)) or doc.language_id, str(e))
            return None
        except DiffillError as e:
            raise request_failed(str(e)) from None
        msg_id = self.protocol.msg_id
        if msg_id is not None and self.protocol.is_waiting(msg_id):  # not answered by the worker
            self.host.timings.handed_back(msg_id, job)
        return result

    def record_answer(self, msg_id: Any, method: str, total_ms: float, ok: bool) -> None:
        self.host.timings.record(msg_id, total_ms, method in COMPLETION_METHODS and ok)

    def status(self) -> dict:
        return self.host.status(documents=len(self.docs))


# -- handlers ------------------------------------------------------------------------------


def on_initialize(ls: DiffillServer, params: types.InitializeParams) -> None:
    ls.host.initialized_at = time.perf_counter()
    ls.host.update_settings(params.initialization_options)


async def on_initialized(ls: DiffillServer, params: types.InitializedParams) -> None:
    ls.host.ensure_engine()
    await ls.watch_files()


async def on_did_change_configuration(ls: DiffillServer, params: types.DidChangeConfigurationParams) -> None:
    raw = params.settings
    workspace = ls.client_capabilities.workspace
    if raw is None and workspace is not None and workspace.configuration:  # pull model
        try:
            (raw,) = await ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="diffill")]))
        except Exception as e:
            ls.log_message(f"diffill: could not read the diffill settings: {e}", types.MessageType.Warning)
            return
    ls.host.update_settings(raw)


def on_did_change_workspace_folders(ls: DiffillServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    ls.host.ensure_engine()
    ls.host.ensure_index()


def on_did_open(ls: DiffillServer, params: types.DidOpenTextDocumentParams) -> None:
    d = params.text_document
    ls.docs.open(d.uri, d.text, d.version, d.language_id)


def on_did_change(ls: DiffillServer, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    if uri not in ls.docs:
        ls.log_message(f"diffill: change to {uri}, which is not open; ignored", types.MessageType.Warning)
        return
    doc = ls.docs.get(uri)
    try:
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                rng = change.range
                doc.apply_change((rng.start.line, rng.start.character), (rng.end.line, rng.end.character), change.text)
            else:
                doc.apply_change(None, None, change.text)
    except DiffillError as e:
        ls.log_message(f"diffill: bad change to {uri}: {e}; the server's copy may now differ",
                       types.MessageType.Error)
    doc.version = params.text_document.version
    ls.host.cancel(uri)  # its answer would be stale: stop denoising now


def on_did_save(ls: DiffillServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.host.refresh_index([p for p in [to_fs_path(params.text_document.uri)] if p])


def on_did_change_watched_files(ls: DiffillServer, params: types.DidChangeWatchedFilesParams) -> None:
    ls.host.refresh_index([p for p in (to_fs_path(c.uri) for c in params.changes) if p])


def on_did_close(ls: DiffillServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.host.cancel(uri)
    ls.docs.close(uri)


def choices(result: InfillResult) -> list[str]:
    """What the user may pick from: the infill, then the runners-up (none when the infill is empty:
    none was found, or it was less confident than the request's minimum)."""
    return [result.text, *result.alternatives] if result.text else []


def notes(result: InfillResult) -> list[dict]:
    """Each of ``choices``' confidence, as an item's data: {"confidence", "calibrated"}."""
    confidences = [result.confidence, *result.alternative_confidences] if result.text else []
    return [{"confidence": round(c, 4), "calibrated": result.confidence_calibrated} for c in confidences]


def scored(result: InfillResult) -> list[tuple[str, dict]]:
    return list(zip(choices(result), notes(result)))


def inline_answer(infills: list[tuple[str, dict]], pos: types.Position) -> types.InlineCompletionList:
    """Ghost text. An inline item has no data field: its confidence rides on the command the
    editor runs when the item is accepted (``diffill.accepted``, which counts acceptances)."""
    return types.InlineCompletionList(items=[
        types.InlineCompletionItem(insert_text=t, range=types.Range(pos, pos),
                                   command=types.Command(title="diffill: accepted", command=ACCEPTED_COMMAND,
                                                         arguments=[note]))
        for t, note in infills])


async def on_inline_completion(ls: DiffillServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    return await ls.complete(params.text_document.uri, params.position, inline_answer)


async def on_completion(ls: DiffillServer, params: types.CompletionParams) -> types.CompletionList:
    uri, position = params.text_document.uri, params.position
    language, typed, start = "", "", None
    if uri in ls.docs:
        doc = ls.docs.get(uri)
        language = doc.language_id
        try:
            offset = doc.offset_at(position.line, position.character)
        except DiffillError:  # a position outside the document: ``complete`` answers that
            offset = None
        if offset is not None and (typed := typed_part(doc.text, offset)):
            start = types.Position(*doc.position_at(offset - len(typed)))
    return await ls.complete(uri, position,
                             lambda infills, pos: completion_answer(infills, pos, language, typed, start))


def completion_answer(infills: list[tuple[str, dict]], pos: types.Position, language: str, typed: str = "",
                      start: types.Position | None = None) -> types.CompletionList:
    return types.CompletionList(is_incomplete=True, items=[completion_item(t, pos, language, rank, typed, start, note)
                                                           for rank, (t, note) in enumerate(infills)])


def completion_item(text: str, pos: types.Position, language: str, rank: int, typed: str = "",
                    start: types.Position | None = None, note: dict | None = None) -> types.CompletionItem:
    """An infill as a completion item. At a cursor inside a word (``typed``: its part before the
    cursor, from ``start``) the item replaces the typed part with it and the rest, as completion
    items do, so that the editor's filter matches it (``proc`` -> ``process_item(x)``, not
    ``ess_item(x)``)."""
    whole = typed + text
    first = next((line.strip() for line in whole.split("\n") if line.strip()), whole.strip())
    return types.CompletionItem(
        label=first[:80] or whole,
        kind=types.CompletionItemKind.Snippet,
        detail="diffill",
        documentation=types.MarkupContent(types.MarkupKind.Markdown, f"```{language}\n{whole}\n```"),
        sort_text=f"{rank:02d}",  # the likeliest first
        preselect=rank == 0,
        filter_text=first[:80] or whole,
        insert_text_format=types.InsertTextFormat.PlainText,
        text_edit=types.TextEdit(range=types.Range(start or pos, pos), new_text=whole),
        data=note,  # {"confidence", "calibrated"}
    )


def on_code_action(ls: DiffillServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    doc = ls.document(params.text_document.uri)
    start, end = ls.offsets(doc, params.range)
    only = params.context.only if params.context else None
    kind = types.CodeActionKind.RefactorRewrite
    if start == end or ls.host.refusal(doc.language_id, to_fs_path(doc.uri)) is not None:
        return []
    if only and not any(kind.value == k or kind.value.startswith(f"{k}.") for k in only):
        return []
    arg = {"uri": doc.uri, "range": CONVERTER.unstructure(params.range)}
    return [types.CodeAction(title=INFILL_TITLE, kind=kind,
                             command=types.Command(title=INFILL_TITLE, command=INFILL_COMMAND, arguments=[arg]))]


def _infill_argument(ls: DiffillServer, args: tuple) -> tuple[str, types.Range]:
    usage = f"{INFILL_COMMAND} takes one argument {{uri, range}}"
    if len(args) != 1 or not isinstance(args[0], dict):
        raise invalid_params(f"{usage}, got {len(args)} argument(s)")
    arg = args[0]
    if not isinstance(arg.get("uri"), str):
        raise invalid_params(f"{usage}: uri must be a string")
    try:
        rng = CONVERTER.structure(arg.get("range"), types.Range)
    except Exception:
        raise invalid_params(f"{usage}: range must be {{start: {{line, character}}, end: {{line, character}}}}") from None
    return arg["uri"], rng


async def on_infill_command(ls: DiffillServer, *args: Any) -> dict:
    uri, rng = _infill_argument(ls, args)
    doc = ls.document(uri)
    start, end = ls.offsets(doc, rng)
    refused = ls.host.refusal(doc.language_id, to_fs_path(doc.uri))
    if refused is not None:
        raise request_failed(refused)
    version = doc.version
    progress = InfillProgress(ls, command_params.get())
    await progress.begin()
    try:
        result = await ls.infill(doc, start, end, kind="region", on_progress=progress.step,
                                 cancel_hook=progress.hook)
    except BaseException:
        progress.end("failed")
        raise
    if ls.docs_version(uri) != version:
        ls.host.counters.stale_dropped += 1
        progress.end("the document changed; result dropped")
        return {"applied": False, "reason": "the document changed while diffill was working"}
    if result is None:
        progress.end("cancelled")
        return {"applied": False, "reason": "cancelled"}
    if not result.text and end > start:
        progress.end("no valid infill")
        ls.log_message(f"diffill: no valid infill for the selected region of {uri}; the text is left as it was")
        return {"applied": False, "reason": "diffill found no valid infill for this region", "text": ""}
    progress.end(f"done in {result.steps} steps")
    edit = types.TextEdit(range=types.Range(types.Position(*doc.position_at(start)), types.Position(*doc.position_at(end))),
                          new_text=result.text)
    try:
        answer = await ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(
            edit=_workspace_edit(ls, uri, version, edit), label="diffill: infill"))
    except JsonRpcException as e:
        return {"applied": False, "reason": f"the client did not apply the edit: {e.message}", "text": result.text}
    return {"applied": bool(answer.applied), "reason": answer.failure_reason, "text": result.text,
            "steps": result.steps}


def _workspace_edit(ls: DiffillServer, uri: str, version: int | None, edit: types.TextEdit) -> types.WorkspaceEdit:
    caps = ls.client_capabilities.workspace
    if caps and caps.workspace_edit and caps.workspace_edit.document_changes:
        doc_id = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
        return types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(text_document=doc_id, edits=[edit])])
    return types.WorkspaceEdit(changes={uri: [edit]})


class InfillProgress:
    """$/progress for diffill.infill: one report per denoising step; cancellable from the UI."""

    def __init__(self, ls: DiffillServer, params: types.ExecuteCommandParams | None):
        self.ls = ls
        self.token = params.work_done_token if params is not None else None
        self.loop = asyncio.get_running_loop()

    async def begin(self) -> None:
        window = self.ls.client_capabilities.window
        if self.token is None and window and window.work_done_progress:
            token = f"diffill-infill-{uuid.uuid4().hex}"
            try:
                await self.ls.work_done_progress.create_async(token)
                self.token = token
            except Exception as e:
                log.info("client refused a progress token: %s", e)
        if self.token is not None:
            self.ls.work_done_progress.begin(self.token, types.WorkDoneProgressBegin(
                title="diffill: infill", cancellable=True, percentage=0, message="denoising"))

    def hook(self, job: Job) -> None:
        """Cancelling the progress (window/workDoneProgress/cancel) cancels the job."""
        if self.token is None:
            return
        cancelled = self.ls.work_done_progress.tokens.get(self.token)
        if cancelled is not None:
            cancelled.add_done_callback(lambda f: job.cancel() if f.cancelled() else None)

    def step(self, progress: Progress) -> None:  # called in the worker thread
        if self.token is None:
            return
        done, slots = progress.filled, progress.slots
        report = types.WorkDoneProgressReport(message=f"step {progress.step}: {done}/{slots} tokens",
                                              percentage=int(100 * done / max(1, slots)), cancellable=True)
        self.loop.call_soon_threadsafe(self.ls.work_done_progress.report, self.token, report)

    def end(self, message: str) -> None:
        if self.token is None:
            return
        self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
        self.ls.work_done_progress.tokens.pop(self.token, None)


def on_accepted_command(ls: DiffillServer, *args: Any) -> None:
    """Ghost text was accepted (its item's command; the argument is its data): counted."""
    ls.host.counters.accepted += 1


def on_status_command(ls: DiffillServer, *args: Any) -> dict:
    return ls.status()


def on_shutdown(ls: DiffillServer, params: None) -> None:
    ls.shut_down = True
    ls.host.cancel_all()
    ls.host.worker.stop()


def on_exit(ls: DiffillServer, params: None) -> None:
    """Leave now (0 after shutdown, 1 without, as LSP says). pygls would raise SystemExit inside
    the message loop, which in TCP mode leaves the process serving."""
    ls.host.cancel_all()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(0 if ls.shut_down else 1)


def build_server(model: str | None = None, threads: int = 0) -> DiffillServer:
    server = DiffillServer(model=model, threads=threads)
    server.feature(types.EXIT)(on_exit)
    server.feature(types.INITIALIZE)(on_initialize)
    server.feature(types.INITIALIZED)(on_initialized)
    server.feature(types.SHUTDOWN)(on_shutdown)
    server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(on_did_change_configuration)
    server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)(on_did_change_workspace_folders)
    server.feature(types.TEXT_DOCUMENT_DID_OPEN)(on_did_open)
    server.feature(types.TEXT_DOCUMENT_DID_CHANGE)(on_did_change)
    server.feature(types.TEXT_DOCUMENT_DID_CLOSE)(on_did_close)
    server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))(on_did_save)
    server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)(on_did_change_watched_files)
    server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(on_inline_completion)
    server.feature(types.TEXT_DOCUMENT_COMPLETION,
                   types.CompletionOptions(resolve_provider=False))(on_completion)
    server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                   types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.RefactorRewrite]))(on_code_action)
    server.command(INFILL_COMMAND)(on_infill_command)
    server.command(STATUS_COMMAND)(on_status_command)
    server.command(ACCEPTED_COMMAND)(on_accepted_command)
    return server
