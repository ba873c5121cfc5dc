# Two entry points: `make demo` and `make test`. Both create .venv and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# torch is installed on its own, first: a bare `torch` requirement pulls a multi-GB CUDA build.
# GPU clusters override it, e.g. make install-train TORCH_SPEC='torch==2.13.0 --index-url https://…/cu124'
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR ?= build/demo
PYTEST_ARGS ?=

.PHONY: demo demo-sources test install install-corpus install-train install-gpu install-dev sysdeps test-sysdeps clean cluster-up cluster-down cluster-status

## The main job on the embedded default (hpc.chain, configs/tiny/pipeline.yaml): a tokenizer and a corpus
## from the bundled samples, a tiny LLaMA pretrained with DeepSpeed ZeRO-3 on the CPU, LoRA-tuned, published
## as a diff and restored, then asked the sample cases; report in build/demo/run/report.md. Runs here, or
## on Slurm as dependent jobs when a cluster answers (e.g. `make cluster-up; source /tmp/cama-devcluster/slurm.env`).
demo: $(VENV)/.train $(VENV)/.dsops
	@if sinfo >/dev/null 2>&1; then where=--follow; else where=--local; fi; \
		$(PY) -m hpc.submit pipeline --config configs/tiny/pipeline.yaml $$where
	@echo "report: $(DEMO_DIR)/run/report.md"

## The raw-source corpus pipeline on the bundled dumps: read → clean → filter → dedup → pack → mix, report.
demo-sources: $(VENV)/.corpus
	$(PY) -m corpus build --config configs/tiny/sources.yaml
	$(PY) -m corpus report build/tiny-sources

## Everything the tests need (system packages included), then the whole suite.
test: sysdeps test-sysdeps $(VENV)/.dev $(VENV)/.dsops
	$(PY) -m pytest $(PYTEST_ARGS)

install: install-corpus
install-corpus: $(VENV)/.corpus
install-dev: $(VENV)/.dev
install-train: $(VENV)/.train
install-gpu: $(VENV)/.gpu

# Debian's python3 needs python3-venv for `python -m venv`; a Python that has ensurepip does not.
sysdeps:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q python3-venv; }

# The web page's test drives Debian's Chromium headless (the Slurm packages come with the dev cluster).
test-sysdeps:
	@command -v chromium >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }

$(VENV)/.created: | sysdeps
	$(PYTHON) -m venv $(VENV)
	@touch $@

# The corpus side alone: what a login node or a CPU array task needs (no torch).
$(VENV)/.corpus: $(VENV)/.created pyproject.toml
	$(PIP) install -q -e '.[corpus]'
	@touch $@

$(VENV)/.torch: $(VENV)/.created
	$(PIP) install -q $(TORCH_SPEC)
	@touch $@

# DeepSpeed is installed without build isolation, so that its build sees this torch, not a new one.
$(VENV)/.train: $(VENV)/.torch $(VENV)/.corpus pyproject.toml
	$(PIP) install -q --no-build-isolation 'deepspeed>=0.17,<0.20'
	$(PIP) install -q -e '.[corpus,train,hpc]'
	@touch $@

# GPU machines only, after install-train: bitsandbytes for 8-bit loading (train.generate --load-8bit, LoRA's
# load_in_8bit/4bit; bench/gpu_check.sh). Not part of `make test`: nothing on the CPU needs it.
$(VENV)/.gpu: $(VENV)/.train pyproject.toml
	$(PIP) install -q -e '.[corpus,train,hpc,gpu]'
	@touch $@

# Tests read our .bin/.idx with megatron-core, which needs torch: TORCH_SPEC goes in first.
$(VENV)/.dev: $(VENV)/.train pyproject.toml
	$(PIP) install -q -e '.[corpus,train,hpc,dev]'
	@touch $@

# DeepSpeed compiles its CPU shared-memory collective op on first use (30-90 s, once per machine,
# cached in ~/.cache/torch_extensions): build it here rather than inside the first training run.
# One compiler at a time (MAX_JOBS=1): each cc1plus over torch's headers takes ~1.6 GB, and a CI machine
# short of memory has had one killed mid-build. A killed build resumes where it stopped, so try again.
DSOPS_TRIES ?= 3
$(VENV)/.dsops: $(VENV)/.train
	@for try in $$(seq $(DSOPS_TRIES)); do \
		MAX_JOBS=1 $(PY) -c 'from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder as B; B().load()' \
			&& break; \
		if [ $$try = $(DSOPS_TRIES) ]; then echo "DeepSpeed's shm op did not build in $(DSOPS_TRIES) tries" >&2; exit 1; fi; \
		echo "DeepSpeed's shm op build failed (try $$try of $(DSOPS_TRIES)); trying again in 15 s" >&2; sleep 15; \
	done
	@touch $@

## The local dev Slurm cluster (3 nodes × 8 stand-in V100s); the tests start and stop it themselves.
cluster-up cluster-down cluster-status: $(VENV)/.corpus
	$(PY) -m hpc.devcluster $(subst cluster-,,$@)

clean:
	rm -rf build .pytest_cache
