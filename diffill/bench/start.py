"""``diffill bench start [--rounds N] [--file F --at L:C] [--json]``: the whole-process wall time of
``diffill infill`` for one hole beside that of ``python -c "import torch"``, measured in alternation
in one run (a shared machine's load moves both alike), as medians and their ratio.

One unmeasured call first warms the operating system's file cache, as any second call on a machine
finds it.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from diffill.errors import DiffillError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "stats.py"
TARGET_RATIO = 2.0  # a CLI fill costs at most twice a bare `import torch`


def _wall(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise DiffillError(f"{' '.join(argv[:4])}... exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return took


def measure(file: Path, at: str, rounds: int) -> dict:
    torch_cmd = [sys.executable, "-c", "import torch"]
    infill_cmd = [sys.executable, "-m", "diffill.cli", "infill", str(file), "--at", at, "--json"]
    _wall(infill_cmd)  # the files into the page cache, once
    times: dict[str, list[float]] = {"import_torch": [], "infill": []}
    for _ in range(rounds):
        times["import_torch"].append(_wall(torch_cmd))
        times["infill"].append(_wall(infill_cmd))
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {"rounds": rounds, "file": str(file), "at": at,
            "median_s": {k: round(v, 3) for k, v in medians.items()},
            "runs_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
            "ratio": round(medians["infill"] / medians["import_torch"], 2), "target_ratio": TARGET_RATIO}


def run(args) -> int:
    if not args.file.is_file():
        raise DiffillError(f"no such file: {args.file}")
    out = measure(args.file, args.at, args.rounds)
    if args.json:
        print(json.dumps(out))
        return 0
    m = out["median_s"]
    print(f"median of {out['rounds']} rounds: import torch {m['import_torch']:.2f} s, "
          f"diffill infill {m['infill']:.2f} s, ratio {out['ratio']:.2f} (target <= {TARGET_RATIO:g})")
    return 0
