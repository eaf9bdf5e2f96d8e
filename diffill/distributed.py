"""Engine work on a Ray cluster: workers that each build one engine, and a driver loop that hands
them tasks, retries the tasks of a worker that died, and cancels what is left when it stops.

Ray is an optional extra (``pip install 'diffill[ray]'``) and is imported only when a pool starts.
The driver keeps everything that touches files: workers get payloads and return results.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from diffill.errors import DiffillError

if TYPE_CHECKING:
    from diffill.engine import Engine, EngineConfig

log = logging.getLogger(__name__)

EXTRA = "diffill[ray]"
WAIT_S = 0.5  # the driver looks up from ray.wait this often, so Ctrl-C is handled promptly


def import_ray():
    """The ``ray`` module, or a DiffillError that names the extra to install."""
    try:
        import ray
    except ImportError as e:
        raise DiffillError(f"--ray needs Ray, which is not installed: pip install '{EXTRA}'") from e
    return ray


def ray_options(address: str | None, workers: int | None = None) -> RayOptions | None:
    """RayOptions from a ``--ray`` value (None: not given; "": the cluster Ray finds, or a new one);
    a clear error when Ray is not installed."""
    if address is None:
        return None
    import_ray()
    return RayOptions(address=address or None, workers=workers)


@dataclass(frozen=True)
class EngineSpec:
    """The engine's construction arguments, small and picklable, as a worker gets them; calling
    the spec builds the engine (once per worker)."""

    model: str | None = None
    adapter: str | None = None
    dtype: str = "auto"
    copy: bool = True
    library: str | None = "default"
    device: str = "auto"  # cpu | cuda | auto, as --device
    threads: int = 0  # torch threads; 0: torch's default
    languages: str | tuple[str, ...] | None = None  # as --languages (None: the model's own)
    # every context encoded whole: a worker's fills must not depend on which batches it got before
    context_reuse: bool = False

    @classmethod
    def from_args(cls, args: object, **changes: Any) -> EngineSpec:
        """The spec from a command's parsed options of the same names (absent ones keep defaults)."""
        given = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**{**given, **changes})

    def config(self) -> EngineConfig:
        from diffill.engine import EngineConfig

        return EngineConfig(**{f.name: getattr(self, f.name) for f in fields(EngineSpec)})

    def __call__(self) -> Engine:
        from diffill.engine import Engine

        return Engine(self.config())


@dataclass(frozen=True)
class RayOptions:
    # None: the cluster ``ray.init()`` finds (RAY_ADDRESS, or one ``ray start`` runs on this
    # machine), else a new one on this machine for this run; "auto": an existing cluster only;
    # otherwise its address (host:port, or ray://host:10001 through Ray Client)
    address: str | None = None
    workers: int | None = None  # None: one per ``cpus`` CPUs of the cluster (at most one per task)
    cpus: float = 1.0  # CPUs each worker reserves
    gpus: float = 0.0  # GPUs each worker reserves
    attempts: int = 3  # tries of one task (on different workers) before the run fails
    in_flight: int = 2  # tasks queued at each worker, so it never waits for the driver


@dataclass
class WorkerInfo:
    pid: int
    host: str
    engine: dict  # the engine's info() (model, adapter), {} for engines without one


class _Worker:
    """One Ray actor: builds its engine once, then runs task functions with it."""

    def __init__(self, factory: Callable[[], Any]):
        self.engine, self.error = None, ""
        try:
            self.engine = factory()
        except Exception as e:  # reported by ready(), so the driver can say it plainly
            self.error = str(e) if isinstance(e, DiffillError) else f"{type(e).__name__}: {e}"

    def ready(self) -> tuple[str, WorkerInfo]:
        info = self.engine.info() if hasattr(self.engine, "info") else {}
        return self.error, WorkerInfo(os.getpid(), socket.gethostname(), info)

    def run(self, fn: Callable[[Any, Any], Any], payload: Any) -> Any:
        if self.engine is None:
            raise DiffillError(f"this worker has no engine: {self.error}")
        return fn(self.engine, payload)


def connect(ray, options: RayOptions) -> bool:
    """Connect this process to the cluster ``options`` names (see RayOptions.address); False when
    it was connected already (a caller's own connection, used and left open)."""
    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        if options.address is None:
            try:
                ray.init(address="auto", **quiet)
            except ConnectionError:  # none running: a new one here, as large as the workers need
                cpus = options.workers and max(1, int(options.workers * options.cpus))
                ray.init(address="local", num_cpus=cpus or None, **quiet)
        else:
            if options.address != "auto" and "://" not in options.address:
                _reachable(options.address)  # ray.init would wait minutes for a wrong address
            ray.init(address=options.address, **quiet)
    except ConnectionError as e:
        hint = "" if os.environ.get("RAY_AUTH_MODE") else (
            " (a cluster with token authentication, Ray's default, needs RAY_AUTH_MODE=token here too)")
        raise DiffillError(f"cannot reach a Ray cluster at {options.address}: {e}{hint}") from e
    return True


def _reachable(address: str) -> None:
    """A DiffillError unless ``address`` is host:port and something listens there."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DiffillError(f"--ray {address!r}: expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise DiffillError(f"cannot reach a Ray cluster at {address}: {e.strerror or e}") from e


@contextmanager
def connected(options: RayOptions) -> Iterator[None]:
    """This process connected to the cluster while inside (pools made inside use the connection),
    disconnected on the way out when it was not connected before."""
    ray = import_ray()
    mine = connect(ray, options)
    try:
        yield
    finally:
        if mine:
            ray.shutdown()


class RayPool:
    """Workers on a Ray cluster, each holding one engine built by ``factory`` (a picklable
    callable, such as an EngineSpec). Use as a context manager, ``start`` then ``map``: leaving it
    cancels the tasks still out, stops the workers and disconnects."""

    def __init__(self, factory: Callable[[], Any], options: RayOptions | None = None):
        self.factory, self.options = factory, options or RayOptions()
        self.workers = 0  # started at first
        self.replaced = 0  # workers started again after one died
        self.retried = 0  # tasks sent again after their worker died
        self.info: list[WorkerInfo] = []
        self._ray = None
        self._connected = False
        self._actors: list = []
        self._gens: list[int] = []  # how often each worker slot was started again
        self._worker_class = None
        self._running: dict = {}  # ObjectRef -> (payload index, worker slot, worker generation)

    # --- connecting and starting -------------------------------------------------------------

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, tasks: int | None = None) -> None:
        """Connect and start the workers (at most ``tasks`` of them); a worker that cannot build
        its engine is a DiffillError."""
        ray = self._ray = import_ray()
        self._connect(ray)
        n = self.options.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(self.options.cpus, 1e-9)))
        if tasks is not None:
            n = max(1, min(n, tasks))
        self._actors = [self._actor() for _ in range(n)]
        self._gens = [0] * n
        self.workers = n
        try:
            answers = ray.get([a.ready.remote() for a in self._actors])
        except ray.exceptions.RayError as e:  # a worker lost while it started
            raise DiffillError(f"a Ray worker could not start: {e}") from e
        errors = [e for e, _ in answers if e]
        if errors:
            raise DiffillError(f"a Ray worker could not build its engine: {errors[0]}")
        self.info = [i for _, i in answers]
        hosts = sorted({i.host for i in self.info})
        log.info("%d Ray workers ready on %s", n, ", ".join(hosts))

    def _connect(self, ray) -> None:
        self._connected = connect(ray, self.options)

    def _actor(self):
        if self._worker_class is None:
            self._worker_class = self._ray.remote(_Worker).options(
                num_cpus=self.options.cpus, num_gpus=self.options.gpus, max_restarts=0, max_task_retries=0)
        return self._worker_class.remote(self.factory)

    # --- running -----------------------------------------------------------------------------

    def map(self, fn: Callable[[Any, Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """``(index, fn(engine, payloads[index]))`` for every payload, as they finish. A task whose
        worker dies goes to another worker (``options.attempts`` tries in all); an exception
        raised by ``fn`` is raised here."""
        ray = self._ray
        from ray.exceptions import (NodeDiedError, ObjectLostError, OutOfMemoryError, RayActorError,
                                    RayTaskError, WorkerCrashedError)

        lost = (RayActorError, WorkerCrashedError, NodeDiedError, ObjectLostError, OutOfMemoryError)
        todo = deque(range(len(payloads)))
        tries = [0] * len(payloads)
        done: set[int] = set()
        load = [0] * len(self._actors)
        starting: dict = {}  # ready() of a replacement worker -> its slot; it gets tasks once ready
        while todo or self._running:
            for slot, actor in enumerate(self._actors):
                while todo and load[slot] < self.options.in_flight and slot not in starting.values():
                    i = todo.popleft()
                    tries[i] += 1
                    self._running[actor.run.remote(fn, payloads[i])] = (i, slot, self._gens[slot])
                    load[slot] += 1
            waiting = list(self._running) + list(starting)
            ready, _ = ray.wait(waiting, num_returns=1, timeout=WAIT_S)
            for ref in ready:
                if ref in starting:
                    slot = starting.pop(ref)
                    try:
                        error, info = ray.get(ref)
                    except lost as e:  # lost again while it started: once more, within bounds
                        if self.replaced >= self.options.attempts * self.workers:
                            raise DiffillError(f"Ray workers keep being lost; last: {e}") from e
                        starting[self._replace(slot)] = slot
                        continue
                    if error:
                        raise DiffillError(f"a Ray worker could not build its engine: {error}")
                    self.info.append(info)
                    continue
                i, slot, gen = self._running.pop(ref)
                if gen == self._gens[slot]:
                    load[slot] -= 1
                try:
                    result = ray.get(ref)
                except RayTaskError as e:
                    cause = e.cause if isinstance(getattr(e, "cause", None), Exception) else None
                    raise (cause if isinstance(cause, DiffillError) else DiffillError(f"a Ray task failed: {e}")) from e
                except lost as e:
                    if i in done:
                        continue
                    self.retried += 1
                    if tries[i] >= self.options.attempts:
                        raise DiffillError(f"a task failed on {tries[i]} Ray workers in turn; last: {e}") from e
                    log.warning("a Ray worker was lost (%s); its task goes to another", type(e).__name__)
                    todo.appendleft(i)
                    if gen == self._gens[slot]:
                        starting[self._replace(slot)] = slot
                        load[slot] = 0
                    continue
                if i not in done:  # a task is never taken twice, even if sent twice
                    done.add(i)
                    yield i, result

    def _replace(self, slot: int):
        """Start a new worker in place of a dead one; its ready() reference."""
        try:
            self._ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # already gone
            pass
        self._actors[slot] = self._actor()
        self._gens[slot] += 1
        self.replaced += 1
        return self._actors[slot].ready.remote()

    # --- stopping ----------------------------------------------------------------------------

    def close(self) -> None:
        """Cancel the tasks still out, stop the workers, disconnect (when this pool connected)."""
        ray = self._ray
        if ray is None:
            return
        for ref in list(self._running):
            try:
                ray.cancel(ref)
            except Exception:  # finished or its worker gone
                pass
        self._running.clear()
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass
        self._actors = []
        if self._connected:
            ray.shutdown()
            self._connected = False
