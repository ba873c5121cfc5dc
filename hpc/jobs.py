"""Job kinds → entry points: what `python -m hpc.submit KIND` runs, with which config, in what shape.

One entry per kind. A kind names its entry point (`module:function`, called with the loaded config),
the config class its YAML loads into (so a bad job config fails before submission, naming the key),
and its resource shape:

- ``gpus=True``: nodes × gpus_per_node Slurm tasks, one task per GPU; every task calls
  ``hpc.dist.setup()`` (Slurm env → torch.distributed env) before the entry point. Defaults: all the
  partition's nodes (``nodes=None``) or a fixed count, and all of a node's GPUs.
- ``gpus=False``: one CPU task (``cpus`` CPUs); the ``sharded`` kind (corpus) becomes an array of
  such tasks plus a merge job (hpc.submit plans it).

A kind whose entry point is not importable here (a login node with only the corpus extra installed,
no torch) fails before anything reaches Slurm, saying what to install; ``--dry-run`` still shows
the script.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from common.config import ConfigError, load_config, load_yaml


class EntryPointMissing(RuntimeError):
    """The kind's entry point is not installed (yet): nothing can run, nothing is submitted."""


@dataclass(frozen=True)
class JobKind:
    name: str
    summary: str
    entry: str                 # "module:function", called with the loaded config
    config: str | None         # "module:Class" the job YAML loads into (None: a plain mapping)
    gpus: bool                 # one task per GPU, hpc.dist.setup() in each; else one CPU task
    nodes: int | None = 1      # default node count (None: every node of the partition)
    gpus_per_node: int | None = None  # default GPUs per node (None: all of a node's)
    time: str | None = None    # default --time (Slurm syntax); None: the partition's limit
    sharded: bool = False      # an array, one task per shard, then a merge job (corpus)
    hidden: bool = False       # not listed in --help (the smoke-test kind)
    needs: str = ""            # what to install when the entry point is missing, for the error message

    @property
    def module(self) -> str:
        return self.entry.partition(":")[0]


KINDS: dict[str, JobKind] = {k.name: k for k in (
    JobKind("corpus", "sharded corpus build: an array task per shard, then a merge job (afterok)",
            entry="corpus.build:build", config="corpus.build:BuildConfig", gpus=False, time="4:00:00",
            sharded=True),
    JobKind("pretrain", "continued pretraining, DeepSpeed ZeRO-3 across every node (train.pretrain)",
            entry="train.pretrain:main", config="train.pretrain:PretrainConfig", gpus=True, nodes=None,
            needs="the train extra (make install-train)"),
    JobKind("lora", "LoRA instruction tuning on one node's GPUs (train.lora)",
            entry="train.lora:main", config="train.lora:LoraConfig", gpus=True, nodes=1,
            needs="the train extra (make install-train)"),
    JobKind("recover", "restore weights from a published diff on one GPU (recover apply)",
            entry="recover.apply:main", config="recover.apply:ApplyConfig", gpus=True, nodes=1,
            gpus_per_node=1, time="4:00:00", needs="the train extra (make install-train)"),
    JobKind("pipeline", "the main job end to end: tokenizer, corpus, pretrain, LoRA, diff + restore, generate, "
            "report; each stage a dependent job (hpc.chain)",
            entry="hpc.chain:run_local", config="hpc.chain:ChainConfig", gpus=False, time="4:00:00"),
    JobKind("probe", "smoke test: report where the job ran (fail: true makes it raise)",
            entry="hpc.jobs:probe", config="hpc.jobs:ProbeConfig", gpus=False, time="0:10:00",
            hidden=True),
    # The same on the GPU shape (one task per GPU, hpc.dist.setup() first): every rank reports the
    # torch.distributed variables it got, without needing torch.
    JobKind("probe-dist", "smoke test of the GPU shape: each rank reports RANK, WORLD_SIZE, MASTER_ADDR…",
            entry="hpc.jobs:probe", config="hpc.jobs:ProbeConfig", gpus=True, nodes=1, time="0:10:00",
            hidden=True),
)}


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown job kind {name!r} (kinds: {', '.join(public_kinds())})") from None


def public_kinds() -> list[str]:
    return [k for k, v in KINDS.items() if not v.hidden]


def _resolve(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def entry_installed(kind: JobKind) -> bool:
    try:
        return importlib.util.find_spec(kind.module) is not None
    except ModuleNotFoundError:  # the parent package is missing too
        return False


def require_entry(kind: JobKind) -> None:
    if not entry_installed(kind):
        hint = f" (it needs {kind.needs})" if kind.needs else ""
        raise EntryPointMissing(
            f"job kind {kind.name!r}: its entry point {kind.entry} is not installed{hint}; nothing was "
            f"submitted. `--dry-run` still shows the sbatch script.")


def load_job_config(kind: JobKind, path: str | os.PathLike) -> Any:
    """The job's YAML as its entry point's config object: unknown keys and bad values fail here.

    A kind whose entry point is not installed yet gets the plain mapping (the file must still exist
    and be a YAML mapping), so that --dry-run works before the entry point lands.
    """
    if not Path(path).is_file():
        raise ConfigError(f"job config file not found: {path}")
    if kind.config is None or not entry_installed(kind):
        return load_yaml(path)
    if kind.name == "pipeline":
        from hpc.chain import load_chain_config

        return load_chain_config(path)
    if kind.name == "corpus" and "sources" in load_yaml(path):
        # A raw-source build (corpus.pipeline): one array task per source, then the mix.
        from corpus.pipeline import load_pipeline_config

        return load_pipeline_config(path)
    return load_config(_resolve(kind.config), path)


# ---------------------------------------------------------------------------------------------
# What runs inside a job. These are pickled by reference (module + name), so the job must import
# this same checkout: hpc.submit exports PYTHONPATH for it.


def run(kind_name: str, cfg: Any, distributed: bool = True) -> Any:
    """One task of a job: the torch.distributed env first (GPU kinds under Slurm), then the entry point.

    A training entry point that got the preemption / time-limit signal saves a checkpoint on every
    rank and returns ``status: "preempted"``; under Slurm the job is then requeued to resume from it
    (:func:`hpc.preempt.requeue_stopped`), and no result is recorded for this run."""
    kind = KINDS[kind_name]
    if kind.gpus and distributed:
        from hpc import dist  # inside the job only: the login node needs no torch.distributed env

        dist.setup()
    entry: Callable[[Any], Any] = _resolve(kind.entry)
    result = entry(cfg)
    if isinstance(result, dict) and result.get("status") == "preempted":
        from hpc.preempt import requeue_stopped

        requeue_stopped(result)
    return result


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


@dataclass(frozen=True)
class ProbeConfig:
    message: str = "hello from hpc.jobs.probe"
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
