"""What a command imports: a fill from the shipped model, with its adapter's merge in the cache,
loads neither transformers nor peft (their modelling code takes longer to import than torch)."""

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


def test_a_fill_loads_neither_transformers_nor_peft_once_the_merge_is_cached(tmp_path):
    cache = tmp_path / "merged"
    first, heavy_first = _fill(tmp_path, cache)
    assert "peft" in heavy_first  # nothing cached yet: peft merges the shipped adapter, once
    again, heavy = _fill(tmp_path, cache)
    assert heavy == []
    assert again["text"] == first["text"]
