# diffill: set-up, demo, tests and the training recipe of the shipped model.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs
CORPUS ?= $(RUNS)/corpus
# The shipped model's recipe (see model/checkpoints/diffill-base/README.md)
TRAIN_ARGS ?=

.PHONY: install index run test lint model adapter corpus train continue phase-given system-deps vscode gpu-prep

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The library index fills copy from: this interpreter's standard library and site-packages, the
# code the shipped model was trained on (about 2.5 minutes and 3 GB of memory on 2 cores, once).
index: install
	$(VENV)/bin/diffill index --unless-built

run: install index
	@echo "--- diffill/examples/stats.py, hole at 19:5 (the empty body line of stdev) ---"
	$(VENV)/bin/diffill infill diffill/examples/stats.py --at 19:5 --full

# The VS Code checks run first so that pytest's summary is the last thing printed.
test: install system-deps vscode
	$(PY) -m pytest -q -p no:cacheprovider

# Headless Chromium renders the bench report in tests (Debian's package; root installs it).
system-deps:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium could not be installed: the report-rendering tests will skip"

# VS Code extension: npm ci, tsc --noEmit, unit tests, .vsix package
vscode:
	$(MAKE) -C editors/vscode ci

lint: install
	$(VENV)/bin/ruff check .

corpus: $(CORPUS)/manifest.json

# The shipped model's tokenizer (trained by `diffill corpus build` without --tokenizer in the first
# session): a tokenizer trained afresh on this machine's files would have other ids, and training
# refuses to go on from a model with a corpus tokenized by other ids. --keep-near-twins: the corpus
# the shipped model was trained on (without it, near-twins inside the training split are dropped;
# add --humaneval FILE to drop files that contain a HumanEval problem).
CORPUS_ARGS ?= --tokenizer model/checkpoints/diffill-base --keep-near-twins
$(CORPUS)/manifest.json: | install
	$(VENV)/bin/diffill corpus build $(CORPUS) $(CORPUS_ARGS)

# The shipped weights' recipe, in phases (model/recipes/*.json): each phase resumes the run where
# the last one stopped and trains until its schedule's last step. Phases tried and not shipped
# are kept in model/recipes/trials/ (run one with PHASES=...).
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
	@test -n "$(PHASE)" || { echo "usage: make continue PHASE=model/recipes/trials/NAME.json"; exit 2; }

# Reproduce the shipped weights: corpus, training, then export as bf16 into the checkpoint folder.
model: train
	$(PY) -m model.export $(RUNS)/base model/checkpoints/diffill-base

# The infill adapter's recipe on top of the shipped base, written to adapters/checkpoints/infill,
# which every command serves by default (README.md, Adapters). 600 steps, ~21 min on 2 cores.
adapter: corpus
	$(VENV)/bin/diffill adapt-base --corpus $(CORPUS)

# Before a run on a lent GPU machine (model/gpu/run.sh): the wheels that machine lacks (Python 3.12
# there), into .whl/, which the device tool then carries.
gpu-prep: install
	$(PY) -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $$(grep -E '^tree-sitter(-python)?==' constraints.txt)
