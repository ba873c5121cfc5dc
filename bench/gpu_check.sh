#!/usr/bin/env bash
# The suite's figures on one GPU in under 8 minutes (H100/H200): pretraining of a ~1B LLaMA in bf16 with
# DeepSpeed ZeRO-3 (tokens/s/GPU, MFU), LoRA and full-parameter instruction tuning of it (tokens/s/GPU,
# MFU), generation in bf16 and in 8 bits (new tokens/s) and the adapter logits check (max |Δ|).
# A summary at the end; every figure as JSON in the results file. No network is needed: install first
# with `make install-train install-gpu` (bitsandbytes, for the 8-bit step).
#
#   bench/gpu_check.sh [--out RESULTS.json] [--workdir DIR] [--keep] [--nproc N]
#   bench/gpu_check.sh --cpu        # the smoke run: tiny sizes, CPU, gloo, no 8-bit step (tests/test_gpu_check.py)
#
# What each step runs and measures: bench/gpu_check.py's docstring and bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
exec "$py" bench/gpu_check.py "$@"
