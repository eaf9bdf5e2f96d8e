"""The one thread that owns the engine. Handlers submit jobs and await them; the event loop
never runs model code.

A job carries a cancel flag that the engine checks between denoising steps. Jobs cancelled
before they start are skipped. Loading (or reloading) the model is a job too, so requests
queued behind it see the new engine.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from diffill.errors import DiffillError

if TYPE_CHECKING:  # the engine (torch, transformers) is imported in the worker thread, so the
    from diffill.engine import Engine, EngineConfig  # server answers `initialize` at once

log = logging.getLogger(__name__)

# filled once after every load, a one-line hole and a blank line, so that the first request finds
# the Python grammar loaded and the network's first passes (allocations, kernel choice) done; left
# out, or stopped between steps, when a request is waiting: that request warms the engine up itself
WARM_UP_TEXT = "import os\n\n\ndef read(path):\n    with open(path) as f:\n        return f.\n    \n"
WARM_UP_HOLES = (WARM_UP_TEXT.index("f.\n") + 2, len(WARM_UP_TEXT) - 1)

MISSING_MODEL_HELP = ("Set the diffill.model setting (or start `diffill serve --model PATH`) to a checkpoint "
                      "folder, or run `make model` in the diffill checkout to build the default model.")


def engine_config(model: str | None, adapter: str | None, threads: int = 0, device: str = "auto") -> EngineConfig:
    """An EngineConfig; the adapter is passed only when the engine knows about adapters."""
    from diffill.engine import EngineConfig

    cfg = EngineConfig(model=model, threads=threads, device=device)
    if adapter is not None and engine_supports_adapters():
        cfg.adapter = adapter  # type: ignore[attr-defined]
    return cfg


def engine_supports_adapters() -> bool:
    from diffill.engine import EngineConfig

    return "adapter" in {f.name for f in fields(EngineConfig)}


def default_adapter() -> str | None:
    """The engine's own default adapter setting (used when the user sets none)."""
    from diffill.engine import EngineConfig

    return getattr(EngineConfig(), "adapter", None)


@dataclass
class Job:
    run: Callable[[Engine, Job], Any]
    future: asyncio.Future
    needs_engine: bool = True
    engine_ms: float = 0.0  # time in the engine
    submitted: float = field(default_factory=time.perf_counter)
    started: float = 0.0  # perf_counter() when the worker took it
    finished: float = 0.0  # ... and when it handed the result back
    _cancel: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()


@dataclass
class LoadState:
    model: str | None = None  # what was asked for (None: the shipped default)
    adapter: str | None = None
    loaded: bool = False
    error: str | None = None
    info: dict = field(default_factory=dict)
    adapters: bool = False  # the engine can load adapters
    load_ms: float = 0.0  # loading the engine, warm-up included
    warm_up_ms: float = 0.0  # the warm-up fills alone
    warm_up: str = "none"  # done | stopped (a request came) | skipped (a request was waiting) | none
    finished: float = 0.0  # perf_counter() when the load (and warm-up) ended


class EngineWorker:
    def __init__(self, factory: Callable[[EngineConfig], Engine] | None = None, threads: int = 0):
        self.factory = factory
        self.threads = threads
        self.device = "auto"  # cpu | cuda | auto: where the next load puts the model (the device setting)
        self.engine: Engine | None = None
        self.state = LoadState()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="diffill-engine", daemon=True)
        self._thread.start()

    # -- called on the event loop ----------------------------------------------------------

    def submit(self, run: Callable[[Engine, Job], Any], needs_engine: bool = True) -> Job:
        job = Job(run, asyncio.get_running_loop().create_future(), needs_engine)
        self._queue.put(job)
        return job

    def load(self, model: str | None, adapter: str | None) -> Job:
        """Replace the engine by one for ``model`` and ``adapter`` (in the worker thread)."""
        def run(_engine, _job):
            return self._load(model, adapter)
        return self.submit(run, needs_engine=False)

    def stop(self, timeout: float = 10.0) -> None:
        """End the worker thread after its current job, waiting up to ``timeout`` seconds for it: a
        process that exits while the thread still tears down torch's per-thread state aborts."""
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # -- the worker thread -----------------------------------------------------------------

    def _load(self, model: str | None, adapter: str | None) -> LoadState:
        t0 = time.perf_counter()
        try:
            state = self._load_engine(model, adapter)
        except Exception as e:  # not even the engine's code could be imported
            log.exception("loading the engine failed")
            state = LoadState(model, adapter, False, f"diffill cannot load its engine: {type(e).__name__}: {e}")
        state.adapters = engine_supports_adapters() if state.loaded else False
        if state.loaded:
            if self._queue.empty():
                state.warm_up_ms, finished = warm_up(self.engine, cancelled=lambda: not self._queue.empty())
                state.warm_up = "done" if finished else "stopped"
            else:
                state.warm_up = "skipped"
        state.load_ms = (time.perf_counter() - t0) * 1000.0
        state.finished = time.perf_counter()
        self.state = state
        resume_collection()
        return state

    def _load_engine(self, model: str | None, adapter: str | None) -> LoadState:
        if self.factory is None:
            from diffill.engine import Engine

            self.factory = Engine
        engine = self.engine
        # the same base model on the same device: the adapter is switched in place
        same = self.state.model == model and getattr(getattr(engine, "config", None), "device", "auto") == self.device
        if engine is not None and self.state.loaded and same and hasattr(engine, "use_adapter"):
            try:  # same base model: switch the adapter in place
                engine.use_adapter(adapter if adapter is not None else default_adapter())
                self.state = LoadState(model, adapter, True, None, engine.info())
                return self.state
            except DiffillError as e:
                log.warning("switching the adapter failed (%s); reloading the model", e)
        self.engine = None
        try:
            try:
                self.engine = self.factory(engine_config(model, adapter, self.threads, self.device))
                problem = None
            except DiffillError as e:
                if adapter is None:
                    raise
                # a bad adapter should not cost the user the model: serve the default instead
                problem = f"diffill cannot use adapter {adapter}: {e}; using the default adapter"
                self.engine = self.factory(engine_config(model, None, self.threads, self.device))
            self.state = LoadState(model, adapter, True, problem, self.engine.info())
        except DiffillError as e:
            self.state = LoadState(model, adapter, False, f"diffill cannot load its model: {e}. {MISSING_MODEL_HELP}")
        except Exception as e:  # a damaged checkpoint may raise anything; the server must live on
            log.exception("loading the model failed")
            self.state = LoadState(model, adapter, False, f"diffill cannot load its model: {type(e).__name__}: {e}")
        return self.state

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.is_cancelled() or job.future.done():
                self._resolve(job, None, None)
                continue
            t0 = job.started = time.perf_counter()
            try:
                if job.needs_engine and self.engine is None:
                    raise DiffillError(self.state.error or "diffill has no model loaded yet")
                result, error = job.run(self.engine, job), None
            except Exception as e:  # handed to the awaiting handler, which reports it
                result, error = None, e
            job.finished = time.perf_counter()
            if not job.engine_ms:  # a job may time its engine call itself, leaving out its own extra work
                job.engine_ms = (job.finished - t0) * 1000.0
            self._resolve(job, result, error)

    @staticmethod
    def _resolve(job: Job, result: Any, error: BaseException | None) -> None:
        def settle():
            if job.future.done():
                return
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
        try:
            job.future.get_loop().call_soon_threadsafe(settle)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            pass


def warm_up(engine: Engine, cancelled: Callable[[], bool] = lambda: False) -> tuple[float, bool]:
    """Fill ``WARM_UP_HOLES`` once (results dropped), stopping between denoising steps once
    ``cancelled()``; returns the milliseconds it took and whether it went through. A failure is
    logged: the engine still serves."""
    if not hasattr(engine, "infill"):
        return 0.0, True
    from diffill.engine import InfillRequest

    t0 = time.perf_counter()
    whole = True
    try:
        for at in WARM_UP_HOLES:
            if cancelled() or getattr(engine.infill(InfillRequest(WARM_UP_TEXT, at, at, language="python"),
                                                    cancelled=cancelled), "cancelled", False):
                whole = False
                break
    except Exception:  # a model that cannot fill this is reported by the first real request
        log.exception("warming up the engine failed")
    return (time.perf_counter() - t0) * 1000.0, whole


_paused = False  # the collector is paused until the first load ends (pause_collection)


def pause_collection() -> None:
    """Pause Python's cyclic garbage collector until the first engine load ends (``diffill serve``
    calls this as it starts). The server's imports (lsprotocol, torch) and the load create some
    200,000 lasting objects, and the full collections they set off on the way cost 0.2 to 0.3 s
    of CPU (docs/latency.md)."""
    global _paused
    _paused = True
    gc.disable()


def resume_collection() -> None:
    """After a load: when the collector was paused, freeze what exists now (the modules and the
    engine live as long as the process; later collections skip them) and collect again."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
