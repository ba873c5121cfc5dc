"""`python -m hpc.status [JOB_ID] [--cancel] [--tail N]`: what became of submitted jobs.

    python -m hpc.status                 recent submissions (from the registry) and their states
    python -m hpc.status 123             state of job 123 (each array task), and its log tails
    python -m hpc.status 123 --cancel    scancel it (a dependent merge job is then cancelled by Slurm)

States come from `sacct` (slurmdbd keeps finished jobs), falling back to `squeue` when accounting is
off or has not caught up yet. A controller (or slurmdbd) that does not answer is an error saying so —
which command, which daemon at which address, after how many tries (hpc.slurmcmd) — never "no job".
Log files are submitit's, in the folder recorded when the job was
submitted: `hpc.submit` appends one JSON line per Slurm job to `LOG_FOLDER/submitted.jsonl` (the
registry), so the job id is all one needs to find them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from common.cli import Parser, run
from common.errors import UserError
from common.jsonl import BadLine, iter_jsonl
from hpc import slurmcmd
from hpc.slurmcmd import ControllerUnreachable, Retry

REGISTRY_NAME = "submitted.jsonl"
SACCT_FIELDS = ("JobID", "State", "ExitCode", "Elapsed", "NodeList", "JobName")  # JobName last: may hold '|'
TAIL_TASKS = 4  # log tails shown for an array: its failed tasks first, at most this many


class StatusError(UserError, RuntimeError):
    """A job the cluster does not know, or a Slurm command that failed; the message says which.
    (A daemon that does not answer is hpc.slurmcmd.ControllerUnreachable, also a UserError.)"""


# ---------------------------------------------------------------------------------------------
# The registry of submitted jobs


@dataclass(frozen=True)
class Record:
    """One Slurm job submitted by hpc.submit (an array counts as one job)."""

    job_id: str              # Slurm's id; for an array, the array's id (tasks are ID_0, ID_1, …)
    name: str                # Slurm job name
    kind: str                # corpus, pretrain, … (job kind)
    step: str                # "job", or for a sharded kind "shards" / "merge"
    folder: str              # submitit's folder: pickles, X_T_log.out / X_T_log.err
    tasks: int = 1           # Slurm tasks per job (nodes × tasks per node)
    array: int | None = None  # number of array tasks
    after: str | None = None  # job id this one waits for (afterok)
    cluster: str = ""
    partition: str = ""
    config: str = ""
    submitted: str = ""      # ISO 8601, UTC

    def task_ids(self) -> list[str]:
        """The Slurm ids whose logs exist: ID for a job, ID_i for each array task."""
        if self.array is None:
            return [self.job_id]
        return [f"{self.job_id}_{i}" for i in range(self.array)]

    def log_paths(self, slurm_id: str | None = None, task: int = 0) -> tuple[Path, Path]:
        """(stdout, stderr) of one Slurm task, as submitit names them."""
        from submitit.core.utils import JobPaths

        paths = JobPaths(self.folder, job_id=slurm_id or self.task_ids()[0], task_id=task)
        return paths.stdout, paths.stderr


def registry_path(log_folder: str | os.PathLike) -> Path:
    return Path(log_folder) / REGISTRY_NAME


def record_submission(log_folder: str | os.PathLike, record: Record) -> None:
    """Append one line; a single write in append mode, so concurrent submitters do not interleave."""
    path = registry_path(log_folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(asdict(record), ensure_ascii=False) + "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(line)


def read_registry(log_folder: str | os.PathLike) -> list[Record]:
    """Every record, oldest first; a damaged line (a crash mid-write) is skipped, not fatal."""
    path = registry_path(log_folder)
    if not path.is_file():
        return []
    known = set(Record.__dataclass_fields__)
    records = []
    for _, data in iter_jsonl(path, on_error="skip"):
        if isinstance(data, BadLine):
            continue
        try:
            records.append(Record(**{k: v for k, v in data.items() if k in known}))
        except TypeError:  # a line without the required fields
            continue
    return records


def find_record(log_folder: str | os.PathLike, job_id: str) -> Record | None:
    base = job_id.split("_")[0]
    for record in reversed(read_registry(log_folder)):
        if record.job_id == base:
            return record
    return None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# States from Slurm


@dataclass(frozen=True)
class TaskState:
    slurm_id: str     # "123", "123_4", or a pending range "123_[0-7]"
    state: str        # COMPLETED, FAILED, PENDING, RUNNING, CANCELLED, …
    exit_code: str = ""
    elapsed: str = ""
    nodes: str = ""
    name: str = ""
    source: str = "sacct"


def sacct_states(job_ids: Sequence[str], retry: Retry | None = None) -> list[TaskState] | None:
    """Per-job (array: per-task) states from sacct; None when sacct is missing or accounting is off.
    ControllerUnreachable when slurmdbd does not answer (after the retries)."""
    if not job_ids:
        return []
    try:
        r = slurmcmd.call(["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", ",".join(SACCT_FIELDS)],
                          retry=retry, timeout=30)
    except slurmcmd.SlurmNotInstalled:
        return None
    if r.returncode != 0:  # "accounting storage is disabled" and the like: squeue will do
        return None
    states = []
    for line in r.stdout.splitlines():
        parts = line.split("|")
        if len(parts) < len(SACCT_FIELDS):
            continue
        jid, state, code, elapsed, nodes = parts[:5]
        # "CANCELLED by 0" → CANCELLED; the rest is who did it.
        states.append(TaskState(jid, state.split()[0] if state else "UNKNOWN", code, elapsed, nodes,
                                "|".join(parts[5:])))
    return states


def squeue_states(job_ids: Sequence[str], retry: Retry | None = None) -> list[TaskState]:
    """States of jobs slurmctld still holds (pending, running, or finished less than MinJobAge ago);
    ControllerUnreachable when slurmctld does not answer."""
    states = []
    for jid in job_ids:
        try:
            r = slurmcmd.call(["squeue", "-h", "-r", "-j", jid, "-o", "%i|%T|%M|%N|%j"], retry=retry, timeout=30)
        except slurmcmd.SlurmNotInstalled:
            raise StatusError("neither sacct nor squeue is on PATH: is this a Slurm login node?") from None
        if r.returncode != 0:  # "Invalid job id specified": gone from slurmctld
            continue
        for line in r.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 5:
                states.append(TaskState(parts[0], parts[1], "", parts[2], parts[3], "|".join(parts[4:]), "squeue"))
    return states


def job_states(job_ids: Sequence[str], retry: Retry | None = None) -> list[TaskState]:
    """sacct first; squeue for the ids sacct does not know (accounting off, or not caught up yet).

    A daemon that does not answer is never taken for "no such job": slurmctld down raises
    ControllerUnreachable; slurmdbd down is tolerated only for the jobs slurmctld still knows."""
    try:
        states = sacct_states(job_ids, retry) or []
        dbd_down = None
    except ControllerUnreachable as exc:
        states, dbd_down = [], exc
    known = {s.slurm_id.split("_")[0] for s in states}
    missing = [j for j in job_ids if j.split("_")[0] not in known]
    if missing:
        try:
            states += squeue_states(missing, retry)
        except ControllerUnreachable as exc:
            if dbd_down is not None:
                raise ControllerUnreachable(f"{exc.detail}; and {dbd_down.detail}", exc.command, exc.tries) from None
            raise
        known = {s.slurm_id.split("_")[0] for s in states}
        unknown = [j for j in missing if j.split("_")[0] not in known]
        if unknown and dbd_down is not None:
            # Finished jobs are only in accounting: without slurmdbd their state cannot be known.
            raise ControllerUnreachable(
                f"cannot tell the state of job(s) {', '.join(unknown)}: slurmctld does not hold them (any more) "
                f"and {dbd_down.detail}",
                dbd_down.command, dbd_down.tries) from None
    return states


def summarize(states: Sequence[TaskState]) -> str:
    """'COMPLETED' for one task; 'COMPLETED×3 FAILED×1' for an array."""
    if not states:
        return "UNKNOWN"
    if len(states) == 1:
        return states[0].state
    counts = Counter(s.state for s in states)
    return " ".join(f"{state}×{n}" for state, n in sorted(counts.items()))


def cancel(job_id: str, retry: Retry | None = None) -> str:
    """scancel the job; ControllerUnreachable (saying so) when slurmctld does not answer."""
    try:
        r = slurmcmd.call(["scancel", job_id], retry=retry, timeout=30)
    except slurmcmd.SlurmNotInstalled:
        raise StatusError("scancel is not on PATH: is this a Slurm login node?") from None
    if r.returncode != 0:
        raise StatusError(f"scancel {job_id} failed: {(r.stderr or r.stdout).strip()}")
    return f"cancelled job {job_id}"


# ---------------------------------------------------------------------------------------------
# Logs


def tail(path: Path, lines: int) -> list[str] | None:
    """The last ``lines`` lines of a file (reads only its end); None if it does not exist (yet)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block, data = 8192, b""
            while size > 0 and data.count(b"\n") <= lines:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
                block *= 2
    except FileNotFoundError:
        return None
    text = data.decode("utf-8", errors="replace").splitlines()
    return text[-lines:] if lines > 0 else []


@dataclass
class JobStatus:
    job_id: str
    record: Record | None
    states: list[TaskState]
    logs: dict[str, list[str] | None] = field(default_factory=dict)  # path → last lines (None: not there)

    @property
    def summary(self) -> str:
        return summarize(self.states)


def _job_id(job_id: str) -> str:
    job_id = job_id.strip()
    if not job_id or not job_id.split("_")[0].isdigit():
        raise StatusError(f"{job_id!r} is not a Slurm job id (e.g. 123 or 123_4)")
    return job_id


def status(job_id: str, log_folder: str | os.PathLike | None, tail_lines: int = 20,
           retry: Retry | None = None) -> JobStatus:
    """State of one job (or array task ID_i) and the tails of its logs."""
    job_id = _job_id(job_id)
    record = find_record(log_folder, job_id) if log_folder is not None else None
    states = job_states([job_id], retry)
    if "_" in job_id:
        states = [s for s in states if s.slurm_id == job_id] or states
    if not states and record is None:
        raise StatusError(f"no job {job_id}: sacct and squeue do not know it, and it is not in "
                          f"{registry_path(log_folder) if log_folder else 'the registry'}")
    result = JobStatus(job_id, record, states)
    if record is not None and tail_lines > 0:
        for slurm_id in _tail_ids(record, job_id, states):
            for path in record.log_paths(slurm_id):
                result.logs[str(path)] = tail(path, tail_lines)
    return result


def _tail_ids(record: Record, job_id: str, states: Sequence[TaskState]) -> list[str]:
    """Whose logs to show: the task asked for; for an array its failed tasks first, else the first."""
    if "_" in job_id or record.array is None:
        return [job_id]
    bad = [s.slurm_id for s in states if s.state not in ("COMPLETED", "PENDING", "RUNNING") and "[" not in s.slurm_id]
    ids = bad or record.task_ids()[:1]
    return ids[:TAIL_TASKS]


def recent(log_folder: str | os.PathLike, last: int = 10,
           retry: Retry | None = None) -> list[tuple[Record, list[TaskState]]]:
    """The ``last`` submissions in the registry with their states (one sacct call for them all)."""
    records = read_registry(log_folder)[-last:] if last > 0 else []
    states = job_states([r.job_id for r in records], retry) if records else []
    by_job: dict[str, list[TaskState]] = {}
    for s in states:
        by_job.setdefault(s.slurm_id.split("_")[0], []).append(s)
    return [(r, by_job.get(r.job_id, [])) for r in records]


# ---------------------------------------------------------------------------------------------
# CLI


def format_status(st: JobStatus) -> str:
    out = []
    r = st.record
    if r is not None:
        shape = f"array of {r.array}" if r.array is not None else f"{r.tasks} task(s)"
        after = f", after {r.after}" if r.after else ""
        out.append(f"job {st.job_id}: {st.summary}  [{r.kind} {r.step}, {r.name!r}, {shape}{after}, "
                   f"{r.cluster}/{r.partition}, submitted {r.submitted}]")
        out.append(f"  config: {r.config}")
    else:
        out.append(f"job {st.job_id}: {st.summary}  (not in the registry: submitted outside hpc.submit, "
                   f"or with another --cluster/--log-folder; no log paths known)")
    for s in st.states:
        extra = f" exit {s.exit_code}" if s.exit_code else ""
        out.append(f"  {s.slurm_id:<14} {s.state:<12} {s.elapsed:>10}  {s.nodes}{extra}")
    for path, lines in st.logs.items():
        if lines is None:
            out.append(f"--- {path}: not written yet")
        else:
            out.append(f"--- {path} (last {len(lines)} lines)")
            out.extend(f"  {line}" for line in lines)
    return "\n".join(out)


def format_recent(rows: list[tuple[Record, list[TaskState]]], log_folder: str | os.PathLike) -> str:
    if not rows:
        return f"no jobs in {registry_path(log_folder)}"
    out = [f"{'JOB':<10} {'KIND':<9} {'STEP':<7} {'STATE':<24} {'SUBMITTED':<26} NAME"]
    for r, states in rows:
        out.append(f"{r.job_id:<10} {r.kind:<9} {r.step:<7} {summarize(states):<24} {r.submitted:<26} {r.name}")
    return "\n".join(out)


def _folder_and_retry(args: Any) -> tuple[Path, Retry]:
    """The log folder (--log-folder, else the profile's) and the profile's Slurm retry policy."""
    from hpc.profiles import load_profile

    profile = load_profile(args.cluster) if args.cluster or not args.log_folder else None
    folder = Path(args.log_folder) if args.log_folder else Path(profile.log_folder)
    return folder, Retry.of(profile)


def build_parser() -> Parser:
    p = Parser(
        prog="python -m hpc.status",
        description="State (sacct, else squeue) and log tails of jobs sent with hpc.submit; --cancel scancels.")
    p.add_argument("job_id", nargs="?", help="a job id (123) or array task (123_4); none: list recent jobs")
    p.add_argument("--cancel", action="store_true", help="scancel the job (all its array tasks)")
    p.add_argument("--tail", type=int, default=20, metavar="N", help="log lines to show (default 20; 0: none)")
    p.add_argument("--last", type=int, default=10, metavar="N", help="without JOB_ID: how many jobs (default 10)")
    p.add_argument("--cluster", help="cluster profile whose log folder holds the registry "
                                     "(default: $CAMA_CLUSTER or dev)")
    p.add_argument("--log-folder", help="the log folder jobs were submitted with (overrides the profile's)")
    return p


def _command(args: Any) -> int:
    folder, retry = _folder_and_retry(args)
    if args.job_id is None:
        if args.cancel:
            raise StatusError("--cancel needs a JOB_ID")
        print(format_recent(recent(folder, args.last, retry), folder))
        return 0
    if args.cancel:
        _job_id(args.job_id)
        print(cancel(args.job_id, retry))
    print(format_status(status(args.job_id, folder, args.tail, retry)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run("hpc.status", lambda: _command(args))


if __name__ == "__main__":
    raise SystemExit(main())
