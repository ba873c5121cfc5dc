"""The corpus kind on Slurm: a corpus plan (``corpus.plan``) as chained array jobs.

hpc does not know what the stages do: each stage of the plan becomes one array job of
``stage.tasks`` tasks, each running :func:`corpus_task` (``corpus.plan.run_task``), with
``--dependency=afterok`` on the previous stage's job (and ``--kill-on-invalid-dep=yes``, so a
failed task cancels what follows instead of leaving it pending). The task functions are pickled by
reference and call only corpus's public entry points.
"""

from __future__ import annotations

from typing import Any

from common.config import ConfigError
from hpc.plan import Context, Step, chained, check_array

ARRAY_HINT = "lower shards_per_source / band_tasks"


def load(path: Any, sets: Any = ()) -> Any:
    """The kind's loader: the one corpus config (an old JSON-lines BuildConfig file is named as such)."""
    from corpus.spec import load_corpus_config

    return load_corpus_config(path, sets=sets)


def old_sources_kind(path: Any, sets: Any = ()) -> Any:
    raise ConfigError("job kind 'sources' is now 'corpus': a raw-source build and a JSON-lines build are the "
                      f"same config type; python -m hpc.submit corpus --config {path}")


def plan_corpus(ctx: Context) -> tuple[Any, tuple[Step, ...]]:
    from corpus.plan import executor_plan

    where = ctx.config_path
    try:
        # --shards N: the plan's tasks per source; the config comes back as the tasks must see it.
        cfg, stages = executor_plan(ctx.config, ctx.request.shards)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    steps: list[Step] = []
    for stage in stages:
        calls = tuple((cfg, stage.name, t) for t in range(stage.tasks))
        check_array(where, stage.name, calls, ARRAY_HINT)
        last = stage.name == "mix"
        chained(steps, stage.name, ctx.name if last else f"{ctx.name}-{stage.name}", corpus_task, calls,
                ctx.cpu(stage.cpus), **({"describe": _describe_mix} if last else {}))
    return cfg, tuple(steps)


def corpus_task(cfg: Any, stage: str, task: int) -> dict[str, Any]:
    """One array task: task ``task`` of stage ``stage`` of the plan of ``cfg``."""
    from corpus.plan import run_task

    result = run_task(cfg, stage, task)
    if stage == "mix":
        from corpus.report import write_report

        mix = result["mix"]
        return {"report": str(write_report(cfg.output_dir)), "samples": mix["samples"] if mix else 0,
                "sources": [s["name"] for s in result["sources"]]}
    return result


def _describe_mix(last: dict[str, Any]) -> str:
    return f"{last['samples']} samples from {', '.join(last['sources'])}; report {last['report']}"
