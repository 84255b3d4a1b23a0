# `make help` lists the targets and variables. `make run` and `make test` each build .venv
# (once) from the newest Python >= 3.12 found.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2
.DEFAULT_GOAL := help

# SEEDS: replicates per scenario and parameter draw, for `make run` (default 2) and `make batch`
# (default 4). DRAWS: parameter draws from the scenarios' declared uncertainty (the calibrated
# ensemble and the baseline's `uncertain` ranges; default 25 for both), the same draws in every
# scenario; DRAWS=0 runs the defaults only (seed noise alone).
# RUN_SEEDS, the former name for `make run`, still works, with a note on stderr.
ifneq ($(origin RUN_SEEDS),undefined)
  ifneq ($(origin SEEDS),undefined)
    ifneq ($(SEEDS),$(RUN_SEEDS))
      $(error RUN_SEEDS=$(RUN_SEEDS) and SEEDS=$(SEEDS) disagree: RUN_SEEDS is the former name of SEEDS, give SEEDS only)
    endif
  endif
  $(warning RUN_SEEDS is now SEEDS: using SEEDS=$(RUN_SEEDS) (write: make run SEEDS=$(RUN_SEEDS)))
  SEEDS := $(RUN_SEEDS)
endif
run: SEEDS ?= 2
batch: SEEDS ?= 4
DRAWS ?= 25
SAMPLE = $(if $(filter 0,$(DRAWS)),none,lhs:$(DRAWS))

# Candidates, newest first; pyenv shims exist even when their version is not selected,
# so each candidate is tried, not just looked up.
PYTHON_CANDIDATES := python3.13 python3.12 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3
FIND_PYTHON = for c in $(PYTHON_CANDIDATES); do \
	  if $$c -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then echo $$c; break; fi; done

.PHONY: help run test venv lint bench batch clean

help:
	@echo "make run     build .venv (once), run every library scenario x SEEDS seeds x DRAWS"
	@echo "             parameter draws (default 2 x 25; 4-6 minutes on 2 cores) and write the"
	@echo "             HTML report"
	@echo "make test    build .venv (once) and run the test suite (3-6 minutes on 2 cores)"
	@echo "make batch   every library scenario x SEEDS seeds x DRAWS draws (default 4 x 25) into"
	@echo "             runs/library, resumed if interrupted"
	@echo "make lint    ruff check (100-character lines, Google docstrings)"
	@echo "make bench   the model and batch timing benchmarks"
	@echo "make venv    only build .venv (1-2 minutes, once)"
	@echo "make clean   remove .venv"
	@echo "make help    this list"
	@echo "Variables: SEEDS=N (replicates per draw), DRAWS=K (parameter draws; 0: defaults only),"
	@echo "           JOBS=N (worker processes, default 2),"
	@echo "           PYTHON_CANDIDATES='python3.13 ...' (the Pythons tried for .venv, first wins)"

# The venv, once (again when pyproject.toml changes); says what it does, since pip is quiet.
$(STAMP): pyproject.toml
	@if [ -x $(PY) ]; then \
	  echo "Updating $(VENV) (pyproject.toml changed): installing dependencies..."; \
	else \
	  base="$$($(FIND_PYTHON))"; \
	  if [ -z "$$base" ]; then \
	    echo "error: no Python >= 3.12 found (tried: $(PYTHON_CANDIDATES))." >&2; \
	    echo "       mesa >= 3.4 needs Python 3.12+; install python3.12 or python3.13 and retry." >&2; \
	    exit 1; fi; \
	  echo "Creating $(VENV) with $$base ($$($$base --version 2>&1)) and installing dependencies" \
	    "(1-2 minutes, once)..."; \
	  $$base -m venv $(VENV) || exit 1; \
	fi; \
	$(PY) -m pip install -q --upgrade pip && \
	$(PY) -m pip install -q -e '.[dev]' && touch $(STAMP) && \
	echo "$(VENV) is ready."

venv: $(STAMP)

# The main job: every library scenario x $(SEEDS) seeds x $(DRAWS) parameter draws (common
# random numbers and common draws across scenarios; every run of a scenario its own stream,
# so the bands pool 50 seed realisations, not 2), then the report. A fresh store each time,
# so a model change never meets an old store.
run: $(STAMP)
	@out=runs/library-$$(date -u +%Y%m%dT%H%M%SZ); \
	$(VENV)/bin/decouple batch scenarios/*.yaml --seeds $(SEEDS) --sample $(SAMPLE) --streams per-sample --jobs $(JOBS) --out $$out && \
	$(VENV)/bin/decouple report $$out --baseline baseline && \
	echo "Run store: $$out"

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Every library scenario x $(SEEDS) seeds x $(DRAWS) draws into runs/library (resumed if
# interrupted; see docs/batch.md).
batch: $(STAMP)
	$(VENV)/bin/decouple batch scenarios/*.yaml --seeds $(SEEDS) --sample $(SAMPLE) --streams per-sample --jobs $(JOBS) --out runs/library

bench: $(STAMP)
	$(PY) benchmarks/bench_model.py --write
	$(PY) benchmarks/bench_batch.py

clean:
	rm -rf $(VENV) *.egg-info
