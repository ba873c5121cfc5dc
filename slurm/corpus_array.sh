#!/bin/bash
# A corpus build (python -m corpus: one config, a plan of stages) as Slurm array jobs: for each stage
# of `python -m corpus plan --config JOB.yaml --json` (prepare, bands, dedup, build, mix; the ones the
# config needs), one array job of `python -m corpus run-task --stage S --task $SLURM_ARRAY_TASK_ID`
# with the stage's task count and CPUs, each stage `afterok` on the previous one (a failed task cancels
# what follows: --kill-on-invalid-dep). The result is byte-identical to one `python -m corpus build`.
#
#   mkdir -p logs && bash slurm/corpus_array.sh configs/corpus/JOB.yaml              # on the login node
#   mkdir -p logs && sbatch --array=0 slurm/corpus_array.sh configs/corpus/JOB.yaml  # or as a small job
#   bash slurm/corpus_array.sh JOB.yaml --tasks 32 --set band_tasks=8               # corpus options
#
# Arguments after JOB.yaml go to both `plan` and every `run-task` (--tasks N: N prepare tasks per
# source; --set KEY=VALUE). The submitting run (the driver: the login-node shell, or task 0 of this
# script's own array; other tasks of it have nothing to do) prints one line per stage job and last
# `last job: ID`. Stage jobs run this script again with CAMA_CORPUS_STAGE set, in the same working
# directory, with this environment. A requeued or rerun task whose outputs are complete is skipped
# (fingerprinted markers), so requeuing is cheap and resubmitting the whole chain redoes only what is missing.
#
#SBATCH --job-name=cama-corpus
#SBATCH --array=0-7
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --time=4:00:00
#SBATCH --signal=B:USR2@300
#SBATCH --requeue
#SBATCH --open-mode=append
# logs/ must exist in the job's working directory before submitting (Slurm does not create it).
#SBATCH --output=logs/%x-%A_%a.out
##SBATCH --partition=cpu
##SBATCH --account=my-account

set -euo pipefail
CONFIG="${1:?usage: sbatch slurm/corpus_array.sh JOB.yaml [corpus options: --tasks N, --set KEY=VALUE]}"
shift
CAMA_HOME="${CAMA_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}"
if [[ ! -f "$CAMA_HOME/slurm/lib.sh" ]]; then
    echo "[cama] error: '$CAMA_HOME/slurm/lib.sh' not found: submit from the suite's checkout, or export CAMA_HOME=/path/to/it" >&2
    exit 2
fi
# shellcheck source=slurm/lib.sh
source "$CAMA_HOME/slurm/lib.sh"
cama_setup "$CONFIG"

if [[ -n "${CAMA_CORPUS_STAGE:-}" ]]; then
    # A task of one stage's array job.
    [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]] || cama_die "CAMA_CORPUS_STAGE is set but this is not an array task"
    cama_step python -m corpus run-task --config "$CONFIG" --stage "$CAMA_CORPUS_STAGE" \
        --task "$SLURM_ARRAY_TASK_ID" --no-progress "$@"
    exit $?
fi

# The driver: submit the plan's stages.
if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    if (( ${SLURM_ARRAY_TASK_ID:-0} != ${SLURM_ARRAY_TASK_MIN:-0} )); then
        cama_log "task ${SLURM_ARRAY_TASK_ID} of the submitting job: the first task submits the plan, nothing to do here"
        exit 0
    fi
    if (( ${SLURM_RESTART_COUNT:-0} > 0 )); then
        cama_log "requeued driver (restart ${SLURM_RESTART_COUNT}): the stage jobs were submitted by the first run"
        exit 0
    fi
fi
[[ -d logs ]] || cama_die "no logs/ folder in '$PWD': the stage jobs write their logs there (mkdir -p logs)"
plan=$(python -m corpus plan --config "$CONFIG" --json --no-progress "$@") || cama_die "python -m corpus plan failed (above)"
# One line per stage: NAME TASKS CPUS.
stages=$(python -c 'import json, sys
for s in json.load(sys.stdin)["stages"]:
    print(s["name"], s["tasks"], s["cpus"])' <<<"$plan")

name="${CAMA_CORPUS_NAME:-${SLURM_JOB_NAME:-cama-corpus}}"
where=()
if [[ -n "${SLURM_JOB_PARTITION:-}" ]]; then where+=(--partition="$SLURM_JOB_PARTITION"); fi
if [[ -n "${SLURM_JOB_ACCOUNT:-}" ]]; then where+=(--account="$SLURM_JOB_ACCOUNT"); fi
script="$CAMA_HOME/slurm/corpus_array.sh"   # not $0: in a batch job that is Slurm's copy of the script
previous=""
while read -r stage tasks cpus; do
    after=()
    if [[ -n "$previous" ]]; then after=(--dependency="afterok:$previous" --kill-on-invalid-dep=yes); fi
    # Command-line options override the #SBATCH lines above (the array, the CPUs); the rest hold.
    previous=$(sbatch --parsable --job-name="$name-$stage" "${where[@]}" "${after[@]}" \
        --array="0-$((tasks - 1))" --cpus-per-task="$cpus" --chdir="$PWD" \
        --export="ALL,CAMA_HOME=$CAMA_HOME,CAMA_CORPUS_STAGE=$stage" \
        "$script" "$CONFIG" "$@") || cama_die "sbatch of stage '$stage' failed (above)"
    previous="${previous%%;*}"
    cama_log "stage $stage: job $previous ($tasks task(s) of $cpus CPU(s))"
done <<<"$stages"
cama_log "last job: $previous"
