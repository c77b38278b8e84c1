# Two commands on a fresh clone:  `make demo`  and  `make test`.  Each sets up .venv by itself.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# Which torch, and from where. TORCH_INDEX: cpu (the CPU build, about 200 MB), cu126 / cu128 / cu130 (a CUDA build
# for that CUDA version), both from download.pytorch.org; or pypi (pip's own index as configured: on Linux PyPI's
# torch is a CUDA build, several GB with its nvidia wheels). Where that host is unreachable (these machines), pip
# takes the local wheel its find-links name. Changing either reinstalls torch.
# Unset, it follows the machine: where `nvidia-smi` works, the newest of those CUDA builds its driver can run (the
# "CUDA Version" nvidia-smi prints is the newest the driver supports), else cpu. `make print-torch-index` shows it.
TORCH       ?= torch==2.13.0
CUDA_BUILDS := 130 128 126
ifeq ($(origin TORCH_INDEX),undefined)
DRIVER_CUDA := $(shell nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9]\).*/\1/p' | head -n 1)
TORCH_INDEX := $(if $(DRIVER_CUDA),$(firstword $(foreach v,$(CUDA_BUILDS),$(if $(shell [ $(subst .,,$(DRIVER_CUDA)) -ge $(v) ] && echo y),cu$(v)))),)
ifeq ($(TORCH_INDEX),)
TORCH_INDEX := cpu
ifneq ($(DRIVER_CUDA),)
$(info nvidia-smi: this driver supports CUDA up to $(DRIVER_CUDA), older than torch's CUDA builds (cu126 and later): installing the CPU build; update the driver, or set TORCH_INDEX)
endif
endif
endif
TORCH_INDEX_ARGS := $(if $(filter pypi,$(TORCH_INDEX)),,--index-url https://download.pytorch.org/whl/$(TORCH_INDEX))
# The corpus: the full one beside the checkout where present, else the small public-domain sample in data/sample/.
SHARED_CORPUS := ../shared/corpora/ruslit.jsonl.gz
SAMPLE_CORPUS := data/sample/ruslit-sample.jsonl.gz
DATA    ?= $(if $(wildcard $(SHARED_CORPUS)),$(SHARED_CORPUS),$(SAMPLE_CORPUS))
DATASET ?= data/$(if $(filter $(SAMPLE_CORPUS),$(DATA)),ruslit-sample,ruslit)-8k
PRESET  ?= tiny
TIME    ?= 3m
RUN     ?= demo
PIP     := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo check-data print-torch-index test test-lowest constraints install install-test chromium postgresql lint \
  format clean

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# The marker records which torch was installed: another TORCH or TORCH_INDEX makes it out of date. The torch wheel
# comes from TORCH_INDEX, its dependencies from pip's own index.
# Failures are one line each ($(error)), naming what to change; pip's own output goes to $(VENV)/torch-install.log.
TORCH_WANTED := $(TORCH) $(TORCH_INDEX)
ifneq ($(shell cat $(VENV)/.venv-ok 2>/dev/null),$(TORCH_WANTED))
.PHONY: $(VENV)/.venv-ok
endif
$(VENV)/.venv-ok: $(BIN)/python
	$(if $(shell { $(PIP) --force-reinstall --no-deps $(TORCH_INDEX_ARGS) "$(TORCH)" && \
	  $(PIP) "$(TORCH)"; } >$(VENV)/torch-install.log 2>&1 || echo failed),\
	  $(error TORCH=$(TORCH) with TORCH_INDEX=$(TORCH_INDEX) cannot be installed (pip's output: $(VENV)/torch-install.log)))
	echo '$(TORCH_WANTED)' > $@

$(BIN)/python:
	$(if $(shell $(PYTHON) -c 'import sys; assert sys.hexversion >= 0x30B0000' >/dev/null 2>&1 || echo no),\
	  $(error PYTHON=$(PYTHON): not found or older than Python 3.11, which slovo needs))
	$(if $(shell $(PYTHON) -c 'import ensurepip; import venv' >/dev/null 2>&1 || echo no),\
	  $(error $(PYTHON) -m venv is not available: install it (Debian/Ubuntu: apt-get install python3-venv)))
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/.venv-ok pyproject.toml
	$(PIP) -e .
	touch $@

# Within constraints.txt: the versions the tests were last green with (make constraints rewrites it).
$(VENV)/.installed-test: $(VENV)/.venv-ok pyproject.toml constraints.txt
	$(PIP) -e ".[test]" -c constraints.txt
	touch $@ $(VENV)/.installed

constraints: install-test
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | \
	  grep -vE '^(#|-e |torch==|slovo-lm)'; } > constraints.tmp && mv constraints.tmp constraints.txt

# The lowest versions pyproject.toml declares (uv's lowest-direct resolution, from PyPI), torch as TORCH says, in
# their own venv: the lower bounds are tested, not only claimed.
LOWEST_VENV ?= .venv-lowest
test-lowest:
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv
	$(LOWEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps $(TORCH_INDEX_ARGS) "$(TORCH)"
	$(LOWEST_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	echo "$(TORCH)" > $(LOWEST_VENV)/torch.txt
	$(LOWEST_VENV)/bin/uv pip install --quiet --python $(LOWEST_VENV)/bin/python --resolution lowest-direct \
	  --override $(LOWEST_VENV)/torch.txt -e ".[test]"
	$(LOWEST_VENV)/bin/python -m pytest -q -m "not slow"

# Which torch build `make install` takes here (TORCH_INDEX), without installing anything.
print-torch-index:
	@echo $(TORCH_INDEX)

# prepare the corpus (reused when already prepared), train the preset for TIME, sample from it.
demo: check-data install
	$(BIN)/slovo prepare --data $(DATA) --out $(DATASET) --vocab-size 8192
	$(BIN)/slovo train --data $(DATASET) --preset $(PRESET) --time $(TIME) --name $(RUN) --runs-dir runs --overwrite
	$(BIN)/slovo generate runs/$(RUN) --num-samples 2

# A DATA that names no file, folder or glob match is one line before anything is installed (hf: specs pass).
check-data:
	$(if $(filter hf:%,$(DATA))$(wildcard $(DATA)),,$(error DATA=$(DATA): no such file, folder or glob match))

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
	rm -rf $(VENV) $(LOWEST_VENV) runs .pytest_cache $(filter-out data/sample,$(wildcard data/*))
