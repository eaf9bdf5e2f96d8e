"""``diffill bench lsp``: the report's shape on the tiny model (timings are not asserted)."""

import json
import sys

from diffill.bench.lsp import _stats, cursors
from diffill.cli import main


def test_stats_of_nothing_and_of_values():
    assert _stats([]) == {"n": 0, "p50": None, "p95": None, "max": None}
    s = _stats([float(x) for x in range(1, 101)])
    assert s["n"] == 100 and s["p50"] == 50.5 and s["p95"] == 95.0 and s["max"] == 100.0


def test_cursors_are_distinct_mid_line_positions_on_code():
    text = "import os\n\n# comment\ndef function_name(a, b):\n    return a + b\n"
    points = cursors(text, 10)
    assert len(points) == len(set(points)) == 3  # not the blank line or the comment
    for line, character in points:
        assert 0 < character < len(text.split("\n")[line])


def test_bench_reports_overhead_engine_and_round_trip(tiny_checkpoint, capsys):
    code = main(["bench", "lsp", "--model", str(tiny_checkpoint), "--requests", "4", "--cache-requests", "2",
                 "--max-tokens", "4", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == (0 if report["ok"] else 1)
    assert report["model"] == str(tiny_checkpoint) and report["requests"] == 4
    for key in ("overhead_ms", "engine_ms", "round_trip_ms", "handoff_ms", "protocol_ms"):
        assert report[key]["n"] == 4 and report[key]["p50"] >= 0
    assert report["engine_ms"]["p50"] > 0
    assert report["counters"]["model_calls"] >= 4
    assert report["target_overhead_p50_ms"] == 5.0
    # the first completion, asked right after initialized, is answered once the model has loaded
    assert report["first_completion_from_start_ms"] >= report["first_completion_ms"] > report["initialize_ms"] > 0
    assert report["first_completion_ms"] > report["ready_ms"] > 0
    assert report["warm_up"] in ("skipped", "stopped") and report["load_ms"] >= report["warm_up_ms"]
    assert report["target_first_completion_ms"] == 2000.0
    if sys.platform == "linux":  # the server's CPU time, read from /proc
        assert report["first_completion_cpu_ms"] > 0
