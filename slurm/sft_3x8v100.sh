#!/bin/bash
# Full-parameter instruction tuning (train.sft) of LLaMA-13B on CaMA's cluster shape: 3 nodes × 8 V100
# 32GB, one srun task per GPU (24 ranks), DeepSpeed ZeRO-3 — the same shape and plumbing as
# pretrain_3x8v100.sh; configs/sft/cama13b_sft_3x8v100.yaml explains why 13B fits without offload there.
#
#   mkdir -p logs && sbatch slurm/sft_3x8v100.sh configs/sft/cama13b_sft_3x8v100.yaml
#
#SBATCH --job-name=cama-sft
#SBATCH --nodes=3
#SBATCH --ntasks-per-node=8
# All 8 GPUs visible to every task of a node: a task picks its GPU by LOCAL_RANK (see pretrain_3x8v100.sh).
#SBATCH --gpus-per-node=8
# A GPU's share of the node's CPUs (64 / 8), as configs/cluster/cama_3x8v100.yaml gives it.
#SBATCH --cpus-per-task=8
#SBATCH --mem=0
# The partition's limit (a run that ends early is requeued from its checkpoint).
#SBATCH --time=7-00:00:00
# A 13B ZeRO-3 checkpoint (24 partitions of ~7.6 GB) takes minutes: USR2 300 s before the limit.
#SBATCH --signal=B:USR2@300
#SBATCH --requeue
#SBATCH --open-mode=append
# logs/ must exist in the job's working directory before submitting (Slurm does not create it).
#SBATCH --output=logs/%x-%j.out
##SBATCH --partition=gpu
##SBATCH --account=my-account

set -euo pipefail
CONFIG="${1:?usage: sbatch slurm/sft_3x8v100.sh JOB.yaml}"
CAMA_HOME="${CAMA_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ ! -f "$CAMA_HOME/slurm/lib.sh" ]]; then
    echo "[cama] error: '$CAMA_HOME/slurm/lib.sh' not found: submit from the suite's checkout, or export CAMA_HOME=/path/to/it" >&2
    exit 2
fi
# shellcheck source=slurm/lib.sh
source "$CAMA_HOME/slurm/lib.sh"
cama_setup "$CONFIG"

# CAMA_ENTRY (test/debug hook): an executable run instead of `python -m train.sft`, same arguments.
if [[ -n "${CAMA_ENTRY:-}" ]]; then entry=("$CAMA_ENTRY"); else entry=(python -m train.sft); fi
cama_step python -m hpc.dist exec -- "${entry[@]}" --config "$CONFIG"
