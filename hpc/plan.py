"""Planning: a job request checked against its config and the cluster profile, laid out as steps.

Everything that can be wrong is found here, before anything is rendered or reaches `sbatch`: the
job's config is loaded with its kind's config class (unknown keys and bad values fail, naming the
key), and nodes, GPUs, time and partition are checked against the cluster profile (hpc.profiles).

A plan is a list of steps, each one Slurm job or job array with its resources; a step may wait for
the success of an earlier one (afterok). The kind's planner (named in hpc.jobs) lays its job out:
:func:`single_job` for most kinds, hpc.corpus_jobs for the corpus builds, hpc.chain.plan for the
pipeline. Planning writes nothing.
"""

from __future__ import annotations

import os
import secrets
import time as _time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import ConfigError
from hpc import jobs, tasks
from hpc.jobs import JobKind
from hpc.profiles import Partition, Profile, format_minutes, load_profile, parse_time_min

MAX_ARRAY_SIZE = 1000          # Slurm's default MaxArraySize is 1001 (indices 0–1000)
UNLIMITED_DEFAULT_MIN = 24 * 60  # a partition without a time limit still needs a --time


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
    label: str                       # "job", or what the step does ("shards", "merge", a stage …)
    name: str                        # Slurm job name
    fn: Callable[..., Any]           # pickled by reference: runs in every task
    calls: tuple[tuple, ...]         # arguments, one tuple per array task (one: a plain job)
    resources: Resources
    after: int | None = None         # index of the step whose success this one waits for
    local_kwargs: dict[str, Any] = field(default_factory=dict)  # extra arguments for a run here
    describe: Callable[[Any], str] | None = None  # one line for the step's last result

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
    folder: Path                     # this submission's folder (pickles, scripts, logs, config.json)
    steps: tuple[Step, ...]
    checked: bool = True             # False: the entry point is missing, the config is a plain mapping


@dataclass(frozen=True)
class Context:
    """What a planner gets: the request, resolved against the profile, and the loaded config."""

    kind: JobKind
    config: Any
    config_path: str
    request: Request
    name: str                        # the Slurm job name (steps add a suffix)
    profile: Profile
    part_name: str
    part: Partition
    minutes: int
    checked: bool

    def cpu(self, cpus: int) -> Resources:
        return cpu_resources(self.kind, self.request, cpus, self.part_name, self.part, self.minutes)


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
    """nodes × gpus_per_node tasks, one per GPU; each task gets its GPU's share of the node's CPUs and
    memory (a 1-GPU job leaves the other GPUs' CPUs to the jobs that use those GPUs)."""
    if part.gpus_per_node < 1:
        raise ConfigError(f"job kind {kind.name!r} needs GPUs, and partition {part_name!r} has none "
                          f"(choose another with --partition)")
    nodes = req.nodes or kind.nodes or part.default_nodes or part.nodes
    gpus = req.gpus_per_node or kind.gpus_per_node or part.default_gpus_per_node or part.gpus_per_node
    if nodes > part.nodes:
        raise ConfigError(f"--nodes {nodes}: partition {part_name!r} has {part.nodes} node(s)")
    if gpus > part.gpus_per_node:
        raise ConfigError(f"--gpus-per-node {gpus}: partition {part_name!r} has {part.gpus_per_node} "
                          f"GPU(s) per node")
    cpus = max(1, part.cpus_per_node // part.gpus_per_node)
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


def check_array(where: str, label: str, calls: tuple, hint: str) -> None:
    if len(calls) > MAX_ARRAY_SIZE:
        raise ConfigError(f"{where}: the {label} step would be {len(calls)} array tasks; at most "
                          f"{MAX_ARRAY_SIZE} ({hint})")


def chained(steps: list[Step], label: str, name: str, fn: Callable[..., Any], calls: tuple[tuple, ...],
            res: Resources, **extra: Any) -> None:
    """Append a step that waits for the one before it (if any)."""
    steps.append(Step(label, name, fn, calls, res, after=len(steps) - 1 if steps else None, **extra))


def single_job(ctx: Context) -> tuple[Any, tuple[Step, ...]]:
    """One Slurm job: one task per GPU (gpus kinds, after hpc.dist.setup()), or one CPU task."""
    kind, cfg = ctx.kind, ctx.config
    if kind.gpus:
        res = gpu_resources(kind, ctx.request, ctx.part_name, ctx.part, ctx.minutes)
        check_global_batch(cfg, res, ctx.config_path)
    else:
        res = ctx.cpu(getattr(cfg, "workers", 1))
    return cfg, (Step("job", ctx.name, tasks.run, ((kind.name, cfg),), res,
                      local_kwargs={"distributed": False}),)


def plan(kind_name: str, config_path: str | os.PathLike, profile: Profile | str | None = None,
         request: Request = Request(), *, dry_run: bool = False, sets: Iterable[str] = ()) -> Plan:
    """Check everything and lay the job out as steps; raises ConfigError / EntryPointMissing."""
    kind = jobs.get_kind(kind_name)
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    config_path = os.path.abspath(config_path)
    cfg = jobs.load_job_config(kind, config_path, sets)
    checked = jobs.entry_installed(kind)
    if not dry_run:
        jobs.require_entry(kind)
    for flag, value in (("--nodes", request.nodes), ("--gpus-per-node", request.gpus_per_node),
                        ("--shards", request.shards)):
        _positive(flag, value)
    if request.shards is not None and not kind.shards:
        raise ConfigError(f"--shards: job kind {kind.name!r} is not sharded (only "
                          f"{', '.join(k for k, v in jobs.KINDS.items() if v.shards)})")
    part_name = request.partition or (None if kind.gpus else prof.cpu_partition) or prof.default_partition
    part = prof.partition(part_name)
    minutes = resolve_time(request.time, kind, part_name, part)
    name = request.job_name or f"cama-{kind.name}"
    if not name.strip():
        raise ConfigError("--job-name: must not be empty")
    log_folder = Path(request.log_folder or prof.log_folder).absolute()
    # One folder per submission, so a corpus array and its merge job keep their logs together.
    folder = log_folder / f"{_time.strftime('%Y%m%d-%H%M%S')}-{kind.name}-{secrets.token_hex(3)}"
    ctx = Context(kind, cfg, config_path, request, name, prof, part_name, part, minutes, checked)
    planner: Callable[[Context], tuple[Any, tuple[Step, ...]]] = (
        jobs.resolve(kind.planner) if checked else single_job)
    cfg, steps = planner(ctx)
    return Plan(kind, cfg, config_path, prof, log_folder, folder, steps, checked)
