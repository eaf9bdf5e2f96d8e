"""model/gpu/run.sh, the prepared GPU run, end to end on the CPU with a tiny model and config."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from diffill.model.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_run_script_goes_on_training_a_model_and_exports_it(tiny_checkpoint, tiny_sources, tmp_path):
    shipped = json.loads((ROOT / "model" / "gpu" / "continue.json").read_text())
    config = {**shipped, "batch_size": 4, "workers": 2, "warmup_steps": 2}
    (tmp_path / "config.json").write_text(json.dumps(config))
    # a model as shipped: its card's running log says it stopped at step 100
    init = tmp_path / "shipped"
    shutil.copytree(tiny_checkpoint, init)
    (init / "training_log.json").write_text(json.dumps([{"date": "2026-11-29", "step": 100, "tokens": 5000,
                                                         "cpu_hours": 1.0, "figures": {}}]))
    env = {**os.environ, "PYTHON": sys.executable, "DIFFILL_GPU_INIT": str(init),
           "DIFFILL_GPU_CONFIG": str(tmp_path / "config.json"), "DIFFILL_GPU_SOURCES": str(tiny_sources),
           "DIFFILL_GPU_WORK": str(tmp_path / "work"), "DIFFILL_GPU_PROBE": "6", "DIFFILL_GPU_MAX_STEPS": "24",
           "OUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["bash", str(ROOT / "model" / "gpu" / "run.sh"), "10"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    # 24 more steps, counted on from the model's step 100, as its schedule is
    assert summary["steps"] == 24 and summary["from_step"] == 100 and summary["state"]["step"] == 124
    assert summary["state"]["tokens"] > 5000
    assert sorted(p.name for p in (out / "export").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert load_tokenizer(out / "export").get_vocab() == load_tokenizer(tiny_checkpoint).get_vocab()
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in logged]
    # wsd sized to the run: warm-up, constant, then the last 30% decaying to 0.1x
    cooling = [r["lr"] for r in logged if r.get("cooldown")]
    assert max(lrs) == config["lr"] and lrs[2:16] == [config["lr"]] * 14
    assert [r["step"] for r in logged if r.get("cooldown")] == list(range(117, 125))
    assert cooling == sorted(cooling, reverse=True) and cooling[-1] < 0.25 * config["lr"]
    assert json.loads((out / "corpus.json").read_text())["train"]["files"] > 0
