"""`python -m hpc.submit KIND --config JOB.yaml`: send a stage of the pipeline to Slurm with submitit.

    python -m hpc.submit corpus   --config configs/tiny/corpus.yaml [--shards N] [--follow]
    python -m hpc.submit pretrain --config JOB.yaml --cluster cama_3x8v100 --dry-run
    python -m hpc.submit lora     --config JOB.yaml [--partition P] [--nodes N] [--gpus-per-node G] [--time T]
    python -m hpc.submit pipeline --config configs/tiny/pipeline.yaml [--local] [--follow]

Every request is checked before anything reaches `sbatch`: the job's config is loaded with its entry
point's config class (unknown keys and bad values fail, naming the key), and nodes, GPUs, time and
partition are checked against the cluster profile (configs/cluster/, hpc.profiles). A job is planned
as steps (`plan`), each one Slurm job or job array with its resources; the plan is then printed as
sbatch scripts (`--dry-run`, rendered by submitit itself), submitted (`submit`), or, where there is
no Slurm (no `sbatch` on PATH, or `--local`), run here in this process.

- `corpus`: one array task per shard (`corpus.build.build` with shard=i), then a merge job that
  starts only if every task succeeded (`--dependency=afterok`, and `--kill-on-invalid-dep=yes` so a
  failed shard cancels it instead of leaving it pending forever). The merged output is
  byte-identical to an unsharded build.
  A raw-source config (a `sources:` list, corpus.pipeline) becomes prepare tasks per (source,
  shard), band-range tasks, a global dedup task where configured, a task per source and the mix job,
  each step after the previous one (see `_pipeline_steps`).
- `pretrain`, `lora`, `recover`: nodes × GPUs-per-node tasks, one per GPU; each task calls
  `hpc.dist.setup()` and then the entry point (hpc.jobs). Where an entry point is not installed
  (no train extra), submitting its kind fails before submission; `--dry-run` still works.
- `pipeline`: the main job (hpc.chain), each stage a dependent job (see `_chain_steps`).

Each submitted Slurm job is appended to LOG_FOLDER/submitted.jsonl, which `python -m hpc.status`
reads to find its logs. `--follow` waits and turns a failed job into an error carrying the job's own
exception and traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time as _time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import hpc
from common.config import ConfigError
from hpc import jobs
from hpc.jobs import EntryPointMissing, JobKind
from hpc.profiles import Partition, Profile, format_minutes, load_profile, parse_time_min
from hpc.status import Record, now_iso, record_submission, registry_path

MAX_DEFAULT_SHARDS = 64
MAX_ARRAY_SIZE = 1000          # Slurm's default MaxArraySize is 1001 (indices 0–1000)
UNLIMITED_DEFAULT_MIN = 24 * 60  # a partition without a time limit still needs a --time for submitit
REPO_ROOT = Path(hpc.__file__).resolve().parent.parent


class SubmitError(RuntimeError):
    """sbatch refused a job, or Slurm is not reachable; what was already submitted is cancelled."""


class JobFailed(RuntimeError):
    """A submitted (or local) job ended without success; the message carries the job's own error."""


@dataclass(frozen=True)
class Request:
    """What the user asked for on top of the profile's and the kind's defaults (None = default)."""

    partition: str | None = None
    nodes: int | None = None
    gpus_per_node: int | None = None
    time: str | None = None
    shards: int | None = None
    job_name: str | None = None
    log_folder: str | None = None


@dataclass(frozen=True)
class Resources:
    partition: str
    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    gpu_type: str | None
    cpus_per_task: int
    mem: str                  # per node, Slurm syntax
    time_min: int
    account: str | None = None
    qos: str | None = None

    @property
    def tasks(self) -> int:
        return self.nodes * self.tasks_per_node


@dataclass(frozen=True)
class Step:
    label: str                       # "job", or "shards" / "merge" for a sharded kind
    name: str                        # Slurm job name
    fn: Callable[..., Any]           # pickled by reference: runs in every task
    calls: tuple[tuple, ...]         # arguments, one tuple per array task (one: a plain job)
    resources: Resources
    after: int | None = None         # index of the step whose success this one waits for

    @property
    def array(self) -> int | None:
        return len(self.calls) if len(self.calls) > 1 else None


@dataclass(frozen=True)
class Plan:
    kind: JobKind
    config: Any
    config_path: str
    profile: Profile
    log_folder: Path                 # registry; absolute
    folder: Path                     # this submission's submitit folder (pickles and logs)
    steps: tuple[Step, ...]
    checked: bool = True             # False: the entry point is missing, the config is a plain mapping


# ---------------------------------------------------------------------------------------------
# Planning and validation: everything that can be wrong is found here, before sbatch.


def _positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{flag}: must be >= 1, got {value}")


def resolve_time(req: str | None, kind: JobKind, part_name: str, part: Partition) -> int:
    limit = part.time_limit_min
    if req is not None:
        try:
            minutes = parse_time_min(req)
        except ValueError as exc:
            raise ConfigError(f"--time: {exc}") from None
        if minutes is None:
            if limit is not None:
                raise ConfigError(f"--time {req}: partition {part_name!r} allows at most {part.time_limit}")
            return UNLIMITED_DEFAULT_MIN
        if limit is not None and minutes > limit:
            raise ConfigError(f"--time {req} ({format_minutes(minutes)}) is longer than partition "
                              f"{part_name!r} allows ({part.time_limit})")
        return minutes
    default = parse_time_min(kind.time) if kind.time else None
    candidates = [m for m in (default, limit) if m is not None]
    # A kind's default never exceeds the partition's limit: it is capped, not an error.
    return min(candidates) if candidates else UNLIMITED_DEFAULT_MIN


def gpu_resources(kind: JobKind, req: Request, part_name: str, part: Partition, minutes: int) -> Resources:
    """nodes × gpus_per_node tasks, one per GPU, CPUs and memory split evenly among a node's tasks."""
    if part.gpus_per_node < 1:
        raise ConfigError(f"job kind {kind.name!r} needs GPUs, and partition {part_name!r} has none "
                          f"(choose another with --partition)")
    nodes = req.nodes or kind.nodes or part.nodes
    gpus = req.gpus_per_node or kind.gpus_per_node or part.gpus_per_node
    if nodes > part.nodes:
        raise ConfigError(f"--nodes {nodes}: partition {part_name!r} has {part.nodes} node(s)")
    if gpus > part.gpus_per_node:
        raise ConfigError(f"--gpus-per-node {gpus}: partition {part_name!r} has {part.gpus_per_node} "
                          f"GPU(s) per node")
    cpus = max(1, part.cpus_per_node // gpus)
    mem = part.mem_per_node if gpus == part.gpus_per_node else f"{max(1, part.mem_mb * gpus // part.gpus_per_node)}M"
    return Resources(part_name, nodes, gpus, gpus, part.gpu_type, cpus, mem, minutes, part.account, part.qos)


def cpu_resources(kind: JobKind, req: Request, cpus: int, part_name: str, part: Partition,
                  minutes: int) -> Resources:
    """One task with ``cpus`` CPUs and the matching share of a node's memory."""
    if req.nodes not in (None, 1):
        raise ConfigError(f"--nodes {req.nodes}: job kind {kind.name!r} runs one task per job on one node")
    if req.gpus_per_node:
        raise ConfigError(f"--gpus-per-node {req.gpus_per_node}: job kind {kind.name!r} uses no GPUs")
    if cpus > part.cpus_per_node:
        raise ConfigError(f"key 'workers': {cpus} CPUs per task, but partition {part_name!r} has "
                          f"{part.cpus_per_node} per node")
    mem = f"{max(1, part.mem_mb * cpus // part.cpus_per_node)}M"
    return Resources(part_name, 1, 1, 0, None, cpus, mem, minutes, part.account, part.qos)


def plan(kind_name: str, config_path: str | os.PathLike, profile: Profile | str | None = None,
         request: Request = Request(), *, dry_run: bool = False) -> Plan:
    """Check everything and lay the job out as steps; raises ConfigError / EntryPointMissing."""
    kind = jobs.get_kind(kind_name)
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    config_path = os.path.abspath(config_path)
    cfg = jobs.load_job_config(kind, config_path)
    checked = jobs.entry_installed(kind)
    if not dry_run:
        jobs.require_entry(kind)
    for flag, value in (("--nodes", request.nodes), ("--gpus-per-node", request.gpus_per_node),
                        ("--shards", request.shards)):
        _positive(flag, value)
    if request.shards is not None and not kind.sharded:
        raise ConfigError(f"--shards: job kind {kind.name!r} is not sharded (only "
                          f"{', '.join(k for k, v in jobs.KINDS.items() if v.sharded)})")
    part_name = request.partition or (None if kind.gpus else prof.cpu_partition) or prof.default_partition
    part = prof.partition(part_name)
    minutes = resolve_time(request.time, kind, part_name, part)
    name = request.job_name or f"cama-{kind.name}"
    if not name.strip():
        raise ConfigError("--job-name: must not be empty")
    log_folder = Path(request.log_folder or prof.log_folder).absolute()
    # One folder per submission, so a corpus array and its merge job keep their logs together.
    folder = log_folder / f"{_time.strftime('%Y%m%d-%H%M%S')}-{kind.name}-{secrets.token_hex(3)}"

    if kind.name == "pipeline":
        steps = _chain_steps(cfg, request, name, prof, part_name, part, minutes)
    elif kind.sharded and hasattr(cfg, "sources"):
        cfg, steps = _pipeline_steps(cfg, config_path, request, name, kind, part_name, part, minutes)
    elif kind.sharded:
        cfg, steps = _corpus_steps(cfg, config_path, request, name, kind, part_name, part, minutes)
    else:
        if kind.gpus:
            res = gpu_resources(kind, request, part_name, part, minutes)
            check_global_batch(cfg, res, config_path)
        else:
            res = cpu_resources(kind, request, getattr(cfg, "workers", 1), part_name, part, minutes)
        steps = (Step("job", name, jobs.run, ((kind.name, cfg),), res),)
    return Plan(kind, cfg, config_path, prof, log_folder, folder, steps, checked)


def check_global_batch(cfg: Any, res: Resources, where: str) -> None:
    """A global ``batch_size`` must split evenly into micro batches over the job's ranks; found here,
    not minutes later inside the job."""
    batch, micro = getattr(cfg, "batch_size", None), getattr(cfg, "micro_batch_size", None)
    if batch is None or micro is None:
        return
    if batch % (micro * res.tasks):
        raise ConfigError(f"{where}: batch_size {batch} is not a multiple of micro_batch_size × ranks = "
                          f"{micro} × {res.tasks} ({res.nodes} node(s) × {res.tasks_per_node} GPU(s)); "
                          f"change batch_size, micro_batch_size or the shape")


def _corpus_steps(cfg: Any, config_path: str, request: Request, name: str, kind: JobKind, part_name: str,
                  part: Partition, minutes: int) -> tuple[Any, tuple[Step, ...]]:
    from corpus.reader import InputError, expand_inputs

    if cfg.shard is not None:
        raise ConfigError(f"{config_path}: key 'shard': hpc.submit sets it for each array task; "
                          f"remove it from the job config")
    # Absolute paths: the tasks must find the same files whatever directory a profile's setup
    # lines leave them in.
    cfg = replace(cfg, input=[os.path.abspath(p) for p in cfg.input], output=os.path.abspath(cfg.output),
                  tokenizer=os.path.abspath(cfg.tokenizer), progress=False)
    try:
        files = expand_inputs(cfg.input)
    except InputError as exc:
        raise ConfigError(f"{config_path}: key 'input': {exc}") from None
    if not Path(cfg.tokenizer).is_file():
        raise ConfigError(f"{config_path}: key 'tokenizer': file not found: {cfg.tokenizer}")
    shards = request.shards or min(len(files), MAX_DEFAULT_SHARDS)
    if shards > MAX_ARRAY_SIZE:
        raise ConfigError(f"--shards {shards}: at most {MAX_ARRAY_SIZE} array tasks")
    res = cpu_resources(kind, request, cfg.workers, part_name, part, minutes)
    merge_res = replace(res, cpus_per_task=1, mem=f"{max(1, part.mem_mb // part.cpus_per_node)}M")
    return cfg, (
        Step("shards", name, jobs.corpus_shard, tuple((cfg, i, shards) for i in range(shards)), res),
        Step("merge", f"{name}-merge", jobs.corpus_merge, ((cfg, shards),), merge_res, after=0),
    )


def _pipeline_steps(cfg: Any, config_path: str, request: Request, name: str, kind: JobKind, part_name: str,
                    part: Partition, minutes: int) -> tuple[Any, tuple[Step, ...]]:
    """A raw-source build (corpus.pipeline), each step starting after the previous one succeeded:

    1. ``prepare`` — an array task per (source, shard): read → clean → filter → signatures;
    2. ``bands`` — an array task per (dedup group, band range), when ``band_tasks`` > 1;
    3. ``dedup`` — one task clustering every source together, when ``dedup.scope`` is global;
    4. ``sources`` — an array task per source: its dedup (scope source), then pack/tokenize;
    5. ``mix`` — the mix and the report.

    With one shard per source, one band task and scope source, steps 1–3 are left out: each source
    task prepares its own source, as it would in one process.
    """
    from corpus.dedup import DedupConfig
    from corpus.pipeline import dedup_groups, num_shards

    if request.shards is not None:
        # --shards N: N prepare tasks for every source (the config's per-source `shards` included).
        cfg = replace(cfg, shards_per_source=request.shards,
                      sources=[replace(s, shards=None) for s in cfg.sources])
    # Absolute paths, as for a plain corpus build: the tasks may start in another directory.
    sources = [replace(s, paths=[os.path.abspath(p) for p in s.paths]) for s in cfg.sources]
    cfg = replace(cfg, sources=sources, output_dir=os.path.abspath(cfg.output_dir),
                  tokenizer=os.path.abspath(cfg.tokenizer), progress=False,
                  filters=os.path.abspath(cfg.filters) if cfg.filters else None)
    if not Path(cfg.tokenizer).is_file():
        raise ConfigError(f"{config_path}: key 'tokenizer': file not found: {cfg.tokenizer}")
    from corpus.sources import expand

    for i, spec in enumerate(cfg.sources):
        try:
            expand(spec.layout, spec.paths)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{config_path}: sources[{i}] ({spec.name}): {exc}") from None
    dedup_cfg = DedupConfig.from_dict(cfg.dedup, "key 'dedup'")
    groups = dedup_groups(cfg, dedup_cfg)
    res = cpu_resources(kind, request, cfg.workers, part_name, part, minutes)
    one_cpu = cpu_resources(kind, request, 1, part_name, part, minutes)
    prepare = tuple((cfg, i, k) for i, spec in enumerate(cfg.sources) for k in range(num_shards(cfg, spec)))
    bands = tuple((cfg, g, j) for g in range(len(groups)) for j in range(cfg.band_tasks))
    steps: list[Step] = []

    def add(label: str, job_name: str, fn: Callable[..., Any], calls: tuple[tuple, ...], r: Resources) -> None:
        if len(calls) > MAX_ARRAY_SIZE:
            raise ConfigError(f"{config_path}: the {label} step would be {len(calls)} array tasks; at most "
                              f"{MAX_ARRAY_SIZE} (lower shards_per_source / band_tasks)")
        steps.append(Step(label, job_name, fn, calls, r, after=len(steps) - 1 if steps else None))

    if len(prepare) > len(cfg.sources) or cfg.band_tasks > 1 or dedup_cfg.scope == "global":
        add("prepare", f"{name}-prepare", jobs.pipeline_prepare, prepare, one_cpu)
    if cfg.band_tasks > 1:
        add("bands", f"{name}-bands", jobs.pipeline_bands, bands, one_cpu)
    if dedup_cfg.scope == "global":
        add("dedup", f"{name}-dedup", jobs.pipeline_dedup, ((cfg, 0),), res)
    add("sources", name, jobs.pipeline_source, tuple((cfg, i) for i in range(len(cfg.sources))), res)
    add("mix", f"{name}-mix", jobs.pipeline_finish, ((cfg,),), res)
    return cfg, tuple(steps)


def _chain_steps(cfg: Any, request: Request, name: str, prof: Profile, part_name: str, part: Partition,
                 minutes: int) -> tuple[Step, ...]:
    """The main job (hpc.chain) as dependent jobs: tokenizer → corpus (array + merge when the chain
    asks for shards) → pretrain (every node and GPU it asks for) → LoRA → recover → generate → report.
    Each waits for the one before (afterok); a stage already done is skipped inside its job."""
    from hpc import chain

    if request.nodes or request.gpus_per_node or request.shards:
        raise ConfigError("--nodes/--gpus-per-node/--shards: the pipeline's stages have their own shapes; "
                          "set them in the pipeline YAML under `slurm:` (e.g. slurm: {pretrain: {nodes: 2}})")
    kind = jobs.KINDS["pipeline"]
    one_cpu = cpu_resources(kind, request, 1, part_name, part, minutes)
    corpus_cfg = chain.stage_config(cfg, "corpus")
    corpus_cpu = cpu_resources(kind, request, corpus_cfg.workers, part_name, part, minutes)
    steps: list[Step] = []

    def add(stage: str, fn: Callable[..., Any], calls: tuple[tuple, ...], res: Resources) -> None:
        steps.append(Step(stage, f"{name}-{stage}", fn, calls, res, after=len(steps) - 1 if steps else None))

    def shaped(stage: str, job_kind: str) -> Resources:
        shape = cfg.slurm.get(stage, {})
        gpu_kind = jobs.KINDS[job_kind]
        gpu_part_name = request.partition or prof.default_partition
        gpu_part = prof.partition(gpu_part_name)
        t = resolve_time(shape.get("time") or request.time, gpu_kind, gpu_part_name, gpu_part)
        return gpu_resources(gpu_kind, Request(nodes=shape.get("nodes"), gpus_per_node=shape.get("gpus_per_node")),
                             gpu_part_name, gpu_part, t)

    add("tokenizer", chain.run_stage, (("tokenizer", cfg),), one_cpu)
    shards = chain.corpus_shards(cfg)
    if shards > 1:
        add("corpus-shards", chain.corpus_shard, tuple((cfg, k, shards) for k in range(shards)), corpus_cpu)
    add("corpus", chain.run_stage, (("corpus", cfg),), corpus_cpu)
    for stage in ("pretrain", "lora"):
        res = shaped(stage, stage)
        check_global_batch(chain.stage_config(cfg, stage), res, f"{stage} stage")
        add(stage, chain.run_stage, ((stage, cfg),), res)
    add("recover", chain.run_stage, (("recover", cfg),), shaped("recover", "recover"))
    add("generate", chain.run_stage, (("generate", cfg),), shaped("generate", "recover"))
    add("report", chain.run_stage, (("report", cfg),), one_cpu)
    return tuple(steps)


# ---------------------------------------------------------------------------------------------
# Rendering: the sbatch script submitit writes for each step


def python_command(profile: Profile) -> str:
    return profile.python or shlex.quote(sys.executable)


def setup_lines(profile: Profile) -> list[str]:
    """The profile's setup, its env, and PYTHONPATH = this checkout: the job unpickles hpc.jobs.run
    (and the entry points) by reference, so it must import the same code that submitted it."""
    lines = list(profile.setup)
    lines += [f"export {k}={shlex.quote(v)}" for k, v in profile.env.items()]
    # How often a preempted training job may requeue itself (hpc.preempt.requeue_stopped).
    lines.append(f"export CAMA_MAX_REQUEUES={int(profile.requeue_limit)}")
    lines.append(f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}")
    return lines


def slurm_parameters(step: Step, profile: Profile, after_job: str | None = None) -> dict[str, Any]:
    """submitit SlurmExecutor parameters (sbatch options) for one step."""
    r = step.resources
    params: dict[str, Any] = {
        "job_name": step.name,
        "partition": r.partition,
        "time": r.time_min,
        "nodes": r.nodes,
        "ntasks_per_node": r.tasks_per_node,
        "cpus_per_task": r.cpus_per_task,
        "mem": r.mem,
        "signal_delay_s": profile.signal_lead_s,
        "setup": setup_lines(profile),
    }
    if r.gpus_per_node:
        params["gpus_per_node"] = f"{r.gpu_type}:{r.gpus_per_node}" if r.gpu_type else r.gpus_per_node
    if r.account:
        params["account"] = r.account
    if r.qos:
        params["qos"] = r.qos
    if after_job is not None:
        params["dependency"] = f"afterok:{after_job}"
        # Without it a dependent job whose dependency failed stays PENDING (DependencyNeverSatisfied).
        params["additional_parameters"] = {"kill_on_invalid_dep": "yes"}
    return params


def render(p: Plan) -> str:
    """The sbatch scripts submitit would submit, one per step (nothing is written or submitted)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = f"{python_command(p.profile)} -u -m submitit.core._submit {shlex.quote(str(p.folder))}"
    out = []
    for i, step in enumerate(p.steps):
        r = step.resources
        after = f"<job id of step {step.after + 1}>" if step.after is not None else None
        shape = f"array of {step.array} tasks" if step.array else f"{r.nodes} node(s) × {r.tasks_per_node} task(s)"
        gpus = f", {r.gpus_per_node} GPU(s) per node (one per task)" if r.gpus_per_node else ""
        out.append(f"# ---- step {i + 1} of {len(p.steps)}: {p.kind.name} {step.label}, {shape}{gpus}, "
                   f"partition {r.partition} of cluster profile {p.profile.name}")
        if not p.checked:
            out.append(f"# note: {p.kind.entry} is not installed, so the job config was read as plain YAML "
                       f"(keys not checked) and the job cannot be submitted yet")
        if p.kind.gpus:
            out.append(f"# each task: hpc.dist.setup() (Slurm env → torch.distributed env), then {p.kind.entry}")
        params = slurm_parameters(step, p.profile, after)
        out.append(_make_sbatch_string(command=command, folder=p.folder, map_count=step.array, **params))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Submitting, following, running locally


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


def slurm_available() -> bool:
    """Whether Slurm is there to submit to: sbatch and srun on PATH (else jobs run here). Installed but
    not answering is an error, not a reason to run a cluster job on a login node."""
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        return False
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        r = None
        why = str(exc)
    if r is not None and r.returncode == 0:
        return True
    why = (r.stderr.strip().splitlines() or ["no output"])[-1] if r is not None else why
    raise SubmitError(f"Slurm is installed but its controller does not answer (sinfo: {why}). Start it or "
                      f"point SLURM_CONF at it (the dev cluster: make cluster-up; source "
                      f"/tmp/cama-devcluster/slurm.env), or run here with --local.")


def submit_plan(p: Plan) -> Submission:
    """Submit every step in order, each dependent one after the job it waits for. All or nothing:
    if sbatch refuses a later step, the steps already submitted are cancelled."""
    import submitit

    p.folder.mkdir(parents=True, exist_ok=True)
    sub = Submission(p)
    try:
        for step in p.steps:
            after = sub.steps[step.after].job_id if step.after is not None else None
            ex = submitit.SlurmExecutor(folder=p.folder, max_num_timeout=p.profile.requeue_limit,
                                        python=python_command(p.profile))
            ex.update_parameters(**slurm_parameters(step, p.profile, after))
            if step.array:
                job_list = ex.map_array(step.fn, *zip(*step.calls))
            else:
                job_list = [ex.submit(step.fn, *step.calls[0])]
            job_id = str(job_list[0].job_id).split("_")[0]
            sub.steps.append(SubmittedStep(step, job_id, job_list, job_list[0].paths.stdout,
                                           job_list[0].paths.stderr))
            record_submission(p.log_folder, Record(
                job_id=job_id, name=step.name, kind=p.kind.name, step=step.label, folder=str(p.folder),
                tasks=step.resources.tasks, array=step.array, after=after, cluster=p.profile.name,
                partition=step.resources.partition, config=p.config_path, submitted=now_iso()))
    except (submitit.core.utils.FailedJobError, subprocess.SubprocessError, OSError) as exc:
        for done in sub.steps:
            subprocess.run(["scancel", done.job_id], capture_output=True)
        cancelled = f" (cancelled the steps already submitted: {', '.join(sub.job_ids)})" if sub.steps else ""
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
    """'probe' for a one-step kind, 'corpus shards' / 'corpus merge' for the steps of a sharded one."""
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
    from hpc import chain

    sub = Submission(p, local=True)
    for step in p.steps:
        step_results = []
        for i, args in enumerate(step.calls):
            if step.fn in (jobs.run, chain.run_stage):
                args = (*args, False)  # distributed=False: there is no Slurm step to derive it from
            try:
                step_results.append(step.fn(*args))
            except Exception as exc:
                where = f" task {i}" if step.array else ""
                raise JobFailed(f"{_what(p, step)}{where} failed (local run): "
                                f"{type(exc).__name__}: {exc}") from exc
        sub.local_results.append(step_results)
    return sub


def submit(kind: str, config: str | os.PathLike, profile: Profile | str | None = None, *,
           local: bool | None = None, **request: Any) -> Submission:
    """Plan, check and submit a job (or run it here when there is no Slurm, or local=True).

    ``request`` holds Request's fields: partition, nodes, gpus_per_node, time, shards, job_name,
    log_folder. ``.wait()`` on the result waits and raises JobFailed if the job failed.
    """
    p = plan(kind, config, profile, Request(**request))
    if local or (local is None and not slurm_available()):
        return run_local(p)
    return submit_plan(p)


def dry_run(kind: str, config: str | os.PathLike, profile: Profile | str | None = None, **request: Any) -> str:
    return render(plan(kind, config, profile, Request(**request), dry_run=True))


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
        if p.kind.sharded and step.label == "mix" and isinstance(last, dict):
            out.append(f"{p.kind.name} mix: {last['samples']} samples from {', '.join(last['sources'])}; "
                       f"report {last['report']}")
        elif p.kind.sharded and step.label == "merge" and isinstance(last, dict):
            c = last["counts"]
            out.append(f"{p.kind.name} {step.label}: {last['output']}: {c['documents']} documents, "
                       f"{c['sequences']} sequences, {c['tokens']} tokens from {last['shards']} shards")
        else:
            n = len(step_results)
            shape = f"{n} array tasks, the last's" if n > 1 else "result"
            if isinstance(last, list):  # a multi-task job: one result per rank
                shape, last = f"{len(last)} ranks, rank 0's", last[0] if last else None
            text = json.dumps(last, default=str, ensure_ascii=False)
            out.append(f"{_what(p, step)}: done; {shape}: {text[:500]}")
    return "\n".join(out)


def build_parser() -> argparse.ArgumentParser:
    kinds = "\n".join(f"  {k:<9} {jobs.KINDS[k].summary}" for k in jobs.public_kinds())
    p = argparse.ArgumentParser(
        prog="python -m hpc.submit", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Submit a pipeline stage to Slurm (submitit); without Slurm, run it here.",
        epilog=f"job kinds:\n{kinds}\n\nexit status: 0 done/submitted, 1 the job failed (--follow), "
               f"2 bad input (nothing submitted)")
    p.add_argument("kind", choices=list(jobs.KINDS), metavar="KIND", help=", ".join(jobs.public_kinds()))
    p.add_argument("--config", required=True, help="the job's YAML (loaded with its entry point's config class)")
    p.add_argument("--cluster", help="cluster profile: a name in configs/cluster/ or a YAML path "
                                     "(default: $CAMA_CLUSTER or dev)")
    p.add_argument("--partition", help="partition (default: the profile's)")
    p.add_argument("--nodes", type=int, help="nodes (GPU kinds; default: the kind's)")
    p.add_argument("--gpus-per-node", type=int, help="GPUs per node = tasks per node (default: all of a node's)")
    p.add_argument("--time", help="time limit, Slurm syntax: minutes, H:M:S, D-H:M:S (default: the kind's, "
                                  "capped by the partition's)")
    p.add_argument("--shards", type=int, help="corpus: array tasks (default: input files, at most "
                                              f"{MAX_DEFAULT_SHARDS}); with a sources: config, prepare "
                                              "tasks per source")
    p.add_argument("--job-name", help="Slurm job name (default cama-KIND)")
    p.add_argument("--log-folder", help="submitit logs and submitted.jsonl (default: the profile's)")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch script(s); submit nothing")
    p.add_argument("--follow", action="store_true", help="wait for the job(s); a failure is an error (exit 1)")
    p.add_argument("--local", action="store_true", help="run here, in this process, even if Slurm is there")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    request = Request(partition=args.partition, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                      time=args.time, shards=args.shards, job_name=args.job_name, log_folder=args.log_folder)
    try:
        p = plan(args.kind, args.config, args.cluster, request, dry_run=args.dry_run)
        if args.dry_run:
            print(render(p))
            return 0
        if args.local or not slurm_available():
            why = "--local" if args.local else "no sbatch/srun on PATH"
            print(f"hpc.submit: {why}: running {p.kind.name} here, in this process (one task)", file=sys.stderr,
                  flush=True)
            sub = run_local(p)
            print(describe_results(p, sub.local_results))
            return 0
        sub = submit_plan(p)
        print(describe_submission(sub), flush=True)
        if args.follow:
            print(f"following job(s) {', '.join(sub.job_ids)} …", file=sys.stderr, flush=True)
            print(describe_results(p, follow(sub)))
        return 0
    except (ConfigError, EntryPointMissing, SubmitError) as exc:
        print(f"hpc.submit: error: {exc}", file=sys.stderr)
        return 2
    except JobFailed as exc:
        print(f"hpc.submit: job failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
