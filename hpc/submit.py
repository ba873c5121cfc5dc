"""`python -m hpc.submit KIND --config JOB.yaml`: send a stage of the pipeline to Slurm.

    python -m hpc.submit corpus   --config configs/tiny/corpus.yaml [--shards N] [--follow]
    python -m hpc.submit sources  --config configs/tiny/sources.yaml
    python -m hpc.submit pretrain --config JOB.yaml --cluster cama_3x8v100 --dry-run
    python -m hpc.submit lora     --config JOB.yaml [--partition P] [--nodes N] [--gpus-per-node G] [--time T]
    python -m hpc.submit pipeline --config configs/tiny/pipeline.yaml [--local] [--follow]
    python -m hpc.submit pretrain --config JOB.yaml --set max_steps=10 --print-config

Three rooms: hpc.plan checks the request and lays the job out as steps (the kind's planner, named in
hpc.jobs); hpc.render writes each step's sbatch script; this module submits them — or, where there is
no Slurm (no `sbatch` on PATH, or `--local`), runs the same steps here in this process.

Submitting a step: each task's function call is pickled into the submission folder (submitit's
format, so submitit's worker runs it and its Job objects wait for it and read its result), the
resolved config is written beside it as config.json (what the jobs run with, for a person to read),
the script goes to `sbatch`, and the job is appended to LOG_FOLDER/submitted.jsonl, which
`python -m hpc.status` reads to find its logs. All or nothing: when sbatch refuses a later step, the
steps already submitted are cancelled. `--follow` waits and turns a failed job into an error
carrying the job's own exception and traceback.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from common.atomic import write_json, write_text
from common.cli import Parser, add_config_options, run
from common.config import ConfigError, format_config, to_dict
from common.errors import UserError
from hpc import jobs, render as _render, slurmcmd
from hpc.plan import Plan, Request, Step, plan
from hpc.profiles import Profile
from hpc.status import Record, now_iso, record_submission, registry_path

__all__ = ["ConfigError", "JobFailed", "Plan", "Request", "SubmitError", "Submission", "dry_run", "main", "plan",
           "render", "run_local", "submit", "submit_plan"]

render = _render.render


class SubmitError(UserError, RuntimeError):
    """sbatch refused a job, or Slurm is not reachable; what was already submitted is cancelled."""


class JobFailed(RuntimeError):
    """A submitted (or local) job ended without success; the message carries the job's own error."""


@dataclass
class SubmittedStep:
    step: Step
    job_id: str                      # Slurm's id (an array's own id)
    jobs: list[Any]                  # submitit Job objects, one per array task
    stdout: Path                     # the first task's
    stderr: Path


@dataclass
class Submission:
    plan: Plan
    steps: list[SubmittedStep] = field(default_factory=list)
    local: bool = False
    local_results: list[list[Any]] = field(default_factory=list)

    @property
    def job_ids(self) -> list[str]:
        return [s.job_id for s in self.steps]

    def wait(self) -> list[list[Any]]:
        """Each step's results (one per array task); JobFailed carrying the job's error otherwise."""
        if self.local:
            return self.local_results
        return follow(self)


def slurm_available(profile: Profile | None = None) -> bool:
    """Whether Slurm is there to submit to: sbatch and srun on PATH (else jobs run here). Installed but
    not answering (after the profile's retries) is an error, not a reason to run a cluster job on a
    login node."""
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        return False
    try:
        r = slurmcmd.call(["sinfo", "-h", "-o", "%P"], retry=slurmcmd.Retry.of(profile), timeout=30)
    except slurmcmd.SlurmError as exc:
        raise SubmitError(f"Slurm is installed but cannot be used: {exc} Nothing was submitted; to run the "
                          f"job here instead: --local.") from None
    if r.returncode == 0:
        return True
    why = (r.stderr.strip().splitlines() or ["no output"])[-1]
    raise SubmitError(f"Slurm is installed but sinfo fails ({why}). Point SLURM_CONF at the cluster's "
                      f"slurm.conf, or run here with --local.")


def _sbatch(script_path: Path, retry: slurmcmd.Retry | None = None) -> str:
    """Submit one script; Slurm's job id. A controller that cannot be reached is retried; a timeout
    after the request was sent is not (it may have created the job: see hpc.slurmcmd)."""
    try:
        r = slurmcmd.call(["sbatch", "--parsable", str(script_path)], retry=retry, timeout=120, once=True)
    except slurmcmd.SlurmError as exc:
        raise SubmitError(str(exc)) from None
    if r.returncode != 0:
        raise SubmitError(f"sbatch refused {script_path.name}: {(r.stderr or r.stdout).strip()}")
    job_id = r.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SubmitError(f"sbatch answered {r.stdout.strip()!r}, not a job id")
    return job_id


def submit_step(p: Plan, step: Step, after: str | None) -> SubmittedStep:
    """One step: its calls pickled, its script (exactly what render shows) given to sbatch."""
    import submitit
    from submitit.helpers import DelayedSubmission

    pending = []
    for args in step.calls:
        delayed = DelayedSubmission(step.fn, *args)
        # submitit's worker counts timeouts against this (for jobs that checkpoint through submitit).
        delayed.set_timeout(step.resources.time_min, p.profile.requeue_limit)
        path = p.folder / f".pending-{uuid.uuid4().hex}.pkl"
        delayed.dump(path)
        pending.append(path)
    script_path = p.folder / f".submission-{uuid.uuid4().hex}.sh"
    write_text(script_path, _render.script(step, p.profile, p.folder, after))
    try:
        job_id = _sbatch(script_path, slurmcmd.Retry.of(p.profile))
    except SubmitError:
        for path in (*pending, script_path):
            path.unlink(missing_ok=True)
        raise
    ids = [f"{job_id}_{i}" for i in range(len(step.calls))] if step.array else [job_id]
    tasks = list(range(step.resources.tasks))
    job_list = [submitit.SlurmJob(folder=p.folder, job_id=i, tasks=tasks) for i in ids]
    # The worker waits (up to a minute) for its pickle to appear under the job's id.
    for job, path in zip(job_list, pending):
        job.paths.move_temporary_file(path, "submitted_pickle")
    script_path.rename(job_list[0].paths.submission_file)
    return SubmittedStep(step, job_id, job_list, job_list[0].paths.stdout, job_list[0].paths.stderr)


def submit_plan(p: Plan) -> Submission:
    """Submit every step in order, each dependent one after the job it waits for. All or nothing:
    if sbatch refuses a later step, the steps already submitted are cancelled."""
    p.folder.mkdir(parents=True, exist_ok=True)
    write_json(p.folder / "config.json", {"kind": p.kind.name, "config_file": p.config_path,
                                          "config": to_dict(p.config)})
    sub = Submission(p)
    try:
        for step in p.steps:
            after = sub.steps[step.after].job_id if step.after is not None else None
            done = submit_step(p, step, after)
            sub.steps.append(done)
            record_submission(p.log_folder, Record(
                job_id=done.job_id, name=step.name, kind=p.kind.name, step=step.label, folder=str(p.folder),
                tasks=step.resources.tasks, array=step.array, after=after, cluster=p.profile.name,
                partition=step.resources.partition, config=p.config_path, submitted=now_iso()))
    except (SubmitError, OSError) as exc:
        cancelled = ""
        if sub.steps:
            failed = []
            for s in sub.steps:
                try:
                    slurmcmd.call(["scancel", s.job_id], retry=slurmcmd.Retry.of(p.profile), timeout=30)
                except slurmcmd.SlurmError:
                    failed.append(s.job_id)
            cancelled = (f" (cancelled the steps already submitted: {', '.join(sub.job_ids)})" if not failed else
                         f" (could not cancel the steps already submitted: {', '.join(failed)}; scancel them)")
        raise SubmitError(f"submitting the {p.kind.name} job failed{cancelled}: {exc}") from exc
    return sub


def error_headline(exc: BaseException) -> str:
    """One line saying what went wrong. For a job that raised (submitit's FailedJobError) that is the
    job's own exception line, `Type: message`, the last line of the traceback between submitit's rules;
    for a job that ended without a result (cancelled, timed out, killed) submitit's first line."""
    text = str(exc)
    rule = "\n----------------------\n"
    if text.startswith("Job (task=") and text.count(rule) >= 2:
        lines = [ln.strip() for ln in text.split(rule)[1].splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    m = re.search(r"has not produced any output \(state: ([^)]*)\)", text)
    if m:
        return f"it ended without a result (Slurm state {m.group(1)}): cancelled, timed out or killed"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _what(p: Plan, step: Step) -> str:
    """'probe' for a one-step kind, 'corpus shards' / 'corpus merge' for the steps of a larger one."""
    return p.kind.name if step.label == "job" else f"{p.kind.name} {step.label}"


def follow(sub: Submission) -> list[list[Any]]:
    """Wait for every step in order; the first failure raises JobFailed with the job's own error."""
    results = []
    for s in sub.steps:
        for job in s.jobs:
            job.wait()
        failed = [(job, exc) for job in s.jobs if (exc := job.exception()) is not None]
        if failed:
            job, exc = failed[0]
            waiting = [d.job_id for d in sub.steps if d.step.after is not None and sub.steps[d.step.after] is s]
            many = f" ({len(failed)} of {len(s.jobs)} array tasks failed)" if s.step.array else ""
            note = (f"\nDependent job(s) {', '.join(waiting)} will not run: Slurm cancels them "
                    f"(--kill-on-invalid-dep)." if waiting else "")
            raise JobFailed(f"{_what(sub.plan, s.step)} (Slurm job {job.job_id}, {s.step.name!r}) failed{many}: "
                            f"{error_headline(exc)}\n{exc}{note}") from None
        # One entry per array task; a multi-task (multi-GPU) job gives the list of its ranks' results.
        per_job = [job.results() for job in s.jobs]
        results.append([r[0] if len(r) == 1 else r for r in per_job])
    return results


def run_local(p: Plan) -> Submission:
    """The same steps, one after the other, in this process (one task: no torch.distributed world)."""
    sub = Submission(p, local=True)
    for step in p.steps:
        step_results = []
        for i, args in enumerate(step.calls):
            try:
                step_results.append(step.fn(*args, **step.local_kwargs))
            except Exception as exc:
                where = f" task {i}" if step.array else ""
                raise JobFailed(f"{_what(p, step)}{where} failed (local run): "
                                f"{type(exc).__name__}: {exc}") from exc
        sub.local_results.append(step_results)
    return sub


def submit(kind: str, config: str | Path, profile: Profile | str | None = None, *,
           local: bool | None = None, sets: Iterable[str] = (), **request: Any) -> Submission:
    """Plan, check and submit a job (or run it here when there is no Slurm, or local=True).

    ``request`` holds Request's fields: partition, nodes, gpus_per_node, time, shards, job_name,
    log_folder; ``sets``: ``--set KEY=VALUE`` overrides of the job config. ``.wait()`` on the result
    waits and raises JobFailed if the job failed.
    """
    p = plan(kind, config, profile, Request(**request), sets=sets)
    if local or (local is None and not slurm_available(p.profile)):
        return run_local(p)
    return submit_plan(p)


def dry_run(kind: str, config: str | Path, profile: Profile | str | None = None, *, sets: Iterable[str] = (),
            **request: Any) -> str:
    return render(plan(kind, config, profile, Request(**request), dry_run=True, sets=sets))


# ---------------------------------------------------------------------------------------------
# CLI


def describe_submission(sub: Submission) -> str:
    out = []
    for s in sub.steps:
        r = s.step.resources
        shape = (f"array of {s.step.array} tasks" if s.step.array
                 else f"{r.nodes} node(s) × {r.tasks_per_node} task(s)")
        after = f", starts after job {sub.steps[s.step.after].job_id} succeeds" if s.step.after is not None else ""
        out.append(f"submitted {_what(sub.plan, s.step)} as job {s.job_id} ({shape}) on "
                   f"{sub.plan.profile.name}/{r.partition}{after}")
        more = f"   (array task i: {s.job_id}_i_0_log.out)" if s.step.array else ""
        out.append(f"  stdout: {s.stdout}{more}")
        out.append(f"  stderr: {s.stderr}")
    out.append(f"registry: {registry_path(sub.plan.log_folder)}")
    out.append(f"status:   python -m hpc.status {sub.job_ids[-1]}" +
               (f" --log-folder {shlex.quote(str(sub.plan.log_folder))}"
                if sub.plan.log_folder != Path(sub.plan.profile.log_folder).absolute() else ""))
    return "\n".join(out)


def describe_results(p: Plan, results: list[list[Any]]) -> str:
    out = []
    for step, step_results in zip(p.steps, results):
        last = step_results[-1] if step_results else None
        if step.describe is not None and isinstance(last, dict):
            out.append(f"{_what(p, step)}: {step.describe(last)}")
            continue
        n = len(step_results)
        shape = f"{n} array tasks, the last's" if n > 1 else "result"
        if isinstance(last, list):  # a multi-task job: one result per rank
            shape, last = f"{len(last)} ranks, rank 0's", last[0] if last else None
        text = json.dumps(last, default=str, ensure_ascii=False)
        out.append(f"{_what(p, step)}: done; {shape}: {text[:500]}")
    return "\n".join(out)


def build_parser() -> Parser:
    import argparse

    kinds = "\n".join(f"  {k:<9} {jobs.KINDS[k].summary}" for k in jobs.public_kinds())
    p = Parser(
        prog="python -m hpc.submit", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Submit a pipeline stage to Slurm; without Slurm, run it here.",
        epilog=f"job kinds:\n{kinds}\n\nexit status: 0 done/submitted, 1 the job failed (--follow), "
               f"2 bad input (nothing submitted)")
    p.add_argument("kind", choices=list(jobs.KINDS), metavar="KIND", help=", ".join(jobs.public_kinds()))
    add_config_options(p, help="the job's YAML (loaded with its kind's config class)")
    p.add_argument("--cluster", help="cluster profile: a name in configs/cluster/ or a YAML path "
                                     "(default: $CAMA_CLUSTER or dev)")
    p.add_argument("--partition", help="partition (default: the profile's)")
    p.add_argument("--nodes", type=int, help="nodes (GPU kinds; default: the kind's)")
    p.add_argument("--gpus-per-node", type=int, help="GPUs per node = tasks per node (default: all of a node's)")
    p.add_argument("--time", help="time limit, Slurm syntax: minutes, H:M:S, D-H:M:S (default: the kind's, "
                                  "capped by the partition's)")
    p.add_argument("--shards", type=int, help="corpus: array tasks (default: input files, at most 64); "
                                              "sources: prepare tasks per source")
    p.add_argument("--job-name", help="Slurm job name (default cama-KIND)")
    p.add_argument("--log-folder", help="submitit logs and submitted.jsonl (default: the profile's)")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script(s); submit nothing")
    p.add_argument("--follow", action="store_true", help="wait for the job(s); a failure is an error (exit 1)")
    p.add_argument("--local", action="store_true", help="run here, in this process, even if Slurm is there")
    return p


def _command(args: Any) -> int:
    request = Request(partition=args.partition, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                      time=args.time, shards=args.shards, job_name=args.job_name, log_folder=args.log_folder)
    if args.print_config:
        kind = jobs.get_kind(args.kind)
        cfg = jobs.load_job_config(kind, args.config, args.set)
        print(format_config(jobs.resolve(kind.view)(cfg) if kind.view else cfg))
        return 0
    p = plan(args.kind, args.config, args.cluster, request, dry_run=args.dry_run, sets=args.set)
    if args.dry_run:
        print(render(p))
        return 0
    try:
        if args.local or not slurm_available(p.profile):
            why = "--local" if args.local else "no sbatch/srun on PATH"
            print(f"hpc.submit: {why}: running {p.kind.name} here, in this process (one task)", file=sys.stderr,
                  flush=True)
            print(describe_results(p, run_local(p).local_results))
            return 0
        sub = submit_plan(p)
        print(describe_submission(sub), flush=True)
        if args.follow:
            print(f"following job(s) {', '.join(sub.job_ids)} …", file=sys.stderr, flush=True)
            print(describe_results(p, follow(sub)))
        return 0
    except JobFailed as exc:
        # Not the user's input: the job ran and failed; its own error follows (exit 1, not 2).
        print(f"hpc.submit: job failed: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run("hpc.submit", lambda: _command(args))


if __name__ == "__main__":
    sys.exit(main())
