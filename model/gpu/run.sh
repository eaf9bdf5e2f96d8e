#!/usr/bin/env bash
# One prepared training run on a GPU host: the shipped model goes on training by the same recipe
# (model/gpu/continue.json: the objective of the CPU phases, a wsd schedule, batches built by
# worker processes) on that host's own Python sources, and comes back as a bf16 export to
# evaluate, and ship if it is better.
#
#   make gpu-prep                      # beforehand: the wheels that host may lack, into .whl/
#   bash model/gpu/run.sh 7            # on the GPU host, with .whl/ copied along
#
# MINUTES (default 7) is the whole budget: corpus, a 40-step probe that times a step, the run
# (its schedule sized from the probe to end on time: constant lr, then the last 30% decaying) and
# the export. Output in $OUT (default $WORK/out): export/ (the model), log.jsonl, corpus.json,
# summary.json. The corpus holds out the content-hash split and the held-out files of the CPU
# corpus (model/gpu/heldout-paths.txt), so other versions of them are not trained on.
# For a dry run elsewhere (tests/test_gpu_run.py): DIFFILL_GPU_INIT (the model to go on training),
# DIFFILL_GPU_CONFIG, DIFFILL_GPU_SOURCES (folders to build the corpus from), DIFFILL_GPU_WORK,
# DIFFILL_GPU_PROBE (probe steps).
set -euo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-7}
work=${DIFFILL_GPU_WORK:-/tmp/diffill-gpu}
out=${OUT:-$work/out}
init=${DIFFILL_GPU_INIT:-model/checkpoints/diffill-base}
config=${DIFFILL_GPU_CONFIG:-model/gpu/continue.json}
probe=${DIFFILL_GPU_PROBE:-40}
max_steps=${DIFFILL_GPU_MAX_STEPS:-0}  # 0: as many as the budget allows
py=${PYTHON:-python3}
start=$(date +%s)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
rm -rf "$work/corpus" "$work/probe" "$work/run"
mkdir -p "$work" "$out"
if ! $py -c "import tree_sitter, tree_sitter_python" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:$work/site"
fi
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

sources=()
for s in ${DIFFILL_GPU_SOURCES:-}; do sources+=(--source "$s"); done
$py -m diffill.cli corpus build "$work/corpus" "${sources[@]}" --tokenizer "$init" \
  --hold-out-paths model/gpu/heldout-paths.txt --processes "$(nproc)" > "$out/corpus.json"
cat "$out/corpus.json"

$py -m diffill.cli train --corpus "$work/corpus" --out "$work/probe" --init "$init" --config "$config" \
  --steps "$probe" --set total_steps=1000000 --set decay_start=999999 --eval-cases 0 > /dev/null
# the run's steps: what the budget left (less a minute for loading and the export) at the probe's pace
read -r steps decay < <($py - "$work/probe/log.jsonl" "$minutes" "$start" "$max_steps" <<'PY'
import json, sys, time
recs = [json.loads(line) for line in open(sys.argv[1]) if '"loss"' in line]
tail = recs[len(recs) // 4:]
per_step = (tail[-1]["wall_seconds"] - tail[0]["wall_seconds"]) / max(1, len(tail) - 1)
left = float(sys.argv[2]) * 60 - (time.time() - float(sys.argv[3])) - 60
steps = max(20, int(left / per_step))
if int(sys.argv[4]):
    steps = min(steps, int(sys.argv[4]))
print(steps, int(steps * 0.7))
print(f"probe: {per_step:.3f} s a step; {left:.0f} s left: {steps} steps", file=sys.stderr)
PY
)
warmup=$($py -c "import json,sys; print(min(json.load(open(sys.argv[1])).get('warmup_steps', 0), $decay))" "$config")
# the run goes on counting from the model's step (its card's running log), so its schedule starts there
base=$($py -c "import sys; from pathlib import Path; from diffill.model.train import init_state; print(init_state(Path(sys.argv[1]))['step'])" "$init")
$py -m diffill.cli train --corpus "$work/corpus" --out "$work/run" --init "$init" --config "$config" \
  --until-step "$((base + steps))" --set schedule_start="$base" --set total_steps="$((base + steps))" \
  --set decay_start="$((base + decay))" --set warmup_steps="$warmup" --eval-cases 0 > "$out/state.json"
$py -m diffill.model.export "$work/run" "$out/export"
cp "$work/run/log.jsonl" "$out/log.jsonl"
$py - "$out" "$steps" "$start" "$base" <<'PY'
import json, sys, time
out = sys.argv[1]
state = json.load(open(f"{out}/state.json"))
summary = {"steps": int(sys.argv[2]), "from_step": int(sys.argv[4]), "state": state,
           "seconds": round(time.time() - float(sys.argv[3]), 1)}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary))
PY
rm -f "$out/state.json"
