"""What a command imports: a fill from the shipped model loads neither transformers nor peft (their
modelling code takes longer to import than torch), nor does the language server's engine; the
server answers ``initialize`` before it imports torch. The shipped adapter's cached merge:
tests/test_merged.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
from diffill.cli import main
code = main(sys.argv[1:])
print(json.dumps({"heavy": sorted(m for m in ("transformers", "peft") if m in sys.modules), "code": code}),
      file=sys.stderr)
"""


def _fill(tmp_path, cache):
    source = tmp_path / "area.py"
    source.write_text("def area(w, h):\n    \n\nprint(area(2, 3))\n")
    env = {**os.environ, "DIFFILL_MERGED_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", PROBE, "infill", str(source), "--at", "2:5", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    probe = json.loads(proc.stderr.strip().splitlines()[-1])
    assert probe["code"] == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout), probe["heavy"]


def test_a_fill_loads_neither_transformers_nor_peft(tmp_path):
    cache = tmp_path / "merged"
    _, heavy = _fill(tmp_path, cache)
    assert heavy == [] and not cache.exists()


SERVE_PROBE = """
import json, sys
from diffill.cli import build_parser, command_module
argv = ["serve", "--threads", "1"]
build_parser(command_module(argv)).parse_args(argv)
from diffill.lsp_server.server import build_server
build_server(threads=1)  # what `diffill serve` builds before it reads initialize
print(json.dumps(sorted(m for m in ("torch", "numpy", "transformers", "peft") if m in sys.modules)))
"""

LOAD_PROBE = """
import asyncio, json, sys
from diffill.lsp_server.worker import EngineWorker

async def load():
    worker = EngineWorker(threads=1)
    state = await worker.load(None, None).future  # the shipped model, warm-up included
    worker.stop()
    return state

state = asyncio.run(load())
print(json.dumps({"loaded": state.loaded, "error": state.error, "warm_up": state.warm_up,
                  "heavy": sorted(m for m in ("transformers", "peft") if m in sys.modules)}))
"""


def test_the_server_answers_initialize_before_importing_torch_or_numpy():
    proc = subprocess.run([sys.executable, "-c", SERVE_PROBE], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_server_s_engine_loads_neither_transformers_nor_peft(tmp_path):
    env = {**os.environ, "DIFFILL_MERGED_CACHE": str(tmp_path / "merged"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", LOAD_PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    assert run["loaded"] and run["error"] is None and run["warm_up"] == "done"
    assert run["heavy"] == []
