"""The corpus kinds on Slurm: how a build is laid out as array steps, and what each array task runs.

- ``corpus`` (corpus.build): one array task per shard (``build`` with shard=i), then a merge job that
  starts only if every task succeeded (``--dependency=afterok``, and ``--kill-on-invalid-dep=yes`` so a
  failed shard cancels it instead of leaving it pending forever). The merged output is
  byte-identical to an unsharded build.
- ``sources`` (corpus.pipeline, a raw-source config): prepare tasks per (source, shard), band-range
  tasks, a global dedup task where configured, a task per source and the mix job, each step after the
  previous one (:func:`plan_sources`).

The task functions are pickled by reference and call only corpus's public entry points.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.config import ConfigError
from hpc.plan import MAX_ARRAY_SIZE, Context, Step, chained, check_array

MAX_DEFAULT_SHARDS = 64
MAX_ARRAY_SIZE_HINT = "lower shards_per_source / band_tasks"


# ---------------------------------------------------------------------------------------------
# corpus: shards, then the merge


def plan_build(ctx: Context) -> tuple[Any, tuple[Step, ...]]:
    from corpus.reader import InputError, expand_inputs

    cfg, where = ctx.config, ctx.config_path
    if cfg.shard is not None:
        raise ConfigError(f"{where}: key 'shard': hpc.submit sets it for each array task; "
                          f"remove it from the job config")
    # Absolute paths: the tasks must find the same files whatever directory a profile's setup
    # lines leave them in.
    cfg = replace(cfg, input=[os.path.abspath(p) for p in cfg.input], output=os.path.abspath(cfg.output),
                  tokenizer=os.path.abspath(cfg.tokenizer), progress=False)
    try:
        files = expand_inputs(cfg.input)
    except InputError as exc:
        raise ConfigError(f"{where}: key 'input': {exc}") from None
    if not Path(cfg.tokenizer).is_file():
        raise ConfigError(f"{where}: key 'tokenizer': file not found: {cfg.tokenizer}")
    shards = ctx.request.shards or min(len(files), MAX_DEFAULT_SHARDS)
    if shards > MAX_ARRAY_SIZE:
        raise ConfigError(f"--shards {shards}: at most {MAX_ARRAY_SIZE} array tasks")
    calls = tuple((cfg, i, shards) for i in range(shards))
    res = ctx.cpu(cfg.workers)
    merge_res = replace(res, cpus_per_task=1, mem=f"{max(1, ctx.part.mem_mb // ctx.part.cpus_per_node)}M")
    steps: list[Step] = []
    chained(steps, "shards", ctx.name, corpus_shard, calls, res)
    chained(steps, "merge", f"{ctx.name}-merge", corpus_merge, ((cfg, shards),), merge_res,
            describe=_describe_merge)
    return cfg, tuple(steps)


def corpus_shard(cfg: Any, shard: int, num_shards: int) -> dict[str, Any]:
    """One array task of a sharded corpus build; its report is the shard's completion marker."""
    from corpus.build import build

    report = build(dataclasses.replace(cfg, shard=shard, num_shards=num_shards, progress=False))
    return {"shard": shard, "output": report["output"]["prefix"], "counts": report["counts"],
            "skipped_rebuild": bool(report.get("skipped_rebuild"))}


def corpus_merge(cfg: Any, num_shards: int) -> dict[str, Any]:
    """The merge job: every shard complete → cfg.output, byte-identical to an unsharded build."""
    from corpus.build import merge_shards

    report = merge_shards(cfg, num_shards)
    return {"output": report["output"]["prefix"], "counts": report["counts"], "shards": num_shards}


def _describe_merge(last: dict[str, Any]) -> str:
    c = last["counts"]
    return (f"{last['output']}: {c['documents']} documents, {c['sequences']} sequences, "
            f"{c['tokens']} tokens from {last['shards']} shards")


# ---------------------------------------------------------------------------------------------
# sources: prepare → bands → dedup → a task per source → mix


def plan_sources(ctx: Context) -> tuple[Any, tuple[Step, ...]]:
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
    from corpus.sources import expand

    cfg, where = ctx.config, ctx.config_path
    if ctx.request.shards is not None:
        # --shards N: N prepare tasks for every source (the config's per-source `shards` included).
        cfg = replace(cfg, shards_per_source=ctx.request.shards,
                      sources=[replace(s, shards=None) for s in cfg.sources])
    # Absolute paths, as for a plain corpus build: the tasks may start in another directory.
    sources = [replace(s, paths=[os.path.abspath(p) for p in s.paths]) for s in cfg.sources]
    cfg = replace(cfg, sources=sources, output_dir=os.path.abspath(cfg.output_dir),
                  tokenizer=os.path.abspath(cfg.tokenizer), progress=False,
                  filters=os.path.abspath(cfg.filters) if cfg.filters else None)
    if not Path(cfg.tokenizer).is_file():
        raise ConfigError(f"{where}: key 'tokenizer': file not found: {cfg.tokenizer}")
    for i, spec in enumerate(cfg.sources):
        try:
            expand(spec.layout, spec.paths)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where}: sources[{i}] ({spec.name}): {exc}") from None
    dedup_cfg = DedupConfig.from_dict(cfg.dedup, "key 'dedup'")
    groups = dedup_groups(cfg, dedup_cfg)
    res, one_cpu = ctx.cpu(cfg.workers), ctx.cpu(1)
    prepare = tuple((cfg, i, k) for i, spec in enumerate(cfg.sources) for k in range(num_shards(cfg, spec)))
    bands = tuple((cfg, g, j) for g in range(len(groups)) for j in range(cfg.band_tasks))
    per_source = tuple((cfg, i) for i in range(len(cfg.sources)))
    steps: list[Step] = []

    def add(label: str, suffix: str, fn: Any, calls: tuple[tuple, ...], r: Any, **extra: Any) -> None:
        check_array(where, label, calls, MAX_ARRAY_SIZE_HINT)
        chained(steps, label, f"{ctx.name}{suffix}", fn, calls, r, **extra)

    if len(prepare) > len(cfg.sources) or cfg.band_tasks > 1 or dedup_cfg.scope == "global":
        add("prepare", "-prepare", pipeline_prepare, prepare, one_cpu)
    if cfg.band_tasks > 1:
        add("bands", "-bands", pipeline_bands, bands, one_cpu)
    if dedup_cfg.scope == "global":
        add("dedup", "-dedup", pipeline_dedup, ((cfg, 0),), res)
    add("sources", "", pipeline_source, per_source, res)
    add("mix", "-mix", pipeline_finish, ((cfg,),), res, describe=_describe_mix)
    return cfg, tuple(steps)


def _pipeline_parts(cfg: Any) -> tuple[Any, Any]:
    from corpus.dedup import DedupConfig
    from corpus.quality import load_quality_config

    return load_quality_config(cfg.filters), DedupConfig.from_dict(cfg.dedup)


def pipeline_prepare(cfg: Any, index: int, shard: int) -> dict[str, Any]:
    """One array task of a raw-source build's first step: read, clean, filter and sign one shard of a source."""
    from corpus.pipeline import prepare_shard

    counts = prepare_shard(cfg, cfg.sources[index], shard, *_pipeline_parts(cfg))
    return {"source": cfg.sources[index].name, "shard": shard, "read": counts["read"],
            "passed_filters": counts["passed_filters"]}


def pipeline_bands(cfg: Any, group: int, task: int) -> dict[str, Any]:
    """One band-range task of a dedup group: its LSH candidate pairs, saved for the clustering step."""
    from corpus.pipeline import band_task

    pairs = band_task(cfg, group, task, *_pipeline_parts(cfg))
    return {"group": group, "task": task, "pairs": int(len(pairs))}


def pipeline_dedup(cfg: Any, group: int) -> dict[str, Any]:
    """The clustering step of a dedup group (a global dedup: every source at once)."""
    from corpus.pipeline import dedup_group

    counts = dedup_group(cfg, group, *_pipeline_parts(cfg))
    return {"group": group, "kept": {c["source"]: c["kept"] for c in counts}}


def pipeline_source(cfg: Any, index: int) -> dict[str, Any]:
    """One array task of a raw-source build: what is left of source ``index`` (its dedup, unless a
    global one ran before; read/clean/filter too when no prepare step ran), then pack/tokenize."""
    from corpus.pipeline import build_source, prepare_source

    spec = cfg.sources[index]
    prepared = prepare_source(cfg, spec, *_pipeline_parts(cfg))
    built = build_source(cfg, spec) if prepared["kept"] else None
    return {"source": spec.name, "kept": prepared["kept"], "sequences": built["counts"]["sequences"] if built else 0}


def pipeline_finish(cfg: Any) -> dict[str, Any]:
    """The dependent job: every source is complete (its markers match), so this only mixes and reports."""
    from corpus.pipeline import run_pipeline
    from corpus.report import write_report

    report = run_pipeline(cfg)
    page = write_report(cfg.output_dir)
    return {"report": str(page), "samples": report["mix"]["samples"] if report["mix"] else 0,
            "sources": [s["name"] for s in report["sources"]]}


def _describe_mix(last: dict[str, Any]) -> str:
    return f"{last['samples']} samples from {', '.join(last['sources'])}; report {last['report']}"
