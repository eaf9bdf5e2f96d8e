# diffill: set-up, demo, tests and the training recipe of the shipped model.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs
CORPUS ?= $(RUNS)/corpus
# The shipped model's recipe (see docs/training.md)
TRAIN_ARGS ?=
# code-server and playwright-core for the VS Code end-to-end test
E2E := editors/vscode/e2e
E2E_STAMP := $(E2E)/node_modules/.installed

.PHONY: install index calibrate run test lint model adapter peer corpus train continue phase-given system-deps vscode e2e-vscode gpu-prep

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test,ray]'
	touch $(STAMP)

# The library index fills copy from: this interpreter's standard library and site-packages, the
# code the shipped model was trained on (about 2.5 minutes and 3 GB of memory on 2 cores, once).
index: install
	$(VENV)/bin/diffill index --unless-built

# The confidence of the shipped model's fills (docs/confidence.md), refitted after the model
# changes: one-line holes of the corpus's training split (about 40 minutes on 2 busy cores).
calibrate: install
	$(VENV)/bin/diffill calibrate --corpus $(CORPUS) --cases 250

run: install index
	@echo "--- diffill/examples/stats.py, hole at 19:5 (the empty body line of stdev) ---"
	$(VENV)/bin/diffill infill diffill/examples/stats.py --at 19:5 --full

# The VS Code checks run first so that pytest's summary is the last thing printed.
test: install system-deps vscode $(E2E_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# Headless Chromium renders the bench report and drives VS Code in tests (Debian's packages; root
# installs them). ripgrep, pkg-config and the Kerberos headers are what code-server's npm install needs.
SYSTEM_DEPS := chromium ripgrep pkg-config libkrb5-dev
system-deps:
	@missing=$$(for p in $(SYSTEM_DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	test -z "$$missing" || { apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; } \
		|| echo "could not install $$missing"

# VS Code extension: npm ci, tsc --noEmit, unit tests, .vsix package
vscode:
	$(MAKE) -C editors/vscode ci

# The packaged extension in code-server (npm), driven by headless Chromium (tests/test_vscode_e2e.py).
# The first install builds code-server's native modules (a few minutes); later runs reuse them.
$(E2E_STAMP): $(E2E)/package-lock.json $(E2E)/install.sh | system-deps
	$(E2E)/install.sh
	touch $@

# VSCODE_SCREENSHOT=editors/vscode-ghost-text.png renews the picture in editors/README.md
VSCODE_SCREENSHOT ?=
e2e-vscode: install system-deps vscode $(E2E_STAMP)
	DIFFILL_VSCODE_SCREENSHOT=$(abspath $(VSCODE_SCREENSHOT)) $(PY) -m pytest -q -p no:cacheprovider tests/test_vscode_e2e.py

lint: install
	$(VENV)/bin/ruff check .

corpus: $(CORPUS)/manifest.json

# The shipped model's tokenizer (trained by `diffill corpus build` without --tokenizer on the first
# corpus): a tokenizer trained afresh on this machine's files would have other ids, and training
# refuses to go on from a model with a corpus tokenized by other ids. --keep-near-twins: the corpus
# the shipped model was trained on (without it, near-twins inside the training split are dropped;
# add --humaneval FILE to drop files that contain a HumanEval problem).
CORPUS_ARGS ?= --tokenizer model/checkpoints/diffill-base --keep-near-twins
$(CORPUS)/manifest.json: | install
	$(VENV)/bin/diffill corpus build $(CORPUS) $(CORPUS_ARGS)

# The shipped weights' recipe, in phases (model/recipes/phase*.json, listed in order in
# model/recipes/README.md): each phase resumes the run where the last one stopped and trains until
# its schedule's last step. Trials that did not ship are in model/recipes/not-shipped/ (run one
# with PHASES=...).
# Numeric order (phase9 before phase10), as diffill.modelcard.phase_files orders them for the card.
PHASES ?= $(shell ls model/recipes/*.json | sort -V)
# the step a phase's schedule ends at (its JSON's total_steps)
TOTAL_STEPS = $(PY) -c "import json,sys; print(json.load(open(sys.argv[1]))['total_steps'])"

train: corpus
	for phase in $(PHASES); do \
		steps=$$($(TOTAL_STEPS) $$phase) && \
		$(VENV)/bin/diffill train --corpus $(CORPUS) --out $(RUNS)/base --until-step $$steps --resume \
			--config $$phase $(TRAIN_ARGS) || exit 1; \
	done

# Go on training the shipped weights where no run folder is left (a new machine): PHASE starts from
# model/checkpoints/diffill-base (its step, tokens and CPU time carry on; optimizer state afresh),
# and resumes runs/base once that has a checkpoint. PHASE's schedule_start is the shipped step.
continue: phase-given corpus
	steps=$$($(TOTAL_STEPS) $(PHASE)) && \
	$(VENV)/bin/diffill train --corpus $(CORPUS) --out $(RUNS)/base --until-step $$steps --resume \
		--init model/checkpoints/diffill-base --config $(PHASE) $(TRAIN_ARGS)

phase-given:
	@test -n "$(PHASE)" || { echo "usage: make continue PHASE=model/recipes/continue/NAME.json"; exit 2; }

# Reproduce the shipped weights: corpus, training, then export as bf16 into the checkpoint folder.
model: train
	$(PY) -m diffill.model.export $(RUNS)/base model/checkpoints/diffill-base

# The infill adapter's recipe on top of the shipped base, written to adapters/checkpoints/infill,
# served with `--adapter shipped` (docs/adapters.md). 600 steps, ~21 min on 2 cores.
adapter: corpus
	$(VENV)/bin/diffill adapt-base --corpus $(CORPUS)

# The autoregressive peer of the same size (model/recipes/peer/causal-from-base.json), exported to
# model/checkpoints/diffill-peer, which `diffill bench peer` compares the diffusion model with.
PEER_RECIPE := model/recipes/peer/causal-from-base.json
peer: corpus
	steps=$$($(TOTAL_STEPS) $(PEER_RECIPE)) && \
	$(VENV)/bin/diffill train --corpus $(CORPUS) --out $(RUNS)/peer --until-step $$steps --resume \
		--init model/checkpoints/diffill-base --config $(PEER_RECIPE) $(TRAIN_ARGS)
	$(PY) -m diffill.model.export $(RUNS)/peer model/checkpoints/diffill-peer

# Before a run on a GPU host (model/gpu/run.sh): the tree-sitter wheels a Python 3.12 host may
# lack, into .whl/, to be copied there with the repository.
gpu-prep: install
	$(PY) -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $$(grep -E '^tree-sitter(-python)?==' constraints.txt)
