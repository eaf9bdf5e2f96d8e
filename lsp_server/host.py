"""The engine host behind the protocol handlers: the settings, loading the engine (in the worker,
warm-up included), the workspace index fills copy from, the infill cache, one model request in
flight per document (identical requests share it, a newer one cancels it), counters, timings and
``diffill.status``.

It knows no LSP positions and sends nothing itself: what the user should read goes through
``Messages`` (the server).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lsprotocol import types
from pygls.uris import to_fs_path

from diffill.errors import DiffillError
from diffill.lsp_server.cache import InfillCache
from diffill.lsp_server.documents import Document
from diffill.lsp_server.settings import Settings, merge
from diffill.lsp_server.worker import EngineWorker, Job, LoadState

if TYPE_CHECKING:
    from diffill.engine import InfillResult, Progress

log = logging.getLogger(__name__)

RECENT = 1000  # answers kept for status and the bench


class Messages(Protocol):
    """Where the host's news for the user goes (the client's log, or a pop-up as well)."""

    def log_message(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None: ...

    def show_message(self, message: str, kind: types.MessageType) -> None: ...


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
    pending_engine_ms: dict = field(default_factory=dict)  # request id -> (engine time, hand-off time)

    def record(self, msg_id: Any, total_ms: float, counted: bool) -> None:
        """A request was answered after ``total_ms``; ``counted``: a completion that succeeded."""
        engine_ms, handoff_ms = self.pending_engine_ms.pop(msg_id, (0.0, 0.0))
        if counted:
            self.latencies_ms.append(total_ms)
            self.engine_ms.append(engine_ms)
            self.overhead_ms.append(max(0.0, total_ms - engine_ms))
            self.handoff_ms.append(handoff_ms)

    def handed_back(self, msg_id: Any, job: Job) -> None:
        """The answer to ``msg_id`` goes out from the event loop: its engine time and its thread
        hand-offs (queue to worker, worker back to the event loop)."""
        handoff_ms = ((job.started - job.submitted) + (time.perf_counter() - job.finished)) * 1000.0
        self.pending_engine_ms[msg_id] = (job.engine_ms, handoff_ms)


class EngineHost:
    def __init__(self, messages: Messages, folders: Callable[[], list[str]], model: str | None = None,
                 threads: int = 0):
        self.messages = messages
        self.folders = folders  # the workspace folders' paths
        self.default_model = model  # from the command line; the setting wins when it is not null
        self.settings = Settings()
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
        self._refused: set[str] = set()  # languages the loaded model does not know, logged once each
        self.initialized_at: float | None = None  # perf_counter() when ``initialize`` arrived
        self.ready_ms: float | None = None  # from then until the first engine was loaded (warm-up included)

    # -- settings and the engine -----------------------------------------------------------

    def update_settings(self, raw: Any) -> None:
        self.settings, problems = merge(self.settings, raw)
        for p in problems:
            self.messages.log_message(p, types.MessageType.Warning)
        self.ensure_engine()
        self.ensure_index()

    def workspace_adapter(self) -> str | None:
        for path in self.folders():
            if (Path(path) / ".diffill" / "adapter" / "adapter_config.json").is_file():
                return str(Path(path) / ".diffill" / "adapter")
        return None

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
        self._refused.clear()
        if self.ready_ms is None and state.loaded and self.initialized_at is not None:
            self.ready_ms = (state.finished - self.initialized_at) * 1000.0
        if state.loaded:
            if state.error:
                self.messages.show_message(state.error, types.MessageType.Warning)
            if state.adapter is not None and not state.adapters:
                self.messages.log_message(f"diffill: adapter setting {state.adapter!r} stored; this engine cannot "
                                          "load adapters yet", types.MessageType.Warning)
            adapter = state.info.get("adapter", state.adapter if state.adapters else None)
            self.messages.log_message(f"diffill: model {state.info.get('model')} loaded "
                                      f"({state.info.get('parameters', 0):,} parameters); adapter: "
                                      f"{adapter or 'none'}; library index: {state.info.get('library', 'none')}")
            self.ensure_index(again=True)  # a new engine has no index yet
        else:
            self.messages.show_message(state.error or "diffill cannot load its model", types.MessageType.Error)

    # -- the workspace index ---------------------------------------------------------------

    def ensure_index(self, again: bool = False) -> None:
        """Have the engine copy from the workspace folders' source files (``indexWorkspace``),
        indexed in the worker when the folders or the setting changed, or ``again``."""
        if not self.worker.state.loaded:
            return
        wanted = tuple(self.folders()) if self.settings.index_workspace else ()
        if wanted == self._indexed and not again:
            return
        self._indexed = wanted
        self._in_worker("index_workspace", list(wanted), "cannot index the workspace", self._indexed_now)

    def _indexed_now(self, summary: dict) -> None:
        self.workspace_index = summary
        self.messages.log_message(f"diffill: fills copy from {summary['files']} source files of the workspace "
                                  f"({summary['tokens']:,} tokens)")

    def refresh_index(self, paths: list[str]) -> None:
        """Have the engine read these files (saved, or changed on disk) again into its workspace
        index (in the worker), when it holds one."""
        if not paths or not self._indexed or not self.worker.state.loaded:
            return
        self.cache.clear()  # fills remembered from before may have copied from the old text
        self._in_worker("refresh_workspace", paths, "cannot refresh the workspace index", self._refreshed)

    def _refreshed(self, answer: dict) -> None:
        self.workspace_index = {k: answer[k] for k in ("files", "tokens")}

    def _in_worker(self, method: str, paths: list[str], failure: str, done: Callable[[dict], None]) -> None:
        """``engine.<method>(paths)`` in the worker (an engine without it: nothing); ``done`` gets its
        answer on the event loop, and a failure is logged as "diffill: <failure>: <error>"."""
        def run(engine, _job):
            return getattr(engine, method)(paths) if hasattr(engine, method) else None

        def finished(future: asyncio.Future) -> None:
            if future.cancelled():
                return
            if future.exception() is not None:
                self.messages.log_message(f"diffill: {failure}: {future.exception()}", types.MessageType.Warning)
            elif future.result() is not None:
                done(future.result())

        self.worker.submit(run).future.add_done_callback(finished)

    # -- requests --------------------------------------------------------------------------

    def refusal(self, language_id: str, path: str | None = None) -> str | None:
        """Why a document of this language gets no fills, or None when it gets them: the languages
        setting decides where it is given (it overrides the model's), else the languages the loaded
        model was trained on (``diffill.languages``). A language the model does not know is logged once."""
        if self.settings.languages is not None:
            if self.settings.enabled_for(language_id):
                return None
            return f"diffill is disabled for language {language_id!r} (setting diffill.languages)"
        known = tuple(self.worker.state.info.get("languages") or ())
        if not known:  # no engine yet: the engine itself refuses (refused_language)
            return None
        from diffill.languages import language_name, refusal, serves

        name = language_name(language_id, path)
        if serves(known, name):
            return None
        return self.refused_language(name, refusal(known, name))

    def refused_language(self, name: str, why: str) -> str:
        """Log, once per language, that the model fills no documents of language ``name``; returns ``why``."""
        if name not in self._refused:
            self._refused.add(name)
            self.messages.log_message(f"diffill: no fills for {name} documents: {why}", types.MessageType.Info)
        return why

    def cache_key(self, language_id: str) -> tuple:
        """What, besides the text, changes a fill: the language, the settings, the engine."""
        s = self.settings
        return (language_id, s.max_tokens, s.threshold, s.beam, s.constraint, s.min_confidence, s.context_reuse,
                self.generation)

    def cancel(self, uri: str) -> None:
        """Stop the model request in flight for ``uri``, if any (its answer would be stale)."""
        if (pending := self.inflight.get(uri)) is not None:
            pending.job.cancel()

    def cancel_all(self) -> None:
        for pending in self.inflight.values():
            pending.job.cancel()

    async def infill(self, doc: Document, start: int, end: int, kind: str, neighbors: tuple[str, ...] = (),
                     max_tokens: int | None = None, on_progress: Callable[[Progress], None] | None = None,
                     cancel_hook: Callable[[Job], None] | None = None,
                     after: Callable[[InfillResult, Job], None] | None = None,
                     ) -> tuple[InfillResult | None, Job]:
        """Run one infill in the worker; returns it (None when cancelled) and its job. A newer
        request for the same document cancels this one; identical requests in flight share one
        model call. ``after(result, job)`` runs in the worker as soon as the engine returns. A
        failure is a DiffillError that says what went wrong."""
        s = self.settings
        key = (kind, doc.version, start, end, self.cache_key(doc.language_id))
        pending = self.inflight.get(doc.uri)
        if kind == "complete" and pending and pending.key == key and not pending.job.is_cancelled():
            pending.waiters += 1
        else:
            if pending is not None and not pending.job.finished:  # still queued or denoising
                pending.job.cancel()
                self.counters.superseded += 1
            text, language, path = doc.text, doc.language_id or None, to_fs_path(doc.uri)
            beam, threshold, constrained = s.beam, s.threshold, s.constraint
            languages, reuse = s.languages, s.context_reuse
            min_confidence = s.min_confidence if kind == "complete" else 0.0

            def run(engine, job):
                from diffill.engine import InfillOptions, InfillRequest  # imported by the worker with the engine

                req = InfillRequest(text, start, end, language=language, path=path, max_tokens=max_tokens,
                                    neighbors=neighbors, min_confidence=min_confidence)
                options = InfillOptions(beam=beam, threshold=threshold, constrained=constrained,
                                        languages=languages, context_reuse=reuse)
                t0 = time.perf_counter()
                result = engine.infill(req, cancelled=job.is_cancelled, options=options, on_progress=on_progress)
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
        except DiffillError:
            self.counters.errors += 1
            raise
        except Exception as e:
            self.counters.errors += 1
            log.exception("infill failed")
            self.messages.log_message(f"diffill: internal error while filling {doc.uri}: {type(e).__name__}: {e}",
                                      types.MessageType.Error)
            raise DiffillError(f"diffill: internal error: {type(e).__name__}: {e}") from None
        if result is None or result.cancelled or pending.job.is_cancelled():
            return None, pending.job
        return result, pending.job

    def _finished(self, uri: str, pending: Pending) -> None:
        if self.inflight.get(uri) is pending:
            del self.inflight[uri]

    # -- status ----------------------------------------------------------------------------

    def readiness(self) -> str:
        """"starting" (no load asked for yet: before ``initialized``), "loading" (the model loads and
        warms up in the worker; requests wait for it), "ready" or "failed"."""
        if self._load_job is not None and not self._load_job.future.done():
            return "loading"
        state = self.worker.state
        if state.loaded:
            return "ready"
        return "failed" if state.error else "starting"

    def status(self, documents: int) -> dict:
        state = self.worker.state
        # copies first: the engine thread appends to these while the event loop reads them
        lat, t = list(self.timings.latencies_ms), self.timings
        engine_ms, overhead_ms, handoff_ms = list(t.engine_ms), list(t.overhead_ms), list(t.handoff_ms)
        adapter = state.info.get("adapter", state.adapter if state.adapters else None)
        return {
            "model": state.info.get("model") if state.loaded else state.model,
            "adapter": adapter,
            "library": state.info.get("library") if state.loaded else None,  # the library index fills copy from
            # the languages the model fills (the languages setting, when given, overrides them)
            "languages": state.info.get("languages") if state.loaded else None,
            "adapter_setting": self.settings.adapter,
            "adapter_requested": self._wanted[1] if self._wanted else None,  # after workspace lookup
            "loaded": state.loaded,
            "state": self.readiness(),
            "load_ms": round(state.load_ms, 1),  # the last load, its warm-up pass included
            "warm_up_ms": round(state.warm_up_ms, 1),
            "warm_up": state.warm_up,  # done | stopped | skipped (a request came first) | none
            "ready_ms": round(self.ready_ms, 1) if self.ready_ms is not None else None,  # initialize -> first ready
            "error": state.error,
            "latencies_ms": [round(x, 2) for x in lat[-50:]],
            "p50_ms": round(statistics.median(lat), 2) if lat else None,
            "engine_ms": [round(x, 3) for x in engine_ms],
            "overhead_ms": [round(x, 3) for x in overhead_ms],
            "handoff_ms": [round(x, 3) for x in handoff_ms],
            "counters": vars(self.counters).copy(),
            "settings": asdict(self.settings),
            "documents": documents,
            "workspace_index": self.workspace_index,
            "inflight": len(self.inflight),
        }
