"""``diffill bench lsp [--json]``: the language server's own overhead.

Starts ``diffill serve`` as a subprocess, talks to it over stdio as an editor would, and sends
inline-completion requests one at a time at distinct cursors of a real source file (every one a
model call), then repeats some of them (cache hits). The server times each request from its
arrival to its answer and subtracts the time the engine spent on it; ``diffill.status`` returns
those numbers. The overhead is split into thread hand-offs (queue to the worker that owns the
engine, and back to the event loop: scheduler wake-ups, which grow with machine load) and the
rest (parsing, positions, cache, serialising). Reported separately: the server's overhead (p50/p95), the engine time, the round
trip the client saw (which adds the pipe and the client's own JSON work), and cache-hit answers;
and the first completion after ``initialize``: the milliseconds from sending ``initialize`` (right
after starting the server, as an editor does) to the answer of a completion sent right after
``initialized``, while the server still loads its model.
The targets are an overhead p50 of at most 5 ms and a first completion within 2 s of ``initialize``;
the command exits 1 when one is missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

from diffill.errors import DiffillError

log = logging.getLogger(__name__)

TARGET_P50_MS = 5.0
TARGET_FIRST_MS = 2000.0  # initialize sent -> the first completion answered


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(values), "p50": round(statistics.median(ordered), 3), "p95": round(p95, 3),
            "max": round(ordered[-1], 3)}


def cursors(text: str, n: int) -> list[tuple[int, int]]:
    """``n`` distinct mid-line cursors on code lines, spread over the file."""
    lines = text.split("\n")
    code = [i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith("#")
            and len(line.strip()) > 8]
    if not code:
        raise DiffillError("the file has no code lines to complete")
    step = max(1, len(code) // n)
    picked = []
    for i in code[::step][:n]:
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        picked.append((i, indent + (len(line) - indent) // 2))
    return picked


async def _measure(args, source: Path, text: str) -> dict:
    from lsprotocol import types
    from pygls.exceptions import JsonRpcException
    from pygls.lsp.client import LanguageClient

    cmd = [args.server_python or sys.executable, "-m", "diffill.cli", "serve", "--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", args.model]
    client = LanguageClient("diffill-bench", "1")
    client.feature(types.WINDOW_LOG_MESSAGE)(lambda params: log.debug("server: %s", params.message))
    client.feature(types.WINDOW_SHOW_MESSAGE)(lambda params: log.info("server: %s", params.message))
    exited = False
    spawned = time.perf_counter()
    await client.start_io(*cmd, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    drain = asyncio.create_task(_drain(client._server.stderr))
    try:
        started = time.perf_counter()
        await client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            # every fill shown (none withheld by confidence), so that the cache-hit requests have suggestions to repeat
            initialization_options={"maxTokens": args.max_tokens, "minConfidence": 0.0}))
        initialize_ms = (time.perf_counter() - started) * 1000.0
        client.initialized(types.InitializedParams())
        uri = source.resolve().as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)))

        async def status() -> dict:
            return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="diffill.status"))

        async def complete(line: int, character: int) -> tuple[float, bool]:
            """Round-trip time, and whether something was suggested."""
            t0 = time.perf_counter()
            answer = await client.text_document_inline_completion_async(types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri), position=types.Position(line, character),
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
            return (time.perf_counter() - t0) * 1000.0, bool(answer and answer.items)

        points = cursors(text, args.requests + 5)
        try:
            await complete(*points[0])  # asked while the model loads: answered once it can be
        except JsonRpcException as e:  # the model did not load: status says why
            s = await status()
            raise DiffillError(s["error"] or f"the first completion failed: {e}") from None
        first_ms = (time.perf_counter() - started) * 1000.0
        first_from_spawn_ms = (time.perf_counter() - spawned) * 1000.0
        first_cpu_ms = _cpu_ms(client._server.pid)
        for p in points[1:5]:  # warm-up
            await complete(*p)
        points = points[5:]
        misses, shown = [], []
        for p in points:
            ms, suggested = await complete(*p)
            misses.append(ms)
            if suggested:  # only what was suggested is cached
                shown.append(p)
        hits = [(await complete(*shown[i % len(shown)]))[0] for i in range(args.cache_requests if shown else 0)]
        s = await status()
        await client.shutdown_async(None)
        client.exit(None)
        exited = True
    finally:
        drain.cancel()
        server = client._server
        if server is not None and server.returncode is None:
            try:
                await asyncio.wait_for(server.wait(), 10 if exited else 0.01)
            except asyncio.TimeoutError:
                server.kill()
        await client.stop()
    n, m = len(misses), len(hits)
    overhead, engine = s["overhead_ms"][-(n + m):], s["engine_ms"][-(n + m):]
    handoff = s["handoff_ms"][-(n + m):]
    return {
        "model": s["model"], "file": str(source), "requests": n, "cache_requests": m,
        "max_tokens": args.max_tokens, "threads": args.threads,
        "overhead_ms": _stats(overhead[:n]),
        "engine_ms": _stats(engine[:n]),
        "handoff_ms": _stats(handoff[:n]),
        "protocol_ms": _stats([o - h for o, h in zip(overhead[:n], handoff[:n])]),
        "round_trip_ms": _stats(misses),
        # initialize sent (right after the server was started) -> the first completion answered
        "first_completion_ms": round(first_ms, 1),
        "first_completion_from_start_ms": round(first_from_spawn_ms, 1),  # ... from starting the server
        "initialize_ms": round(initialize_ms, 1),  # initialize sent -> answered (the server's own start)
        # the server process's CPU time by then (all threads; None where /proc is missing): its start is
        # one thread's work, so this is about the wall time an idle machine would take
        "first_completion_cpu_ms": first_cpu_ms,
        # the server's own timings: initialize received -> ready, the load (warm-up included), the warm-up
        "ready_ms": s.get("ready_ms"), "load_ms": s.get("load_ms"), "warm_up_ms": s.get("warm_up_ms"),
        "warm_up": s.get("warm_up"),
        "cache_hit_overhead_ms": _stats(overhead[n:]),
        "cache_hit_round_trip_ms": _stats(hits),
        "counters": s["counters"],
        "target_overhead_p50_ms": TARGET_P50_MS,
        "target_first_completion_ms": TARGET_FIRST_MS,
    }


def _cpu_ms(pid: int) -> float | None:
    """User and system CPU time of process ``pid`` so far (Linux' /proc), in ms; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return round((int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK"), 1)


async def _drain(stream) -> None:
    while stream is not None and await stream.readline():
        pass


def run(args) -> int:
    import sysconfig

    if args.requests < 1 or args.cache_requests < 0:
        raise DiffillError("--requests must be at least 1 and --cache-requests at least 0")
    source = Path(args.file) if args.file else Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DiffillError(f"cannot read {source}: {e}") from None
    report = asyncio.run(_measure(args, source, text))
    p50 = report["overhead_ms"]["p50"]
    overhead_ok = p50 is not None and p50 <= TARGET_P50_MS
    first_ok = report["first_completion_ms"] <= TARGET_FIRST_MS
    report["ok"] = overhead_ok and first_ok
    if args.json:
        print(json.dumps(report))
    else:
        o, e, r = report["overhead_ms"], report["engine_ms"], report["round_trip_ms"]
        h, hr = report["cache_hit_overhead_ms"], report["cache_hit_round_trip_ms"]
        print(f"model {report['model']}  file {report['file']}  {report['requests']} requests, "
              f"maxTokens {report['max_tokens']}, {report['threads']} thread(s)")
        print(f"server overhead   p50 {o['p50']:.2f} ms  p95 {o['p95']:.2f} ms  (target p50 <= {TARGET_P50_MS} ms: "
              f"{'ok' if overhead_ok else 'MISSED'})")
        hw, pw = report["handoff_ms"], report["protocol_ms"]
        print(f"  of which thread hand-offs p50 {hw['p50']:.2f} ms, the rest p50 {pw['p50']:.2f} ms")
        print(f"engine            p50 {e['p50']:.2f} ms  p95 {e['p95']:.2f} ms")
        print(f"client round trip p50 {r['p50']:.2f} ms  p95 {r['p95']:.2f} ms")
        print(f"first completion  {report['first_completion_ms']:.0f} ms after initialize (target <= "
              f"{TARGET_FIRST_MS:.0f} ms: {'ok' if first_ok else 'MISSED'}); "
              f"{report['first_completion_from_start_ms']:.0f} ms after starting the server, which answered "
              f"initialize in {report['initialize_ms']:.0f} ms"
              + (f" and was ready {report['ready_ms']:.0f} ms after it" if report["ready_ms"] is not None else ""))
        if report["first_completion_cpu_ms"] is not None:
            print(f"                  the server's CPU time by then {report['first_completion_cpu_ms']:.0f} ms "
                  "(about an idle machine's wall time)")
        if h["n"]:
            print(f"cache hits        overhead p50 {h['p50']:.2f} ms  p95 {h['p95']:.2f} ms; "
                  f"round trip p50 {hr['p50']:.2f} ms  p95 {hr['p95']:.2f} ms")
    return 0 if report["ok"] else 1
