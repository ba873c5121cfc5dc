# shellcheck shell=bash
# Shared by the slurm/*.sh batch scripts; sourced, never submitted. Bash only (arrays, traps).
#
#   cama_setup CONFIG        check the job YAML, load modules, activate the venv, log a header
#   cama_step ARGS...        srun ARGS in the background; on USR2 forward it to the tasks, wait, requeue
#
# Variables a user may set (sbatch exports the submitting shell's environment by default):
#   CAMA_VENV          virtualenv to activate (default: $CAMA_HOME/.venv when it exists)
#   CAMA_MAX_REQUEUES  how many times a preempted / timed-out job requeues itself (default 5, the CaMA profile's requeue_limit)
#   CAMA_HOME          the suite's checkout (default: the directory sbatch was run from)

cama_log() { printf '[cama %(%F %T)T] %s\n' -1 "$*"; }
cama_die() { printf '[cama] error: %s\n' "$*" >&2; exit 2; }

# cama_setup CONFIG: everything a script does before its first srun.
cama_setup() {
    local config="${1:-}"
    [[ -n "$config" ]] || cama_die "no job YAML given: sbatch $0 JOB.yaml"
    [[ -f "$config" ]] || cama_die "job YAML not found: '$config' (relative paths are relative to the job's working directory '$PWD')"

    # --- site setup: uncomment what your cluster needs ---------------------------------------
    # module purge
    # module load cuda/11.8 nccl/2.18 gcc/11
    # module load python/3.11
    local venv="${CAMA_VENV:-$CAMA_HOME/.venv}"
    if [[ -f "$venv/bin/activate" ]]; then
        # shellcheck disable=SC1091
        source "$venv/bin/activate"
    elif [[ -n "${CAMA_VENV:-}" ]]; then
        cama_die "CAMA_VENV='$CAMA_VENV' has no bin/activate"
    fi
    # The checkout's packages are importable even when not pip-installed, whatever the working dir.
    export PYTHONPATH="$CAMA_HOME${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1   # log lines appear as they happen, not when a buffer fills
    # The signal may come before the step starts (a short time limit, a preemption during setup).
    trap 'cama_log "USR2 before the step started"; cama_requeue' USR2

    cama_log "job ${SLURM_JOB_ID:-?} '${SLURM_JOB_NAME:-?}' on ${SLURM_JOB_NODELIST:-?}" \
             "(${SLURM_NTASKS:-?} tasks, restart ${SLURM_RESTART_COUNT:-0}); config '$config';" \
             "python $(command -v python || echo 'not found')"
}

# cama_step ARGS...: `srun --kill-on-bad-exit=1 ARGS` with preemption handling; returns srun's status.
#
# The scripts ask for `--signal=B:USR2@300`: 300 s before the time limit, Slurm signals this batch
# shell (B:), and only it. The trap forwards USR2 to srun, which passes it to every task — the entry
# point itself, since `python -m hpc.dist exec` execs into it (no torchrun in between: torchrun does
# not forward USR1/USR2). The entry point saves a complete checkpoint and exits; then this shell
# requeues the job (same job id, SLURM_RESTART_COUNT + 1) and the next run resumes from the latest
# complete checkpoint. To preempt by hand: `scancel --batch --signal=USR2 JOBID`.
# srun runs in the background because bash runs a trap only after the foreground command returns.
cama_step() {
    _cama_preempted=0
    _cama_waiting=0
    _cama_srun=""
    trap _cama_on_usr2 USR2
    # --kill-on-bad-exit: one rank failing ends the step, instead of the others waiting in a collective.
    srun --kill-on-bad-exit=1 "$@" &
    _cama_srun=$!
    if (( _cama_preempted )); then kill -USR2 "$_cama_srun" 2>/dev/null || true; fi  # it came before srun did
    local rc
    while :; do
        _cama_waiting=1
        rc=0
        wait "$_cama_srun" || rc=$?
        # A trapped signal interrupts `wait` (status 128+n) while srun runs on: wait for it again.
        if (( _cama_waiting == 2 )); then continue; fi
        break
    done
    trap '' USR2   # the step is over: a late signal changes nothing
    if (( _cama_preempted )); then
        cama_log "srun ended with status $rc after the signal"
        cama_requeue
    fi
    return "$rc"
}

_cama_on_usr2() {
    _cama_preempted=1
    _cama_waiting=2
    cama_log "USR2: time limit or preemption ahead; forwarding it to the tasks so they save a checkpoint"
    if [[ -n "$_cama_srun" ]]; then kill -USR2 "$_cama_srun" 2>/dev/null || true; fi
}

# cama_requeue: put the job back in the queue, unless it has been requeued CAMA_MAX_REQUEUES times.
cama_requeue() {
    local done="${SLURM_RESTART_COUNT:-0}" max="${CAMA_MAX_REQUEUES:-5}"
    if (( done >= max )); then
        printf '[cama] error: job %s was preempted or timed out after %s requeue(s), and CAMA_MAX_REQUEUES is %s: not requeuing it again. Resubmit it to continue from its latest complete checkpoint, or give it more time per run.\n' \
            "${SLURM_JOB_ID:-?}" "$done" "$max" >&2
        exit 3
    fi
    cama_log "requeuing job ${SLURM_JOB_ID} (requeue $((done + 1)) of at most $max)"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
}
