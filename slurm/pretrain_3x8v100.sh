#!/bin/bash
# Continued pretraining of LLaMA-13B on CaMA's cluster shape: 3 nodes × 8 V100 32GB, one srun task
# per GPU (24 ranks), DeepSpeed ZeRO-3 — the DeepSpeed config file is named by the job YAML.
# CaMA's batch: micro batch 20 per GPU × gradient accumulation 3 × 24 GPUs = 1440 samples of
# seq_length 1024 (≈1.47M tokens) per optimizer step; those numbers live in the job YAML too.
#
#   mkdir -p logs && sbatch slurm/pretrain_3x8v100.sh configs/pretrain/JOB.yaml
#   sbatch --nodes=2 --time=12:00:00 slurm/pretrain_3x8v100.sh JOB.yaml   # command-line options win
#
# Each task derives its torch.distributed env from Slurm's (`python -m hpc.dist exec`): no ssh,
# pdsh or hostfile, and no torchrun — torchrun would not forward USR2, the checkpoint signal.
#
#SBATCH --job-name=cama-pretrain
#SBATCH --nodes=3
#SBATCH --ntasks-per-node=8
# All 8 GPUs visible to every task of a node (no --gpus-per-task): a task picks its GPU by LOCAL_RANK,
# and NCCL can use NVLink/P2P between GPUs it can see.
#SBATCH --gpus-per-node=8
# A GPU's share of the node's CPUs (64 / 8, data loader workers): configs/cluster/cama_3x8v100.yaml's
# shape, checked by tests/test_slurm_scripts.py. On smaller nodes pass --cpus-per-task (e.g. 2).
#SBATCH --cpus-per-task=8
# All of the node's memory (ZeRO-3 gathers and DeepSpeed's pinned buffers live in host RAM).
#SBATCH --mem=0
# The partition's limit (a run that ends early is requeued from its checkpoint).
#SBATCH --time=7-00:00:00
# USR2 to the batch shell 300 s before the time limit (a 13B ZeRO-3 checkpoint takes minutes): it
# forwards it to the tasks, which save, then requeues (lib.sh).
#SBATCH --signal=B:USR2@300
#SBATCH --requeue
#SBATCH --open-mode=append
# logs/ must exist in the job's working directory before submitting (Slurm does not create it).
#SBATCH --output=logs/%x-%j.out
##SBATCH --partition=gpu
##SBATCH --account=my-account
##SBATCH --qos=normal

set -euo pipefail
CONFIG="${1:?usage: sbatch slurm/pretrain_3x8v100.sh JOB.yaml}"
CAMA_HOME="${CAMA_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ ! -f "$CAMA_HOME/slurm/lib.sh" ]]; then
    echo "[cama] error: '$CAMA_HOME/slurm/lib.sh' not found: submit from the suite's checkout, or export CAMA_HOME=/path/to/it" >&2
    exit 2
fi
# shellcheck source=slurm/lib.sh
source "$CAMA_HOME/slurm/lib.sh"
cama_setup "$CONFIG"

# CAMA_ENTRY (test/debug hook): an executable run instead of `python -m train.pretrain`, with the same
# arguments and environment — the tests point it at a probe to exercise srun + hpc.dist.
if [[ -n "${CAMA_ENTRY:-}" ]]; then entry=("$CAMA_ENTRY"); else entry=(python -m train.pretrain); fi
cama_step python -m hpc.dist exec -- "${entry[@]}" --config "$CONFIG"
