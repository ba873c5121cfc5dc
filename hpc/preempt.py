"""Preemption and timeouts: complete-or-absent checkpoints, and a submitit Checkpointable with a requeue limit.

How a suite job survives preemption (and the wall-clock limit):

1. It is sent through submitit wrapped in :class:`Requeueable`; submitit asks for
   ``--signal=USR2@<slurm_signal_delay_s>`` (90 s by default), delivered to the job's tasks.
   (The slurm/*.sh scripts do the same without submitit: ``--signal=B:USR2@120`` to the batch
   shell, which forwards it to the tasks and requeues — see slurm/lib.sh.)
2. Slurm sends USR2 ahead of the kill (timeout), or ``scancel --signal`` does (preemption; submitit's
   ``job._interrupt()`` sends SIGTERM then USR2 the same way). submitit's handler calls
   ``Requeueable.checkpoint()`` on global rank 0, which calls the wrapped job's own ``save()`` into a
   complete-or-absent checkpoint, counts the requeue, and lets submitit ``scontrol requeue`` the job.
3. The requeued job (same job id, ``SLURM_RESTART_COUNT`` + 1) runs the job again; it resumes from
   :func:`latest_complete` of its checkpoint folder, not from step 0.
4. Past ``requeue_limit`` requeues the job still saves, then fails with :class:`RequeueLimitExceeded`
   (a job that never gets enough time would otherwise be requeued forever).

Checkpoints are "complete or absent": a checkpoint is written into a temporary folder, every file is
fsynced, a marker (``COMPLETE.json``, listing files and sizes) is written last, and the folder is
renamed to ``step-<step>`` in one atomic rename. A job killed mid-save leaves only a ``.tmp-*`` folder,
which readers ignore and the next run removes. :func:`latest_complete` picks the newest complete one.

The signal must reach the Python process that runs the job: srun starts it directly (submitit does,
and ``python -m hpc.dist exec`` execs into it). Do not put torchrun between srun and the workers:
torchrun's agent does not forward SIGUSR1/SIGUSR2, so ``checkpoint()`` would never be called.

``save()`` runs inside the signal handler, on rank 0 only, while the job's main loop is paused at an
arbitrary bytecode: it must save the last *consistent* state (publish state as one immutable snapshot
per step, as :class:`Recurrence` does) and finish well within the lead time. A sharded ZeRO-3 save,
which needs every rank, is instead done cooperatively at step boundaries by the training loop (the
training issue); rank 0's ``save()`` then only has to point at the latest complete checkpoint.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Generic, Protocol, TypeVar

from submitit.helpers import Checkpointable, DelayedSubmission

MARKER = "COMPLETE.json"
STEP_PREFIX = "step-"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
EVENTS = "requeue-events.jsonl"

R = TypeVar("R", covariant=True)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or a folder is not a checkpoint folder."""


class RequeueLimitExceeded(RuntimeError):
    """The job was preempted or timed out once more than its requeue limit allows.

    An Exception (not a BaseException) on purpose: submitit's ``process_job`` records it as the job's
    error, so ``job.result()`` raises with this message and sacct shows the job FAILED."""


# ---------------------------------------------------------------------------------------------
# Complete-or-absent checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint folder: ``root/step-<step>``, its marker already written."""

    path: Path
    step: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


_counter = itertools.count()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _step_dir(root: Path, step: int) -> Path:
    return root / f"{STEP_PREFIX}{step:012d}"


def save_complete(root: str | os.PathLike[str], write: Callable[[Path], int | None], *,
                  keep: int | None = 2, meta: dict[str, Any] | None = None) -> Checkpoint | None:
    """Write a checkpoint that is complete or absent.

    ``write(tmp)`` fills the empty folder ``tmp`` and returns the step it saved (None: nothing to save
    yet, e.g. a signal before the first step; then nothing is left behind). Then every file is fsynced,
    the marker is written last, and ``tmp`` is renamed to ``root/step-<step>`` (replacing an older
    checkpoint of the same step). ``keep``: how many complete checkpoints to keep (None: all)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{next(_counter)}"
    tmp.mkdir()
    try:
        step = write(tmp)
        if step is None:
            shutil.rmtree(tmp)
            return None
        if not isinstance(step, int) or step < 0:
            raise CheckpointError(f"save() must return the step it saved (an int ≥ 0) or None, not {step!r}")
        files: dict[str, int] = {}
        for path in sorted(tmp.rglob("*")):
            if path.is_file():
                _fsync_path(path)
                files[path.relative_to(tmp).as_posix()] = path.stat().st_size
        marker = {"step": step, "files": files, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "job_id": os.environ.get("SLURM_JOB_ID"), "restart": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
                  **(meta or {})}
        with (tmp / MARKER).open("w", encoding="utf-8") as f:
            json.dump(marker, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        _fsync_path(tmp)
        final = _step_dir(root, step)
        if final.exists():  # the same step saved again (periodic save, then the signal's): swap it out
            old = root / f"{OLD_PREFIX}{tmp.name[len(TMP_PREFIX):]}"
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        _fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep is not None:
        prune(root, keep)
    return Checkpoint(final, step, marker)


def _read_complete(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path`` if it is complete: marker present, parseable, naming this step, and
    every file it lists present with its size. Anything else is treated as absent."""
    try:
        step = int(path.name[len(STEP_PREFIX):])
        meta = json.loads((path / MARKER).read_text(encoding="utf-8"))
        if meta.get("step") != step:
            return None
        for rel, size in meta.get("files", {}).items():
            if (path / rel).stat().st_size != size:
                return None
    except (ValueError, OSError, json.JSONDecodeError, AttributeError):
        return None
    return Checkpoint(path, step, meta)


def list_complete(root: str | os.PathLike[str]) -> list[Checkpoint]:
    """Every complete checkpoint under ``root``, oldest step first (a missing root has none)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = (_read_complete(p) for p in root.iterdir() if p.name.startswith(STEP_PREFIX) and p.is_dir())
    return sorted((c for c in found if c is not None), key=lambda c: c.step)


def latest_complete(root: str | os.PathLike[str]) -> Checkpoint | None:
    """The complete checkpoint with the highest step under ``root``, or None."""
    done = list_complete(root)
    return done[-1] if done else None


def prune(root: str | os.PathLike[str], keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` complete checkpoints (never the newest one); returns what went."""
    keep = max(keep, 1)
    old = list_complete(root)[:-keep]
    for c in old:
        shutil.rmtree(c.path, ignore_errors=True)
    return [c.path for c in old]


def remove_partial(root: str | os.PathLike[str]) -> list[Path]:
    """Remove leftovers of saves that never completed (``.tmp-*``, ``.old-*``). Only when no save can
    be running: at the start of a (re)started job, before its first save."""
    root = Path(root)
    if not root.is_dir():
        return []
    gone = [p for p in root.iterdir() if p.name.startswith((TMP_PREFIX, OLD_PREFIX))]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


@dataclass(frozen=True)
class Checkpoints:
    """A job's checkpoint folder, as handed to :meth:`Resumable.run`."""

    root: Path
    keep: int | None = 2

    def latest(self) -> Checkpoint | None:
        return latest_complete(self.root)

    def save(self, write: Callable[[Path], int | None], **meta: Any) -> Checkpoint | None:
        return save_complete(self.root, write, keep=self.keep, meta=meta or None)


# ---------------------------------------------------------------------------------------------
# The submitit side


class Resumable(Protocol[R]):
    """What :class:`Requeueable` wraps: a picklable job description that keeps its live state out of
    its pickle (``__getstate__``) — a requeued job resumes from its checkpoint folder, not from a
    pickled copy of the model."""

    def run(self, checkpoints: Checkpoints) -> R:
        """Do the work, resuming from ``checkpoints.latest()`` when there is one; may save periodically."""
        ...

    def save(self, dest: Path) -> int | None:
        """Write the current consistent state into the empty folder ``dest``; return its step (None:
        nothing to save yet). Called from the signal handler on rank 0 (see the module docstring)."""
        ...


def _global_rank() -> int:
    return int(os.environ.get("SLURM_PROCID") or os.environ.get("RANK") or 0)


def restart_count() -> int:
    """How many times Slurm has restarted this job (``SLURM_RESTART_COUNT``; 0 on the first run)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


class Requeueable(Checkpointable, Generic[R]):
    """A submitit Checkpointable around a :class:`Resumable` job, with a requeue limit::

        job = executor.submit(Requeueable(MyJob(cfg), "runs/x/checkpoints", requeue_limit=3))

    On the preemption/timeout signal (submitit calls ``checkpoint()`` on rank 0): the wrapped job's
    ``save()`` goes into a complete-or-absent checkpoint, then the job is requeued unless it has
    already been requeued ``requeue_limit`` times, in which case it fails with RequeueLimitExceeded.
    Requeues are counted in this object's pickled state and by Slurm (SLURM_RESTART_COUNT, which also
    counts requeues nobody asked this object about, e.g. a node failure); the larger count wins.
    Each requeue appends a JSON line to ``<checkpoint_dir>/requeue-events.jsonl``.

    submitit keeps its own count of timeouts (the executor's ``max_num_timeout``, default 3) and, for
    jobs shorter than 50 minutes, counts every signal as a timeout: keep ``max_num_timeout`` ≥
    ``requeue_limit``, or submitit stops requeueing first (after this object has saved)."""

    def __init__(self, job: Resumable[R], checkpoint_dir: str | os.PathLike[str], *,
                 requeue_limit: int = 3, keep: int | None = 2) -> None:
        if requeue_limit < 0:
            raise ValueError(f"requeue_limit must be ≥ 0, not {requeue_limit}")
        self.job = job
        self.checkpoint_dir = Path(checkpoint_dir)
        self.requeue_limit = requeue_limit
        self.keep = keep
        self.requeues = 0

    @property
    def checkpoints(self) -> Checkpoints:
        return Checkpoints(self.checkpoint_dir, self.keep)

    def __call__(self) -> R:
        if _global_rank() == 0:
            # A save the previous run could not finish (killed after the lead time) left a .tmp-* folder.
            remove_partial(self.checkpoint_dir)
        return self.job.run(self.checkpoints)

    def requeues_so_far(self) -> int:
        return max(self.requeues, restart_count())

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        saved = self.checkpoints.save(self.job.save)
        done = self.requeues_so_far()
        where = f"latest complete checkpoint: {saved.path if saved else latest_complete(self.checkpoint_dir)}"
        if done >= self.requeue_limit:
            self._event("limit", saved, done)
            raise RequeueLimitExceeded(
                f"job {os.environ.get('SLURM_JOB_ID', '?')} was preempted or timed out after {done} requeue(s), "
                f"and requeue_limit is {self.requeue_limit}: not requeuing it again ({where}). Resubmit it "
                f"to continue from that checkpoint, or give it more time per run or a higher requeue_limit.")
        self.requeues = done + 1
        self._event("requeue", saved, self.requeues)
        return DelayedSubmission(self, *args, **kwargs)

    def _event(self, kind: str, saved: Checkpoint | None, requeues: int) -> None:
        record_event(self.checkpoint_dir, kind, saved.step if saved else None, requeues)


def record_event(checkpoint_dir: Path, kind: str, step: int | None, requeues: int) -> None:
    """Append one requeue event (``requeue`` or ``limit``) to ``checkpoint_dir/requeue-events.jsonl``."""
    record = {"event": kind, "time": time.time(), "job_id": os.environ.get("SLURM_JOB_ID"),
              "restart_count": restart_count(), "requeues": requeues, "step": step, "host": socket.gethostname()}
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    with (checkpoint_dir / EVENTS).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


# The requeue limit inside a job: hpc.submit exports the cluster profile's requeue_limit (slurm/lib.sh
# reads the same variable).
REQUEUE_LIMIT_VAR = "CAMA_MAX_REQUEUES"


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
        r = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"job {job_id} saved step {result.get('step')} ({checkpoint}) but `scontrol requeue` "
                               f"failed: {r.stderr.strip() or r.stdout.strip()}; resubmit it to continue")
        if folder is not None:
            record_event(folder, "requeue", result.get("step"), done + 1)
        print(f"[hpc] job {job_id} requeued after saving step {result.get('step')} ({checkpoint})", flush=True)
    raise SystemExit(0)


def read_events(checkpoint_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The requeue events a Requeueable recorded in ``checkpoint_dir`` (oldest first)."""
    path = Path(checkpoint_dir) / EVENTS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------
# A small deterministic job, until training lands: the preemption tests' workload.

_MASK = (1 << 64) - 1
_A, _C = 6364136223846793005, 1442695040888963407  # Knuth's MMIX LCG constants


def _advance(x: tuple[int, ...]) -> tuple[int, ...]:
    """One step of a coupled 64-bit recurrence: each lane mixes in its left neighbour's old value."""
    n = len(x)
    return tuple((x[i] * _A + x[i - 1] + _C + i) & _MASK for i in range(n))


@dataclass(frozen=True)
class RecurrenceResult:
    value: str               # the final state, hex
    steps: int
    resumed_from: int        # the step the last run started at (0: from scratch)
    restarts: int            # SLURM_RESTART_COUNT of the last run


@dataclass
class Recurrence:
    """Iterate a 64-bit recurrence for ``steps`` steps, sleeping ``sleep_s`` per step and saving every
    ``save_every`` steps; its result does not depend on where it was interrupted and resumed."""

    steps: int
    sleep_s: float = 0.0
    save_every: int = 10
    lanes: int = 4
    seed: int = 0
    _live: tuple[int, tuple[int, ...]] | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # Live state never travels in the requeue pickle: the restarted job must resume from disk.
        return {k: v for k, v in self.__dict__.items() if k != "_live"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _live=None)

    def initial(self) -> tuple[int, ...]:
        return tuple((self.seed * 1_000_003 + i * 7919 + 1) & _MASK for i in range(self.lanes))

    def reference(self) -> str:
        """The uninterrupted result, computed here and now (no sleeping, no checkpoints)."""
        x = self.initial()
        for _ in range(self.steps):
            x = _advance(x)
        return _hex(x)

    def run(self, checkpoints: Checkpoints) -> RecurrenceResult:
        start = checkpoints.latest()
        step, x = (0, self.initial()) if start is None else self._load(start.path)
        resumed_from = step
        self._live = (step, x)
        while step < self.steps:
            x = _advance(x)
            step += 1
            self._live = (step, x)  # one assignment: a signal handler sees a consistent (step, state)
            if self.sleep_s:
                time.sleep(self.sleep_s)
            if step % self.save_every == 0 and step < self.steps:
                checkpoints.save(self.save)
        return RecurrenceResult(_hex(x), self.steps, resumed_from, restart_count())

    def save(self, dest: Path) -> int | None:
        live = self._live
        if live is None:
            return None
        step, x = live
        (dest / "state.json").write_text(json.dumps({"step": step, "x": list(x), "lanes": self.lanes}),
                                         encoding="utf-8")
        return step

    def _load(self, path: Path) -> tuple[int, tuple[int, ...]]:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        if state.get("lanes") != self.lanes:
            raise CheckpointError(f"{path} holds {state.get('lanes')} lanes, this job has {self.lanes}: "
                                  f"a different job's checkpoint folder?")
        return int(state["step"]), tuple(int(v) for v in state["x"])


def _hex(x: tuple[int, ...]) -> str:
    return "".join(f"{v:016x}" for v in x)
