# The two commands a new user needs:  make demo  and  make test.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test lint clean

# torch first, pinned to the CPU build on this disk (a range would pull CUDA wheels),
# then everything else; the package itself is installed editable.
$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt -r requirements-test.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: $(VENV)/.installed
	$(BIN)/snakemake --cores all

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/snakemake --lint

clean:
	rm -rf logs resources/models .snakemake experiments/demo/inference experiments/demo/*/inference \
	       experiments/demo/*/extraction/vectors
