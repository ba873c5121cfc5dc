"""Rendering: the sbatch script of each step of a plan — the text `--dry-run` prints is the text
`hpc.submit` hands to `sbatch`, byte for byte (only the dependency's job id is filled in).

The format is ours:

    #!/bin/bash
    #SBATCH --KEY=VALUE           the step's resources (hpc.plan.Resources), its name, its logs,
                                  --signal=USR2@<profile's lead>, --array, --dependency=afterok:ID
    <profile setup lines>         module load …, source venv …
    export …                      the profile's env, the requeue limit, PYTHONPATH = this checkout
    export SUBMITIT_EXECUTOR=slurm
    srun --unbuffered --output … --error … PYTHON -u -m submitit.core._submit FOLDER

Each task runs submitit's worker, which unpickles the step's function call from FOLDER (written at
submission, hpc.submit) and pickles its result or its traceback back there. The log and pickle names
are submitit's (``%j_%t_log.out``, ``%A_%a`` for an array task), so submitit's Job objects and
hpc.status find them.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import hpc
from hpc.plan import Plan, Step
from hpc.profiles import Profile

REPO_ROOT = Path(hpc.__file__).resolve().parent.parent
ARRAY_PARALLELISM = 256        # array tasks running at once, at most


def python_command(profile: Profile) -> str:
    return profile.python or shlex.quote(sys.executable)


def setup_lines(profile: Profile) -> list[str]:
    """The profile's setup, its env, and PYTHONPATH = this checkout: the job unpickles hpc.tasks.run
    (and the entry points) by reference, so it must import the same code that submitted it."""
    lines = list(profile.setup)
    lines += [f"export {k}={shlex.quote(v)}" for k, v in profile.env.items()]
    # How often a preempted training job may requeue itself (hpc.preempt.requeue_stopped).
    lines.append(f"export CAMA_MAX_REQUEUES={int(profile.requeue_limit)}")
    # The profile's retry policy for the Slurm commands a job runs itself (scontrol requeue; hpc.slurmcmd).
    lines.append(f"export CAMA_SLURM_TRIES={int(profile.slurm_tries)} CAMA_SLURM_BACKOFF_S={float(profile.slurm_backoff_s):g}")
    lines.append(f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}")
    return lines


def log_pattern(folder: Path, step: Step, stream: str, task: str = "%t") -> str:
    """submitit's log names: FOLDER/%j_%t_log.out, FOLDER/%A_%a_%t_log.out for an array task."""
    job = "%A_%a" if step.array else "%j"
    return str(folder / f"{job}_{task}_log.{stream}")


def sbatch_options(step: Step, profile: Profile, folder: Path, after_job: str | None = None) -> list[tuple[str, str]]:
    """The #SBATCH options of one step, in the order they are written."""
    r = step.resources
    opts = [("job-name", step.name), ("partition", r.partition), ("time", str(r.time_min)),
            ("nodes", str(r.nodes)), ("ntasks-per-node", str(r.tasks_per_node)),
            ("cpus-per-task", str(r.cpus_per_task)), ("mem", r.mem)]
    if r.gpus_per_node:
        opts.append(("gpus-per-node", f"{r.gpu_type}:{r.gpus_per_node}" if r.gpu_type else str(r.gpus_per_node)))
    if r.account:
        opts.append(("account", r.account))
    if r.qos:
        opts.append(("qos", r.qos))
    # Slurm warns the tasks this long before the time limit (a training job saves and requeues).
    opts.append(("signal", f"USR2@{int(profile.signal_lead_s)}"))
    if step.array:
        opts.append(("array", f"0-{step.array - 1}%{min(step.array, ARRAY_PARALLELISM)}"))
    opts += [("output", log_pattern(folder, step, "out", "0")), ("error", log_pattern(folder, step, "err", "0")),
             ("open-mode", "append")]
    if after_job is not None:
        opts.append(("dependency", f"afterok:{after_job}"))
        # Without it a dependent job whose dependency failed stays PENDING (DependencyNeverSatisfied).
        opts.append(("kill-on-invalid-dep", "yes"))
    return opts


def script(step: Step, profile: Profile, folder: Path, after_job: str | None = None) -> str:
    """The sbatch script of one step (``after_job``: the job id it waits for)."""
    lines = ["#!/bin/bash", ""]
    lines += [f"#SBATCH --{key}={shlex.quote(value)}" for key, value in sbatch_options(step, profile, folder, after_job)]
    lines += ["", "# setup", *setup_lines(profile), "", "# command", "export SUBMITIT_EXECUTOR=slurm"]
    srun = ["srun", "--unbuffered", "--output", log_pattern(folder, step, "out"),
            "--error", log_pattern(folder, step, "err")]
    lines.append(f"{shlex.join(srun)} {python_command(profile)} -u -m submitit.core._submit {shlex.quote(str(folder))}")
    return "\n".join(lines) + "\n"


def render(p: Plan) -> str:
    """Every step's sbatch script, each after a comment saying what it is (nothing is written or submitted)."""
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
        out.append(script(step, p.profile, p.folder, after))
    return "\n".join(out)
