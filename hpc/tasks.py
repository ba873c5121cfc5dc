"""What runs inside a job: one task of a kind's entry point, and the smoke-test probe.

These are pickled by reference (module + name), so the job must import this same checkout:
hpc.render exports PYTHONPATH for it.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from hpc import jobs


def run(kind_name: str, cfg: Any, distributed: bool = True) -> Any:
    """One task of a job: the torch.distributed env first (GPU kinds under Slurm), then the entry point.

    A training entry point that got the preemption / time-limit signal saves a checkpoint on every
    rank and returns ``status: "preempted"``; under Slurm the job is then requeued to resume from it
    (:func:`hpc.preempt.requeue_stopped`), and no result is recorded for this run."""
    kind = jobs.KINDS[kind_name]
    if kind.gpus and distributed:
        from hpc import dist  # inside the job only: the login node needs no torch.distributed env

        dist.setup()
    entry: Callable[[Any], Any] = jobs.resolve(kind.entry)
    result = entry(cfg)
    if isinstance(result, dict) and result.get("status") == "preempted":
        from hpc.preempt import requeue_stopped

        requeue_stopped(result)
    return result


@dataclass(frozen=True)
class ProbeConfig:
    message: str = "hello from hpc.tasks.probe"
    fail: bool = False        # raise, to see how a failing job surfaces
    sleep_s: float = 0.0      # stay running this long (cancel and status tests)


def probe(cfg: ProbeConfig) -> dict[str, Any]:
    """Where the job ran and what Slurm gave it; printed to the job's log and returned."""
    if cfg.sleep_s:
        time.sleep(cfg.sleep_s)
    info = {
        "message": cfg.message,
        "host": socket.gethostname(),
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "job_name": os.environ.get("SLURM_JOB_NAME"),
        "node": os.environ.get("SLURMD_NODENAME"),
        "procid": os.environ.get("SLURM_PROCID"),
        "ntasks": os.environ.get("SLURM_NTASKS"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        # Set by hpc.dist.setup() in GPU-shaped jobs.
        **{k.lower(): os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")},
        "python": sys.executable,
        "cwd": os.getcwd(),
    }
    print(f"probe: {info}", flush=True)
    if cfg.fail:
        raise RuntimeError(f"probe asked to fail: {cfg.message}")
    return info
