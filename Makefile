# ZeMosaic — two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := demo_tiles
OUT    := demo_output

# astrometry.net index files for the plate-solving tests: fetched once (Debian packages
# via apt-get download, no root), stamped by the fetcher so they are not fetched again.
INDEX_DIR := .cache/astrometry-index
INDEX_STAMP := $(INDEX_DIR)/.zemosaic-fetched

.PHONY: install run test lint format bench clean demo index

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Re-installs only when pyproject.toml changes (idempotent).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/zemosaic run-demo --demo-dir $(DEMO) --output-dir $(OUT)

demo: $(STAMP)
	$(VENV)/bin/zemosaic demo-data $(DEMO)

$(INDEX_STAMP): | $(STAMP)
	$(PY) -m zemosaic_core.solving fetch $(INDEX_DIR)

index: $(INDEX_STAMP)

# Static checks: style, types (mypy, config in pyproject.toml) and the architecture
# contracts (import-linter: the core never imports Qt; layers of the core).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

test: lint $(INDEX_STAMP)
	ZEMOSAIC_INDEX_DIR=$(abspath $(INDEX_DIR)) QT_QPA_PLATFORM=offscreen $(PY) -m pytest -n 2 -q

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/bench_coadd.py

clean:
	rm -rf $(VENV) $(DEMO) $(OUT) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache .grimp_cache build *.egg-info
