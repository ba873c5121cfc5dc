"""Preemption and timeouts inside a Slurm job: requeue a training job that saved and stopped, with a limit.

How a suite training job survives preemption (and the wall-clock limit):

1. Slurm sends USR2 ahead of the kill: ``--signal=USR2@<signal_lead_s>`` (hpc.render, from the cluster
   profile), or ``scancel --signal=USR2`` (a preemption by hand). The slurm/*.sh scripts do the same
   without hpc: ``--signal=B:USR2@120`` to the batch shell, which forwards it to the tasks and requeues
   (slurm/lib.sh).
2. The training entry point (train.runtime) catches it, and every rank saves a complete checkpoint at
   the next step boundary (a ZeRO-3 checkpoint needs every rank); the entry point returns
   ``status: "preempted"``.
3. :func:`requeue_stopped` (called by hpc.tasks.run) asks Slurm to requeue the job on rank 0 and ends
   every rank without a result; the requeued job (same id, ``SLURM_RESTART_COUNT`` + 1) resumes from
   the latest complete checkpoint, not from step 0.
4. Past the requeue limit (the profile's ``requeue_limit``, exported as ``CAMA_MAX_REQUEUES``) the job
   still saved, then fails with :class:`RequeueLimitExceeded`: a job that never gets enough time would
   otherwise be requeued forever.

Each requeue (and the refusal at the limit) appends a JSON line to ``requeue-events.jsonl`` in the
checkpoint folder (:func:`read_events`).

The signal must reach the Python process that runs the job: srun starts it directly (hpc.render's
scripts do, and ``python -m hpc.dist exec`` execs into it). Do not put torchrun between srun and the
workers: torchrun's agent does not forward SIGUSR1/SIGUSR2.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from common.jsonl import iter_jsonl
from hpc import slurmcmd

EVENTS = "requeue-events.jsonl"
# The requeue limit inside a job: hpc.render exports the cluster profile's requeue_limit (slurm/lib.sh
# reads the same variable).
REQUEUE_LIMIT_VAR = "CAMA_MAX_REQUEUES"


class RequeueLimitExceeded(RuntimeError):
    """The job was preempted or timed out once more than its requeue limit allows.

    An Exception (not a BaseException) on purpose: submitit's worker records it as the job's error, so
    ``job.result()`` raises with this message and sacct shows the job FAILED."""


def _global_rank() -> int:
    return int(os.environ.get("SLURM_PROCID") or os.environ.get("RANK") or 0)


def restart_count() -> int:
    """How many times Slurm has restarted this job (``SLURM_RESTART_COUNT``; 0 on the first run)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def record_event(checkpoint_dir: Path, kind: str, step: int | None, requeues: int) -> None:
    """Append one requeue event (``requeue`` or ``limit``) to ``checkpoint_dir/requeue-events.jsonl``.

    One short write in append mode: a log that only grows, not a file to replace."""
    record = {"event": kind, "time": time.time(), "job_id": os.environ.get("SLURM_JOB_ID"),
              "restart_count": restart_count(), "requeues": requeues, "step": step, "host": socket.gethostname()}
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    with (checkpoint_dir / EVENTS).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_events(checkpoint_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The requeue events recorded in ``checkpoint_dir`` (oldest first)."""
    path = Path(checkpoint_dir) / EVENTS
    if not path.exists():
        return []
    return [event for _, event in iter_jsonl(path)]  # type: ignore[misc]


def requeue_stopped(result: dict[str, Any]) -> dict[str, Any]:
    """After a training entry point saved and stopped on the signal (``status: "preempted"``): requeue
    the Slurm job so that it resumes from that checkpoint, then leave without a result.

    The trainer cannot do this the submitit way (``Checkpointable.checkpoint()`` on rank 0 inside the
    signal handler): a ZeRO-3 checkpoint needs every rank, at a step boundary. So every rank saves
    first, the entry point returns, and only then rank 0 asks Slurm to requeue; all ranks exit with
    SystemExit, which submitit does not record as the job's result (the requeued run will). Outside
    Slurm (a local run) the result is returned as it is: rerunning the same command resumes."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return result
    checkpoint = result.get("checkpoint")
    folder = Path(checkpoint).parent if checkpoint else None
    if _global_rank() == 0:
        done = restart_count()
        limit = int(os.environ.get(REQUEUE_LIMIT_VAR) or 3)
        if done >= limit:
            if folder is not None:
                record_event(folder, "limit", result.get("step"), done)
            raise RequeueLimitExceeded(
                f"job {job_id} was preempted or timed out after {done} requeue(s), and the requeue limit is "
                f"{limit}: not requeuing it again (latest complete checkpoint: {checkpoint}). Resubmit it to "
                f"continue from that checkpoint, or give it more time per run or a higher requeue_limit.")
        try:
            # Retried while slurmctld does not answer (requeuing twice is harmless: a job cannot be
            # requeued while it is still pending), with the profile's policy exported by hpc.render.
            r = slurmcmd.call(["scontrol", "requeue", job_id], timeout=60)
        except slurmcmd.SlurmError as exc:
            raise RuntimeError(f"job {job_id} saved step {result.get('step')} ({checkpoint}) but could not be "
                               f"requeued: {exc}; resubmit it to continue") from None
        if r.returncode != 0:
            raise RuntimeError(f"job {job_id} saved step {result.get('step')} ({checkpoint}) but `scontrol requeue` "
                               f"failed: {r.stderr.strip() or r.stdout.strip()}; resubmit it to continue")
        if folder is not None:
            record_event(folder, "requeue", result.get("step"), done + 1)
        print(f"[hpc] job {job_id} requeued after saving step {result.get('step')} ({checkpoint})", flush=True)
    raise SystemExit(0)
