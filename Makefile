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

.PHONY: demo test install install-test clean

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

test: install-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs data .pytest_cache
