# Two commands on a fresh clone:  `make demo`  and  `make test`.  Each sets up .venv by itself.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The CPU build of torch. On a GPU machine: make demo TORCH=torch  (PyPI's Linux torch is a CUDA build).
TORCH   ?= torch==2.13.0
DATA    ?= ../shared/corpora/ruslit.jsonl.gz
DATASET ?= data/ruslit-8k
PRESET  ?= tiny
TIME    ?= 3m
RUN     ?= demo

.PHONY: demo test install install-test chromium postgresql lint format clean

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/.venv-ok:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "slovo needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	touch $@

$(VENV)/.installed: $(VENV)/.venv-ok pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.venv-ok pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@ $(VENV)/.installed

# prepare the corpus (reused when already prepared), train the preset for TIME, sample from it.
demo: install
	$(BIN)/slovo prepare --data $(DATA) --out $(DATASET) --vocab-size 8192
	$(BIN)/slovo train --data $(DATASET) --preset $(PRESET) --time $(TIME) --name $(RUN) --runs-dir runs --overwrite
	$(BIN)/slovo generate runs/$(RUN) --num-samples 2

test: install-test chromium postgresql lint
	$(BIN)/python -m pytest -q

# ruff (settings in pyproject.toml): lint, and the formatting check. `make format` rewrites what the check finds.
lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: install-test
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# headless Chromium for tests/test_report.py's rendering check (that test skips, saying why, where it is absent):
# installed from Debian's packages when missing and we are root; anything else is left alone.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium fonts-dejavu-core >/dev/null; } || echo "could not install chromium: the report rendering test will skip"

# PostgreSQL's server binaries for tests/test_sweep_postgres.py (each test starts its own throwaway server in a
# temporary folder): installed from Debian's packages when missing and we are root. The cluster the package sets
# up for the system is stopped: the tests need only the binaries.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    postgresql >/dev/null && { command -v pg_ctlcluster >/dev/null 2>&1 && pg_lsclusters -h 2>/dev/null | \
	    while read -r ver name rest; do pg_ctlcluster "$$ver" "$$name" stop >/dev/null 2>&1; done; true; }; } || \
	  echo "could not install postgresql: the cross-machine sweep tests will skip or fail"

clean:
	rm -rf $(VENV) runs data .pytest_cache
