"""The chain as dependent Slurm jobs: tokenizer → corpus (each stage of the corpus plan an array
job, then the mix) → pretrain (every node and GPU it asks for) → LoRA or full tuning (sft) → recover →
generate → report.

Each waits for the one before (afterok); a stage already done is skipped inside its job. Every job
gets the same resolved :class:`~hpc.chain.config.Chain` in its pickle.
"""

from __future__ import annotations

from typing import Any

from common.config import ConfigError
from hpc import jobs
from hpc.chain import stages
from hpc.chain.config import GPU_STAGES, Chain, stage_config
from hpc.plan import Context, Request, Resources, Step, chained, check_global_batch, gpu_resources, resolve_time

LOCAL = {"distributed": False}  # run here: there is no Slurm step to derive a torch.distributed world from


def plan_chain(ctx: Context) -> tuple[Chain, tuple[Step, ...]]:
    chain: Chain = ctx.config
    req = ctx.request
    if req.nodes or req.gpus_per_node or req.shards:
        raise ConfigError("--nodes/--gpus-per-node/--shards: the pipeline's stages have their own shapes; "
                          "set them in the pipeline YAML under `slurm:` (e.g. slurm: {pretrain: {nodes: 2}})")
    one_cpu = ctx.cpu(1)
    corpus_cpu = ctx.cpu(stage_config(chain, "corpus").workers)
    steps: list[Step] = []

    def add(stage: str, res: Resources, fn: Any = stages.run_stage, calls: tuple[tuple, ...] | None = None) -> None:
        local = LOCAL if fn is stages.run_stage else {}
        chained(steps, stage, f"{ctx.name}-{stage}", fn, calls or ((stage, chain),), res, local_kwargs=local)

    def shaped(stage: str, job_kind: str) -> Resources:
        shape = chain.shape(stage)
        kind = jobs.KINDS[job_kind]
        part_name = req.partition or ctx.profile.default_partition
        part = ctx.profile.partition(part_name)
        minutes = resolve_time(shape.get("time") or req.time, kind, part_name, part)
        return gpu_resources(kind, Request(nodes=shape.get("nodes"), gpus_per_node=shape.get("gpus_per_node")),
                             part_name, part, minutes)

    add("tokenizer", one_cpu)
    from corpus.plan import make_plan

    # The corpus plan's stages as array jobs (the mix is the chain's own corpus stage, after them).
    for stage in make_plan(stages.corpus_plan_config(chain)):
        if stage.name != "mix":
            add(f"corpus-{stage.name}", ctx.cpu(stage.cpus), stages.corpus_task,
                tuple((chain, stage.name, t) for t in range(stage.tasks)))
    add("corpus", corpus_cpu)
    for stage in (s for s in chain.stages if s in GPU_STAGES):  # pretrain, then lora or sft
        res = shaped(stage, GPU_STAGES[stage])
        check_global_batch(stage_config(chain, stage), res, f"{stage} stage")
        add(stage, res)
    add("recover", shaped("recover", "recover"))
    add("generate", shaped("generate", "recover"))
    add("report", one_cpu)
    return chain, tuple(steps)
