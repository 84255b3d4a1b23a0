# `make run` and `make test` each build .venv from the newest Python >= 3.12 found.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SEEDS ?= 20
JOBS ?= 2

# Candidates, newest first; pyenv shims exist even when their version is not selected,
# so each candidate is tried, not just looked up.
PYTHON_CANDIDATES := python3.13 python3.12 $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) python3
FIND_PYTHON = for c in $(PYTHON_CANDIDATES); do \
	  if $$c -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then echo $$c; break; fi; done

.PHONY: run test venv lint bench batch clean

$(STAMP): pyproject.toml
	@base="$$($(FIND_PYTHON))"; \
	if [ -z "$$base" ]; then \
	  echo "error: no Python >= 3.12 found (tried: $(PYTHON_CANDIDATES))." >&2; \
	  echo "       mesa >= 3.4 needs Python 3.12+; install python3.12 or python3.13 and retry." >&2; \
	  exit 1; fi; \
	echo "Using $$base ($$($$base --version))"; \
	[ -x $(PY) ] || $$base -m venv $(VENV); \
	$(PY) -m pip install -q --upgrade pip && \
	$(PY) -m pip install -q -e '.[dev]' && touch $(STAMP)

venv: $(STAMP)

# The main job: every library scenario x $(RUN_SEEDS) seeds (common random numbers), then the
# report. A fresh store each time, so a model change never meets an old store.
RUN_SEEDS ?= 50
run: $(STAMP)
	@out=runs/library-$$(date -u +%Y%m%dT%H%M%SZ); \
	$(VENV)/bin/decouple batch scenarios/*.yaml --seeds $(RUN_SEEDS) --jobs $(JOBS) --out $$out && \
	$(VENV)/bin/decouple report $$out --baseline baseline && \
	echo "Run store: $$out"

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# Every library scenario x $(SEEDS) seeds into runs/library (resumed if interrupted; see docs/batch.md).
batch: $(STAMP)
	$(VENV)/bin/decouple batch scenarios/*.yaml --seeds $(SEEDS) --jobs $(JOBS) --out runs/library

bench: $(STAMP)
	$(PY) benchmarks/bench_model.py --write
	$(PY) benchmarks/bench_batch.py

clean:
	rm -rf $(VENV) *.egg-info
