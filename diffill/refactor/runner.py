"""A refactoring run: read files, select regions, fill them in batches (optionally in several
processes), keep only syntax-valid fills, then report a diff or write each file atomically."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Protocol

from tqdm import tqdm

from diffill.distributed import RayOptions, RayPool
from diffill.engine import InfillRequest, InfillResult
from diffill.errors import DiffillError
from diffill.languages import refusal, serves
from diffill.refactor.files import FileFilter, Skipped, Snapshot, collect_files, read_snapshot
from diffill.refactor.selection import (
    Region,
    compile_query,
    find_holes,
    find_query,
    merge,
    still_a_hole,
)
from diffill.refactor.syntax import fill_is_valid, syntax_errors
from diffill.refactor.writing import WriteSkipped, write_atomic

log = logging.getLogger(__name__)


class InfillEngine(Protocol):
    def infill_many(self, reqs: list[InfillRequest]) -> list[InfillResult]: ...


EngineFactory = Callable[[], InfillEngine]


@dataclass
class RefactorConfig:
    paths: list[str]
    holes: bool = False  # placeholder bodies and fill markers
    query: str | None = None  # a tree-sitter query; every @fill capture is regenerated
    filter: FileFilter = field(default_factory=FileFilter)
    write: bool = False  # False: a dry run
    jobs: int = 1  # processes filling regions
    batch_size: int = 16  # regions per engine call (they share forward passes)
    # a region whose fill is less confident than this (InfillResult.confidence) is left as it is
    min_confidence: float = 0.0
    progress: bool = False  # a tqdm bar on stderr
    # fill on a Ray cluster instead (the engine factory must then be picklable, e.g. an EngineSpec);
    # this process still reads and writes every file
    ray: RayOptions | None = None
    # the languages the model fills (diffill.languages.served); files in others are skipped. None: all
    languages: tuple[str, ...] | None = None


@dataclass
class FileOutcome:
    path: str
    old: str
    new: str
    regions: int
    filled: int
    rejected: int
    written: bool = False
    skipped: str = ""  # why the file was left as it is ("" when it was not skipped)
    reasons: list[str] = field(default_factory=list)  # why each rejected region's fill was


@dataclass
class Summary:
    files: int = 0  # source files read
    regions: int = 0
    filled: int = 0  # regions with a valid fill (applied, or shown in the dry run)
    rejected: int = 0  # regions whose fill was empty, still a placeholder, not valid syntax or not confident
    reasons: Counter = field(default_factory=Counter)  # those three reasons, counted
    skipped: int = 0  # files left as they are, each in ``problems`` with the reason
    written: int = 0  # files replaced on disk
    seconds: float = 0.0
    problems: list[Skipped] = field(default_factory=list)
    workers: int = 0  # processes (or Ray workers) that filled regions
    tasks_retried: int = 0  # batches sent again after their Ray worker died

    @property
    def ok(self) -> bool:
        return self.rejected == 0 and self.skipped == 0

    def as_json(self) -> dict:
        return {"files": self.files, "regions": self.regions, "filled": self.filled,
                "rejected": self.rejected, "rejected_because": dict(self.reasons),
                "skipped": self.skipped, "written": self.written,
                "seconds": round(self.seconds, 3), "workers": self.workers,
                "tasks_retried": self.tasks_retried,
                "problems": [{"path": p.path, "reason": p.reason} for p in self.problems]}


@dataclass
class _Job:
    key: tuple[int, int]  # (file index, region index)
    request: InfillRequest


def select_regions(snap: Snapshot, holes: bool, query_source: str | None,
                   queries: dict[str, object]) -> list[Region]:
    groups = []
    if holes:
        stub = snap.path.endswith(".pyi")  # ``...`` bodies are what stub files are made of
        groups.append(find_holes(snap.text, snap.lang, placeholders=not stub))
    if query_source is not None:
        if snap.lang not in queries:
            try:
                queries[snap.lang] = compile_query(query_source, snap.lang)
            except DiffillError as e:
                queries[snap.lang] = e
        q = queries[snap.lang]
        if isinstance(q, DiffillError):
            raise q
        groups.append(find_query(snap.text, snap.lang, q))  # type: ignore[arg-type]
    return merge(*groups)


def _request(snap: Snapshot, region: Region, min_confidence: float = 0.0) -> InfillRequest:
    doc, start, end = region.hole(snap.text)
    multiline = True if not region.regenerate else "\n" in snap.text[region.start : region.end]
    return InfillRequest(doc, start, end, language=snap.lang, path=snap.path, multiline=multiline,
                         min_confidence=min_confidence)


def clean_fill(fill: str, snap: Snapshot, region: Region) -> str:
    """The engine's fill (in the file's line endings) fitted to its place: no whitespace around
    it where its line ends anyway."""
    after = region.trail + snap.text[region.end :]
    if not after or after.startswith(("\n", "\r\n")):
        fill = fill.rstrip()
    # a cursor hole starts after its line's indentation: the fill's first line starts with code
    return fill if region.regenerate else fill.lstrip()


LOW_CONFIDENCE = "below --min-confidence"  # a region left alone: its fill was not confident enough


def _rejection(fill: str, lang: str) -> str | None:
    stripped = fill.strip()
    if not stripped:
        return "empty fill"
    if still_a_hole(stripped, lang):
        return "still a placeholder"
    return None


def _compose(snap: Snapshot, regions: list[Region], fills: list[str | None],
             keep: list[bool]) -> tuple[str, list[tuple[int, int, int]]]:
    """The file with the kept fills in place, and (region index, start, end) of each fill in it."""
    parts, spans, cursor, size = [], [], 0, 0
    for i, (r, f) in enumerate(zip(regions, fills)):
        if not keep[i] or f is None:
            continue
        head = snap.text[cursor : r.start] + r.lead
        parts += [head, f, r.trail]
        size += len(head)
        spans.append((i, size, size + len(f)))
        size += len(f) + len(r.trail)
        cursor = r.end
    return "".join(parts) + snap.text[cursor:], spans


def apply_fills(snap: Snapshot, regions: list[Region], fills: list[str | None]) -> tuple[str, list[int]]:
    """The file with every valid fill applied, and the indices of the regions whose fill was kept.

    A fill is kept when, with the other kept fills in place, it brings no new syntax error near
    it (``grammar.validity``) and the file as a whole has no more error nodes than before; fills
    that fail are dropped until the rest hold together."""
    keep = [f is not None and _rejection(f, snap.lang) is None for f in fills]
    baseline = syntax_errors(snap.text, snap.lang)
    while True:
        text, spans = _compose(snap, regions, fills, keep)
        bad = [i for i, a, b in spans if not fill_is_valid(text[:a], text[a:b], text[b:], snap.lang)]
        if not bad and spans and syntax_errors(text, snap.lang) > baseline:
            # an error the local check did not see: drop the fills that bring one on their own
            alone = [[j == i for j in range(len(keep))] for i, _, _ in spans]
            bad = [i for (i, _, _), only in zip(spans, alone)
                   if syntax_errors(_compose(snap, regions, fills, only)[0], snap.lang) > baseline]
            bad = bad or [i for i, _, _ in spans]  # each is fine alone, together they are not
        if not bad:
            return text, [i for i, _, _ in spans]
        for i in bad:
            keep[i] = False


# --- inference, in this process or in workers -------------------------------------------------

_worker_engine: InfillEngine | None = None


def _init_worker(factory: EngineFactory) -> None:
    global _worker_engine
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _worker_engine = factory()


def _fill_in_worker(jobs: list[_Job]) -> list[tuple[tuple[int, int], str | None]]:
    assert _worker_engine is not None
    return _fill(_worker_engine, jobs)


def _fill(engine: InfillEngine, jobs: list[_Job]) -> list[tuple[tuple[int, int], str | None]]:
    """Each job's fill; None for one withheld as not confident enough."""
    results = engine.infill_many([j.request for j in jobs])
    return [(j.key, None if r.withheld else r.text) for j, r in zip(jobs, results)]


def _chunks(jobs: list[_Job], size: int) -> list[list[_Job]]:
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def _filled(factory: EngineFactory, chunks: list[list[_Job]], processes: int, summary: Summary,
            ray: RayOptions | None = None) -> Iterator[list[tuple[tuple[int, int], str | None]]]:
    if ray is not None:
        with RayPool(factory, ray) as pool:
            pool.start(tasks=len(chunks))
            summary.workers = pool.workers
            for _, done in pool.map(_fill, chunks):
                summary.tasks_retried = pool.retried
                yield done
            summary.tasks_retried = pool.retried
        return
    summary.workers = 1 if processes <= 1 or len(chunks) <= 1 else min(processes, len(chunks))
    if summary.workers == 1:
        engine = factory()
        for chunk in chunks:
            yield _fill(engine, chunk)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=min(processes, len(chunks)), initializer=_init_worker,
                  initargs=(factory,)) as pool:  # leaving the block terminates the workers
        yield from pool.imap_unordered(_fill_in_worker, chunks)


# --- the run ----------------------------------------------------------------------------------

def run_refactor(config: RefactorConfig, engine_factory: EngineFactory,
                 on_file: Callable[[FileOutcome], None] | None = None) -> Summary:
    """Fill every selected region under ``config.paths``. ``on_file`` sees each file once it is
    finished (a dry run's diff, or after its write), in the order the files were found. DiffillError
    for bad arguments."""
    if not config.holes and config.query is None:
        raise DiffillError("nothing to select: give --holes, --query or both")
    if config.jobs < 1 or config.batch_size < 1:
        raise DiffillError("--jobs and the batch size must be at least 1")
    t0 = time.perf_counter()
    summary = Summary()
    candidates, skipped = collect_files(config.paths, config.filter)
    summary.problems.extend(skipped)

    snaps: list[Snapshot] = []
    regions: list[list[Region]] = []
    queries: dict[str, object] = {}
    query_errors: list[DiffillError] = []
    for path, lang in candidates:
        if config.languages is not None and not serves(config.languages, lang):
            summary.problems.append(Skipped(path, refusal(config.languages, lang)))
            continue
        snap = read_snapshot(path, lang)
        if isinstance(snap, Skipped):
            summary.problems.append(snap)
            continue
        try:
            found = select_regions(snap, config.holes, config.query, queries)
        except DiffillError as e:
            query_errors.append(e)
            summary.problems.append(Skipped(path, str(e)))
            continue
        summary.files += 1
        snaps.append(snap)
        regions.append(found)
    if query_errors and not snaps:
        raise query_errors[0]  # the query fits none of the files' languages: a usage error

    jobs = [_Job((i, j), _request(snap, r, config.min_confidence))
            for i, snap in enumerate(snaps) for j, r in enumerate(regions[i])]
    summary.regions = len(jobs)
    fills: list[list[str | None]] = [[None] * len(rs) for rs in regions]
    withheld: list[set[int]] = [set() for _ in regions]  # regions left alone: fills below min_confidence
    remaining = [len(rs) for rs in regions]

    def finish(i: int) -> None:
        outcome = _finish(snaps[i], regions[i], fills[i], config.write, withheld[i])
        summary.filled += outcome.filled
        summary.rejected += outcome.rejected
        summary.reasons.update(outcome.reasons)
        summary.written += outcome.written
        if outcome.skipped:
            summary.problems.append(Skipped(outcome.path, outcome.skipped))
        if on_file is not None:
            on_file(outcome)

    # files are finished in the order they were found, whichever of their fills come back first (worker
    # processes and Ray workers return batches as they finish): the same diff and report on every run
    finished = 0

    def finish_ready() -> None:
        nonlocal finished
        while finished < len(snaps) and remaining[finished] == 0:
            finish(finished)
            finished += 1

    finish_ready()
    show_bar = config.progress and bool(jobs)
    bar = tqdm(total=len(jobs), unit="region", desc="refactor", dynamic_ncols=True, leave=False,
               disable=None if show_bar else True)  # None: only when stderr is a terminal
    batches = _filled(engine_factory, _chunks(jobs, config.batch_size), config.jobs, summary, config.ray)
    # closed on the way out, so that Ctrl-C while a file is written stops the workers at once too
    with closing(batches), bar:
        for done in batches if jobs else ():
            for (i, j), text in done:
                if text is None:
                    withheld[i].add(j)
                else:
                    fills[i][j] = clean_fill(text, snaps[i], regions[i][j])
                remaining[i] -= 1
            finish_ready()
            bar.update(len(done))
    summary.skipped = len(summary.problems)
    summary.seconds = time.perf_counter() - t0
    return summary


def _finish(snap: Snapshot, regions: list[Region], fills: list[str | None], write: bool,
            withheld: set[int] | frozenset[int] = frozenset()) -> FileOutcome:
    new, kept = apply_fills(snap, regions, fills) if regions else (snap.text, [])
    reasons = []
    for j in sorted(set(range(len(regions))) - set(kept)):
        reasons.append(LOW_CONFIDENCE if j in withheld else _rejection(fills[j] or "", snap.lang) or "not valid syntax")
        log.info("%s:%d: %s fill rejected: %s", snap.path, regions[j].line, regions[j].kind, reasons[-1])
    outcome = FileOutcome(snap.path, snap.text, new, len(regions), len(kept), len(regions) - len(kept),
                          reasons=reasons)
    if write and new != snap.text:
        try:
            write_atomic(snap, new)
            outcome.written = True
        except WriteSkipped as e:
            outcome.skipped = str(e)
            outcome.filled = 0
            log.warning("%s: not written: %s", snap.path, e)
    return outcome
