#!/bin/bash
# Restore the model's weights from a published diff against LLaMA (`python -m recover apply`), on one
# GPU of one node. The job YAML names the base weights, the diff and the output folder.
#
#   mkdir -p logs && sbatch slurm/recover_gpu.sh configs/recover/JOB.yaml
#
#SBATCH --job-name=cama-recover
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=1
# One GPU's share of the node's CPUs and memory (64 / 8, 500G / 8): apply streams a few slices at a
# time, so memory does not grow with the 26 GB of a 13B model; the share also covers a LoRA merge.
#SBATCH --cpus-per-task=8
#SBATCH --mem=64000M
#SBATCH --time=4:00:00
# A restore is not resumable mid-way; on the signal it is requeued and runs again.
#SBATCH --signal=B:USR2@300
#SBATCH --requeue
#SBATCH --open-mode=append
# logs/ must exist in the job's working directory before submitting (Slurm does not create it).
#SBATCH --output=logs/%x-%j.out
##SBATCH --partition=gpu
##SBATCH --account=my-account

set -euo pipefail
CONFIG="${1:?usage: sbatch slurm/recover_gpu.sh JOB.yaml}"
CAMA_HOME="${CAMA_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ ! -f "$CAMA_HOME/slurm/lib.sh" ]]; then
    echo "[cama] error: '$CAMA_HOME/slurm/lib.sh' not found: submit from the suite's checkout, or export CAMA_HOME=/path/to/it" >&2
    exit 2
fi
# shellcheck source=slurm/lib.sh
source "$CAMA_HOME/slurm/lib.sh"
cama_setup "$CONFIG"

# CAMA_ENTRY (test/debug hook): an executable run instead of `python -m recover`, same arguments.
if [[ -n "${CAMA_ENTRY:-}" ]]; then entry=("$CAMA_ENTRY"); else entry=(python -m recover); fi
cama_step "${entry[@]}" apply --config "$CONFIG"
