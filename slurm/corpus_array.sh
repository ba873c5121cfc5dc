#!/bin/bash
# Sharded corpus build: a job array, one CPU task per shard, then a merge job that runs once every
# shard succeeded (afterok). The merged .bin/.idx is byte-identical to a single `python -m corpus build`.
#
#   mkdir -p logs && sbatch slurm/corpus_array.sh configs/corpus/JOB.yaml                 # 8 shards
#   sbatch --array=0-31 --cpus-per-task=8 slurm/corpus_array.sh configs/corpus/JOB.yaml  # 32 shards
#
# The array must be 0..N-1 (any %throttle): N is the number of shards. The first task submits the
# merge job (`python -m corpus merge-shards --num-shards N`); its log names it. A requeued or rerun
# shard whose output is complete is skipped (completion markers), so requeuing is cheap.
#
#SBATCH --job-name=cama-corpus
#SBATCH --array=0-7
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --time=4:00:00
#SBATCH --signal=B:USR2@120
#SBATCH --requeue
#SBATCH --open-mode=append
# logs/ must exist in the job's working directory before submitting (Slurm does not create it).
#SBATCH --output=logs/%x-%A_%a.out
##SBATCH --partition=cpu
##SBATCH --account=my-account

set -euo pipefail
CONFIG="${1:?usage: sbatch slurm/corpus_array.sh JOB.yaml}"
CAMA_HOME="${CAMA_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ ! -f "$CAMA_HOME/slurm/lib.sh" ]]; then
    echo "[cama] error: '$CAMA_HOME/slurm/lib.sh' not found: submit from the suite's checkout, or export CAMA_HOME=/path/to/it" >&2
    exit 2
fi
# shellcheck source=slurm/lib.sh
source "$CAMA_HOME/slurm/lib.sh"
cama_setup "$CONFIG"

[[ -n "${SLURM_ARRAY_TASK_ID:-}" ]] || cama_die "not an array task: submit with sbatch (the script's --array line), or --array=0-N"
first="$SLURM_ARRAY_TASK_MIN"
shards="$SLURM_ARRAY_TASK_COUNT"
if (( first != 0 || SLURM_ARRAY_TASK_MAX != shards - 1 || ${SLURM_ARRAY_TASK_STEP:-1} != 1 )); then
    cama_die "the array must be 0..N-1 (got $first..$SLURM_ARRAY_TASK_MAX step ${SLURM_ARRAY_TASK_STEP:-1}): one task per shard"
fi

if (( SLURM_ARRAY_TASK_ID == first && ${SLURM_RESTART_COUNT:-0} == 0 )); then
    # The merge job: submitted once, by the first task, held until every task succeeds (afterok; a
    # failed shard cancels it: --kill-on-invalid-dep). It inherits this task's environment (venv,
    # PYTHONPATH), working directory and partition.
    merge=(python -m corpus merge-shards --config "$CONFIG" --num-shards "$shards")
    where=()
    if [[ -n "${SLURM_JOB_PARTITION:-}" ]]; then where+=(--partition="$SLURM_JOB_PARTITION"); fi
    if [[ -n "${SLURM_JOB_ACCOUNT:-}" ]]; then where+=(--account="$SLURM_JOB_ACCOUNT"); fi
    merge_job=$(sbatch --parsable --job-name="${SLURM_JOB_NAME}-merge" "${where[@]}" \
        --dependency="afterok:${SLURM_ARRAY_JOB_ID}" --kill-on-invalid-dep=yes \
        --ntasks=1 --cpus-per-task=1 --time=1:00:00 --chdir="$PWD" --open-mode=append \
        --output="logs/%x-%j.out" --wrap="$(printf '%q ' "${merge[@]}")")
    cama_log "merge job: ${merge_job} (after array job ${SLURM_ARRAY_JOB_ID} succeeds)"
fi

cama_step python -m corpus build --config "$CONFIG" --shard "$SLURM_ARRAY_TASK_ID" --num-shards "$shards" \
    --workers "${SLURM_CPUS_PER_TASK:-1}"
