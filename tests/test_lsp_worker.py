"""The engine worker thread (lsp_server/worker.py), with a stand-in engine."""

import asyncio
import gc
import threading
import time
from types import SimpleNamespace

import pytest

from diffill.errors import DiffillError
from diffill.lsp_server.worker import EngineWorker, pause_collection


class FakeEngine:
    def __init__(self, config):
        if config.model == "missing":
            raise DiffillError("model folder not found: missing")
        self.config = config
        self.thread = None

    def info(self):
        return {"model": self.config.model, "parameters": 1}


async def test_jobs_run_in_the_worker_thread_not_the_event_loop():
    worker = EngineWorker(factory=FakeEngine)
    assert (await worker.load("m", None).future).loaded
    job = worker.submit(lambda engine, job: threading.current_thread().name)
    assert await job.future == "diffill-engine"
    assert job.engine_ms >= 0
    worker.stop()


async def test_missing_model_fails_requests_with_the_reason_and_how_to_fix_it():
    worker = EngineWorker(factory=FakeEngine)
    state = await worker.load("missing", None).future
    assert not state.loaded and "model folder not found" in state.error and "diffill.model" in state.error
    with pytest.raises(DiffillError, match="model folder not found"):
        await worker.submit(lambda engine, job: 1).future
    worker.stop()


async def test_a_job_cancelled_before_it_starts_is_skipped():
    worker = EngineWorker(factory=FakeEngine)
    await worker.load("m", None).future
    gate = threading.Event()
    first = worker.submit(lambda engine, job: gate.wait(5))
    ran = []
    second = worker.submit(lambda engine, job: ran.append(1))
    second.cancel()
    gate.set()
    assert await first.future is True
    assert await second.future is None and ran == []
    worker.stop()


async def test_errors_in_a_job_reach_the_caller_and_the_worker_lives_on():
    worker = EngineWorker(factory=FakeEngine)
    await worker.load("m", None).future

    def boom(engine, job):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await worker.submit(boom).future
    assert await worker.submit(lambda engine, job: engine.config.model).future == "m"
    worker.stop()


async def test_cancel_flag_is_visible_to_the_running_job():
    worker = EngineWorker(factory=FakeEngine)
    await worker.load("m", None).future
    started = threading.Event()

    def run(engine, job):
        started.set()
        while not job.is_cancelled():
            time.sleep(0.001)
        return "stopped"

    job = worker.submit(run)
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    job.cancel()
    assert await job.future == "stopped"
    worker.stop()


class FillingEngine(FakeEngine):
    """A stand-in engine that records the holes it is asked to fill."""

    def __init__(self, config):
        super().__init__(config)
        self.filled = []

    def infill(self, req, cancelled=None):
        self.filled.append((req.text, req.start, req.language))
        return None


async def test_loading_warms_the_engine_up_when_no_request_waits():
    from diffill.lsp_server.worker import WARM_UP_HOLES, WARM_UP_TEXT

    worker = EngineWorker(factory=FillingEngine)
    state = await worker.load("m", None).future
    assert state.loaded and state.warm_up == "done" and state.load_ms >= state.warm_up_ms > 0
    assert await worker.submit(lambda engine, job: list(engine.filled)).future == [
        (WARM_UP_TEXT, at, "python") for at in WARM_UP_HOLES]
    worker.stop()


async def test_a_request_waiting_for_the_load_runs_first_without_a_warm_up():
    worker = EngineWorker(factory=FillingEngine)
    load = worker.load("m", None)
    request = worker.submit(lambda engine, job: list(engine.filled))  # queued behind the load
    state = await load.future
    assert state.loaded and state.warm_up == "skipped" and state.warm_up_ms == 0
    assert await request.future == []  # it found no warm-up fill before it
    worker.stop()


class SlowFillingEngine(FillingEngine):
    """Denoises until cancelled (a few seconds at most), as a long warm-up fill would."""

    started = threading.Event()

    def infill(self, req, cancelled=None):
        super().infill(req)
        self.started.set()
        deadline = time.monotonic() + 5
        while not cancelled() and time.monotonic() < deadline:
            time.sleep(0.001)
        return SimpleNamespace(cancelled=cancelled())


async def test_a_request_during_the_warm_up_stops_it_between_steps():
    worker = EngineWorker(factory=SlowFillingEngine)
    load = worker.load("m", None)
    await asyncio.get_running_loop().run_in_executor(None, SlowFillingEngine.started.wait, 5)
    request = worker.submit(lambda engine, job: len(engine.filled))
    state = await load.future
    assert state.loaded and state.warm_up == "stopped"
    assert await request.future == 1  # the second warm-up hole was never started
    worker.stop()


async def test_the_collector_paused_for_the_start_runs_again_after_the_first_load_even_a_failed_one():
    worker = EngineWorker(factory=FakeEngine)
    pause_collection()
    try:
        assert not gc.isenabled()
        state = await worker.load("missing", None).future
        assert not state.loaded
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
        worker.stop()


async def test_a_failing_warm_up_leaves_the_engine_serving():
    class Failing(FakeEngine):
        def infill(self, req, cancelled=None):
            raise RuntimeError("cannot fill")

    worker = EngineWorker(factory=Failing)
    state = await worker.load("m", None).future
    assert state.loaded and state.error is None
    assert await worker.submit(lambda engine, job: engine.config.model).future == "m"
    worker.stop()
