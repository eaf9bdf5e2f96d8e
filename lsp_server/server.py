"""The diffill language server (pygls 2): one handler per LSP feature, each a few lines that
translate the request, call the engine through the worker, and turn the result into an answer.

Capabilities: incremental sync, textDocument/inlineCompletion, textDocument/completion (the
infill as a textEdit), textDocument/codeAction ("Infill selection (diffill)"), and the commands
``diffill.infill`` ({uri, range}: regenerate, apply with workspace/applyEdit, $/progress per step,
cancellable) and ``diffill.status``. Saved documents (textDocument/didSave) and files changed on
disk (workspace/didChangeWatchedFiles, a watcher registered where the client allows) are read
again into the workspace index that fills copy from.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from diffill.errors import DiffillError
from diffill.lsp_server.cache import Hole, InfillCache
from diffill.lsp_server.documents import Document, DocumentStore
from diffill.lsp_server.protocol import DiffillProtocol, command_params
from diffill.lsp_server.settings import Settings, merge
from diffill.lsp_server.worker import EngineWorker, Job, LoadState
from diffill.model.lead import typed_word

if TYPE_CHECKING:
    from diffill.engine import InfillResult

log = logging.getLogger(__name__)

VERSION = "0.1.0"
INFILL_COMMAND = "diffill.infill"
STATUS_COMMAND = "diffill.status"
ACCEPTED_COMMAND = "diffill.accepted"  # run by the editor when ghost text is accepted
INFILL_TITLE = "Infill selection (diffill)"
REQUEST_FAILED = -32803  # LSP ErrorCodes.RequestFailed
COMPLETION_METHODS = {types.TEXT_DOCUMENT_INLINE_COMPLETION, types.TEXT_DOCUMENT_COMPLETION}
RECENT = 1000  # answers kept for status and the bench
NEIGHBOR_DOCUMENTS = 8  # other open documents a fill may copy from, the last opened first
NEIGHBOR_MAX_CHARS = 1_000_000  # larger ones are left out


def invalid_params(message: str) -> JsonRpcException:
    return JsonRpcException(message, code=types.ErrorCodes.InvalidParams)


def request_failed(message: str) -> JsonRpcException:
    return JsonRpcException(message, code=REQUEST_FAILED)


@dataclass
class Pending:
    """The model request in flight for one document; identical requests share it."""

    key: tuple
    job: Job
    waiters: int = 1


@dataclass
class Counters:
    model_calls: int = 0
    cache_hits: int = 0
    superseded: int = 0
    cancelled: int = 0
    stale_dropped: int = 0
    errors: int = 0
    steps: int = 0  # denoising steps run
    accepted: int = 0  # ghost text accepted (diffill.accepted)


@dataclass
class Timings:
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    engine_ms: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    overhead_ms: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    handoff_ms: deque = field(default_factory=lambda: deque(maxlen=RECENT))  # part of overhead_ms
    pending_engine_ms: dict = field(default_factory=dict)  # request id -> engine time


class DiffillServer(LanguageServer):
    def __init__(self, model: str | None = None, threads: int = 0):
        super().__init__("diffill", VERSION, protocol_cls=DiffillProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.default_model = model  # from the command line; the setting wins when it is not null
        self.settings = Settings()
        self.docs = DocumentStore()
        self.cache = InfillCache()
        self.worker = EngineWorker(threads=threads)
        self.inflight: dict[str, Pending] = {}
        self.counters = Counters()
        self.timings = Timings()
        self.generation = 0  # bumped when the engine changes; part of every cache key
        self._wanted: tuple[str | None, str | None] | None = None
        self._load_job: Job | None = None
        self._indexed: tuple[str, ...] | None = None  # the folders the engine's workspace index holds
        self.workspace_index: dict = {}  # its files and tokens

    def shutdown(self) -> None:
        """As pygls', without waiting for the stdin reader thread (it may block on a read until the
        client closes the pipe): `diffill serve` exits right after."""
        if self._stop_event is not None:
            self._stop_event.set()
        if self._thread_pool:
            self._thread_pool.shutdown(wait=False, cancel_futures=True)
        if self._server:
            self._server.close()
        self.worker.stop()

    # -- messages to the user --------------------------------------------------------------

    def log_message(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        log.log(logging.WARNING if kind.value <= types.MessageType.Warning.value else logging.INFO, "%s", message)
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def show_message(self, message: str, kind: types.MessageType) -> None:
        self.log_message(message, kind)
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    # -- settings and the engine -----------------------------------------------------------

    def update_settings(self, raw: Any) -> None:
        self.settings, problems = merge(self.settings, raw)
        for p in problems:
            self.log_message(p, types.MessageType.Warning)
        self.ensure_engine()
        self.ensure_index()

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

    def workspace_adapter(self) -> str | None:
        for path in self.workspace_folders():
            if (Path(path) / ".diffill" / "adapter" / "adapter_config.json").is_file():
                return str(Path(path) / ".diffill" / "adapter")
        return None

    def ensure_index(self, again: bool = False) -> None:
        """Have the engine copy from the workspace folders' source files (``indexWorkspace``),
        indexed in the worker when the folders or the setting changed, or ``again``."""
        if not self.worker.state.loaded:
            return
        wanted = tuple(self.workspace_folders()) if self.settings.index_workspace else ()
        if wanted == self._indexed and not again:
            return
        self._indexed = wanted

        def run(engine, _job):
            return engine.index_workspace(list(wanted)) if hasattr(engine, "index_workspace") else None

        self.worker.submit(run).future.add_done_callback(self._indexed_now)

    def refresh_index(self, paths: list[str]) -> None:
        """Have the engine read these files (saved, or changed on disk) again into its workspace
        index (in the worker), when it holds one."""
        if not paths or not self._indexed or not self.worker.state.loaded:
            return
        self.cache.clear()  # fills remembered from before may have copied from the old text

        def run(engine, _job):
            return engine.refresh_workspace(paths) if hasattr(engine, "refresh_workspace") else None

        self.worker.submit(run).future.add_done_callback(self._refreshed)

    def _refreshed(self, future: asyncio.Future) -> None:
        if future.cancelled():
            return
        if future.exception() is not None:
            self.log_message(f"diffill: cannot refresh the workspace index: {future.exception()}",
                             types.MessageType.Warning)
        elif future.result() is not None:
            self.workspace_index = {k: future.result()[k] for k in ("files", "tokens")}

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

    def _indexed_now(self, future: asyncio.Future) -> None:
        if future.cancelled():
            return
        if future.exception() is not None:
            self.log_message(f"diffill: cannot index the workspace: {future.exception()}", types.MessageType.Warning)
            return
        if future.result() is not None:
            self.workspace_index = future.result()
            self.log_message(f"diffill: fills copy from {self.workspace_index['files']} source files of the "
                             f"workspace ({self.workspace_index['tokens']:,} tokens)")

    def wanted_engine(self) -> tuple[str | None, str | None]:
        s = self.settings
        adapter = s.adapter
        if adapter is None and s.use_workspace_adapter:
            adapter = self.workspace_adapter()
        return s.model or self.default_model, adapter

    def ensure_engine(self) -> None:
        """(Re)load the engine in the worker when the wanted model or adapter changed."""
        wanted = self.wanted_engine()
        if wanted == self._wanted and self.worker.device == self.settings.device:
            return
        self._wanted = wanted
        self.worker.device = self.settings.device
        self.generation += 1
        self.cache.clear()
        model, adapter = wanted
        self._load_job = job = self.worker.load(model, adapter)
        job.future.add_done_callback(self._loaded)

    def _loaded(self, future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is not None or future.result() is None:
            return
        state: LoadState = future.result()
        if state.loaded:
            if state.error:
                self.show_message(state.error, types.MessageType.Warning)
            if state.adapter is not None and not state.adapters:
                self.log_message(f"diffill: adapter setting {state.adapter!r} stored; this engine cannot load "
                                 "adapters yet", types.MessageType.Warning)
            adapter = state.info.get("adapter", state.adapter if state.adapters else None)
            self.log_message(f"diffill: model {state.info.get('model')} loaded "
                             f"({state.info.get('parameters', 0):,} parameters); adapter: {adapter or 'default'}; "
                             f"library index: {state.info.get('library', 'none')}")
            self.ensure_index(again=True)  # a new engine has no index yet
        else:
            self.show_message(state.error or "diffill cannot load its model", types.MessageType.Error)

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

    def cache_key(self, doc: Document) -> tuple:
        s = self.settings
        return doc.language_id, s.max_tokens, s.threshold, s.beam, s.constraint, s.min_confidence, self.generation

    async def complete(self, uri: str, position: types.Position,
                       answer: Callable[[list[tuple[str, dict]], types.Position], Any]) -> Any:
        """``answer(infills, position)`` for the cursor: the infill and the beam search's
        runners-up, likeliest first, each with its confidence (``notes``); [] when there is none or
        the infill is less confident than the minConfidence setting (the position is normalised). When the
        model runs, the worker sends the answer itself as soon as the engine returns (no wait for
        the event loop to be scheduled); the loop's identical answer is then dropped by the
        protocol."""
        doc = self.document(uri)
        pos = types.Position(position.line, position.character)
        rng = types.Range(pos, pos)
        start, _ = self.offsets(doc, rng)
        line, character = doc.position_at(start)
        pos = types.Position(line, character)
        if not self.settings.enabled_for(doc.language_id):
            return answer([], pos)
        hole, extra, version = Hole.at(doc.text, start), self.cache_key(doc), doc.version
        cached = self.cache.lookup(hole, extra)
        if cached is not None:
            self.counters.cache_hits += 1
            return answer(cached, pos)
        msg_id = self.protocol.msg_id

        def answer_now(result: InfillResult, job: Job) -> None:  # in the worker thread
            if msg_id is None or result.cancelled:
                return
            self.cache.put(hole, extra, choices(result), notes(result))
            if self.docs_version(uri) == version:
                self.timings.pending_engine_ms[msg_id] = (job.engine_ms, (job.started - job.submitted) * 1000.0)
                if not self.protocol.answer_from_worker(msg_id, answer(scored(result), pos)):
                    self.timings.pending_engine_ms.pop(msg_id, None)  # answered already (cancelled)

        result = await self.infill(doc, start, start, kind="complete", max_tokens=self.settings.max_tokens,
                                   after=answer_now)
        if result is not None:
            self.cache.put(hole, extra, choices(result), notes(result))  # still good for forwarding after the edit
        if self.docs_version(uri) != version:
            self.counters.stale_dropped += 1
            return answer([], pos)
        return answer(scored(result) if result is not None else [], pos)

    def docs_version(self, uri: str) -> int | None:
        return self.docs.get(uri).version if uri in self.docs else None

    async def infill(self, doc: Document, start: int, end: int, kind: str, max_tokens: int | None = None,
                     on_step=None, cancel_hook=None, after=None) -> InfillResult | None:
        """Run one infill in the worker. A newer request for the same document cancels this one
        (the answer is then None); identical requests in flight share one model call."""
        s = self.settings
        key = (kind, doc.version, start, end, self.cache_key(doc))
        pending = self.inflight.get(doc.uri)
        if kind == "complete" and pending and pending.key == key and not pending.job.is_cancelled():
            pending.waiters += 1
        else:
            if pending is not None and not pending.job.finished:  # still queued or denoising
                pending.job.cancel()
                self.counters.superseded += 1
            text, language, path = doc.text, doc.language_id or None, to_fs_path(doc.uri)
            # one-line and longer fills copy from the other open documents too (model/ngram.py)
            neighbors = self.docs.others(doc.uri, NEIGHBOR_DOCUMENTS, NEIGHBOR_MAX_CHARS)
            threshold, constraint, beam = s.threshold, s.constraint, s.beam
            min_confidence = s.min_confidence if kind == "complete" else 0.0

            def run(engine, job):
                from diffill.engine import InfillRequest  # imported by the worker with the engine
                from diffill.model.beam import LINE_BEAM

                req = InfillRequest(text, start, end, language=language, path=path, max_tokens=max_tokens,
                                    neighbors=neighbors, min_confidence=min_confidence)
                engine.config.constrained = constraint
                engine.config.single_line_beam = LINE_BEAM if beam is None else beam
                t0 = time.perf_counter()
                result = engine.infill(req, cancelled=job.is_cancelled, on_step=on_step,
                                       sampler=engine.with_sampler(threshold=threshold))
                job.finished = time.perf_counter()  # the engine is done (the worker sets it again)
                job.engine_ms = (job.finished - t0) * 1000.0
                self.counters.steps += result.steps
                if after is not None and not job.is_cancelled():
                    after(result, job)
                return result

            pending = Pending(key, self.worker.submit(run))
            self.inflight[doc.uri] = pending
            self.counters.model_calls += 1
            pending.job.future.add_done_callback(lambda _f, p=pending, uri=doc.uri: self._finished(uri, p))
            if cancel_hook is not None:
                cancel_hook(pending.job)
        try:
            result: InfillResult | None = await asyncio.shield(pending.job.future)
        except asyncio.CancelledError:  # $/cancelRequest: stop denoising once nobody waits
            pending.waiters -= 1
            if pending.waiters <= 0:
                pending.job.cancel()
            self.counters.cancelled += 1
            raise
        except DiffillError as e:
            self.counters.errors += 1
            raise request_failed(str(e)) from None
        except Exception as e:
            self.counters.errors += 1
            log.exception("infill failed")
            self.log_message(f"diffill: internal error while filling {doc.uri}: {type(e).__name__}: {e}",
                             types.MessageType.Error)
            raise request_failed(f"diffill: internal error: {type(e).__name__}: {e}") from None
        msg_id = self.protocol.msg_id
        if msg_id is not None and self.protocol.is_waiting(msg_id):  # not answered by the worker
            job = pending.job  # thread hand-offs: queue to worker, worker back to the event loop
            handoff_ms = ((job.started - job.submitted) + (time.perf_counter() - job.finished)) * 1000.0
            self.timings.pending_engine_ms[msg_id] = (job.engine_ms, handoff_ms)
        if result is None or result.cancelled or pending.job.is_cancelled():
            return None
        return result

    def _finished(self, uri: str, pending: Pending) -> None:
        if self.inflight.get(uri) is pending:
            del self.inflight[uri]

    def record_answer(self, msg_id: Any, method: str, total_ms: float, ok: bool) -> None:
        engine_ms, handoff_ms = self.timings.pending_engine_ms.pop(msg_id, (0.0, 0.0))
        if method in COMPLETION_METHODS and ok:
            self.timings.latencies_ms.append(total_ms)
            self.timings.engine_ms.append(engine_ms)
            self.timings.overhead_ms.append(max(0.0, total_ms - engine_ms))
            self.timings.handoff_ms.append(handoff_ms)

    def readiness(self) -> str:
        """"starting" (no load asked for yet: before ``initialized``), "loading" (the model loads and
        warms up in the worker; requests wait for it), "ready" or "failed"."""
        if self._load_job is not None and not self._load_job.future.done():
            return "loading"
        state = self.worker.state
        if state.loaded:
            return "ready"
        return "failed" if state.error else "starting"

    def status(self) -> dict:
        state = self.worker.state
        # copies first: the engine thread appends to these while the event loop reads them
        lat, t = list(self.timings.latencies_ms), self.timings
        engine_ms, overhead_ms, handoff_ms = list(t.engine_ms), list(t.overhead_ms), list(t.handoff_ms)
        adapter = state.info.get("adapter", state.adapter if state.adapters else None)
        return {
            "model": state.info.get("model") if state.loaded else state.model,
            "adapter": adapter,
            "library": state.info.get("library") if state.loaded else None,  # the library index fills copy from
            "adapter_setting": self.settings.adapter,
            "adapter_requested": self._wanted[1] if self._wanted else None,  # after workspace lookup
            "loaded": state.loaded,
            "state": self.readiness(),
            "load_ms": round(state.load_ms, 1),  # the last load, its warm-up pass included
            "warm_up_ms": round(state.warm_up_ms, 1),
            "error": state.error,
            "latencies_ms": [round(x, 2) for x in lat[-50:]],
            "p50_ms": round(statistics.median(lat), 2) if lat else None,
            "engine_ms": [round(x, 3) for x in engine_ms],
            "overhead_ms": [round(x, 3) for x in overhead_ms],
            "handoff_ms": [round(x, 3) for x in handoff_ms],
            "counters": vars(self.counters).copy(),
            "settings": asdict(self.settings),
            "documents": len(self.docs),
            "workspace_index": self.workspace_index,
            "inflight": len(self.inflight),
        }


# -- handlers ------------------------------------------------------------------------------


def on_initialize(ls: DiffillServer, params: types.InitializeParams) -> None:
    ls.update_settings(params.initialization_options)


async def on_initialized(ls: DiffillServer, params: types.InitializedParams) -> None:
    ls.ensure_engine()
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
    ls.update_settings(raw)


def on_did_change_workspace_folders(ls: DiffillServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    ls.ensure_engine()
    ls.ensure_index()


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
    pending = ls.inflight.get(uri)
    if pending is not None:  # its answer would be stale: stop denoising now
        pending.job.cancel()


def on_did_save(ls: DiffillServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.refresh_index([p for p in [to_fs_path(params.text_document.uri)] if p])


def on_did_change_watched_files(ls: DiffillServer, params: types.DidChangeWatchedFilesParams) -> None:
    ls.refresh_index([p for p in (to_fs_path(c.uri) for c in params.changes) if p])


def on_did_close(ls: DiffillServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    if (pending := ls.inflight.get(uri)) is not None:
        pending.job.cancel()
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
        if offset is not None and (typed := typed_word(doc.text, offset)):
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
    if start == end or not ls.settings.enabled_for(doc.language_id):
        return []
    if only and not any(kind.value == k or kind.value.startswith(f"{k}.") for k in only):
        return []
    arg = {"uri": doc.uri, "range": ls.protocol._converter.unstructure(params.range)}
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
        rng = ls.protocol._converter.structure(arg.get("range"), types.Range)
    except Exception:
        raise invalid_params(f"{usage}: range must be {{start: {{line, character}}, end: {{line, character}}}}") from None
    return arg["uri"], rng


async def on_infill_command(ls: DiffillServer, *args: Any) -> dict:
    uri, rng = _infill_argument(ls, args)
    doc = ls.document(uri)
    start, end = ls.offsets(doc, rng)
    if not ls.settings.enabled_for(doc.language_id):
        raise request_failed(f"diffill is disabled for language {doc.language_id!r} (setting diffill.languages)")
    version = doc.version
    progress = InfillProgress(ls, command_params.get())
    await progress.begin()
    try:
        result = await ls.infill(doc, start, end, kind="region", on_step=progress.step, cancel_hook=progress.hook)
    except BaseException:
        progress.end("failed")
        raise
    if ls.docs_version(uri) != version:
        ls.counters.stale_dropped += 1
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

    def step(self, trace) -> None:  # called in the worker thread
        if self.token is None:
            return
        canvas = trace.canvas[0]
        mask = self.ls.worker.engine.tok.mask_id if self.ls.worker.engine else -1
        done = sum(1 for t in canvas if t != mask)
        report = types.WorkDoneProgressReport(message=f"step {trace.step}: {done}/{len(canvas)} tokens",
                                              percentage=int(100 * done / max(1, len(canvas))), cancellable=True)
        self.loop.call_soon_threadsafe(self.ls.work_done_progress.report, self.token, report)

    def end(self, message: str) -> None:
        if self.token is None:
            return
        self.ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
        self.ls.work_done_progress.tokens.pop(self.token, None)


def on_accepted_command(ls: DiffillServer, *args: Any) -> None:
    """Ghost text was accepted (its item's command; the argument is its data): counted."""
    ls.counters.accepted += 1


def on_status_command(ls: DiffillServer, *args: Any) -> dict:
    return ls.status()


def on_shutdown(ls: DiffillServer, params: None) -> None:
    for pending in ls.inflight.values():
        pending.job.cancel()
    ls.worker.stop()


def on_exit(ls: DiffillServer, params: None) -> None:
    """Leave now (0 after shutdown, 1 without, as LSP says). pygls would raise SystemExit inside
    the message loop, which in TCP mode leaves the process serving."""
    for pending in ls.inflight.values():
        pending.job.cancel()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(0 if ls.protocol._shutdown else 1)


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
