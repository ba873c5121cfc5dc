"""Job kinds: what `python -m hpc.submit KIND` runs, with which config, in what shape — as data.

One row per kind; nothing in hpc.plan, hpc.render or hpc.submit knows any kind by name. A row names
(as ``module:attribute`` strings, resolved only when needed, so this table imports nothing of the
project):

- ``entry``: the entry point, called with the loaded config (shown in ``--dry-run``, and checked to be
  installed before submission);
- ``config``: the config class the job YAML loads into (``common.config.load_config``, with ``--set``),
  or ``loader``: a function ``(path, sets) -> config`` for a config assembled from several files (the
  pipeline's);
- ``planner``: the function that lays the job out as steps (``hpc.plan.single_job`` by default: one
  Slurm job, one task per GPU or one CPU task);
- the resource shape: ``gpus=True`` means nodes × gpus_per_node Slurm tasks, one per GPU, each calling
  ``hpc.dist.setup()`` before the entry point (``nodes=None``: every node of the partition);
  ``gpus=False`` one CPU task per job (or per array task).

A kind whose entry point is not importable here (a login node with only the corpus extra installed,
no torch) fails before anything reaches Slurm, saying what to install; ``--dry-run`` still shows
the script.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import ConfigError, from_dict, load_config, load_yaml, to_dict
from common.errors import UserError


class EntryPointMissing(UserError, RuntimeError):
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
    planner: str = "hpc.plan:single_job"  # "module:function" laying the job out as steps
    loader: str | None = None  # "module:function(path, sets) -> config", instead of load_config(config)
    view: str | None = None    # "module:function(config) -> what --print-config shows" (default: the config)
    shards: bool = False       # takes --shards (array tasks over its input)
    hidden: bool = False       # not listed in --help (the smoke-test kinds)
    needs: str = ""            # what to install when the entry point is missing, for the error message

    @property
    def module(self) -> str:
        return self.entry.partition(":")[0]


_TRAIN = "the train extra (make install-train)"

KINDS: dict[str, JobKind] = {k.name: k for k in (
    JobKind("corpus", "corpus build (corpus.plan): each stage of the plan an array job after the previous "
            "one (afterok): prepare, bands, dedup, build, mix",
            entry="corpus.plan:run_plan", config="corpus.spec:CorpusConfig", gpus=False, time="4:00:00",
            planner="hpc.corpus_jobs:plan_corpus", loader="hpc.corpus_jobs:load", shards=True),
    # The old name of the raw-source build: one config type now, so one kind; a clear error.
    JobKind("sources", "renamed: use `corpus`", entry="corpus.plan:run_plan", config="corpus.spec:CorpusConfig",
            gpus=False, loader="hpc.corpus_jobs:old_sources_kind", hidden=True),
    JobKind("pretrain", "continued pretraining, DeepSpeed ZeRO-3 across every node (train.pretrain)",
            entry="train.pretrain:main", config="train.pretrain:PretrainConfig", gpus=True, nodes=None,
            needs=_TRAIN),
    JobKind("lora", "LoRA instruction tuning on one node's GPUs (train.lora)",
            entry="train.lora:main", config="train.lora:LoraConfig", gpus=True, nodes=1, time="1-00:00:00",
            needs=_TRAIN),
    JobKind("sft", "full-parameter instruction tuning, DeepSpeed ZeRO-3 across every node (train.sft)",
            entry="train.sft:main", config="train.sft:SftConfig", gpus=True, nodes=None, needs=_TRAIN),
    JobKind("recover", "restore weights from a published diff on one GPU (recover apply)",
            entry="recover.apply:main", config="recover.apply:ApplyConfig", gpus=True, nodes=1,
            gpus_per_node=1, time="4:00:00", needs=_TRAIN),
    JobKind("pipeline", "the main job end to end: tokenizer, corpus, pretrain, LoRA, diff + restore, generate, "
            "report; each stage a dependent job (hpc.chain)",
            entry="hpc.chain.stages:run_local", config="hpc.chain.config:Chain", gpus=False, time="4:00:00",
            planner="hpc.chain.plan:plan_chain", loader="hpc.chain.config:load_chain",
            view="hpc.chain.config:resolved"),
    JobKind("probe", "smoke test: report where the job ran (fail: true makes it raise)",
            entry="hpc.tasks:probe", config="hpc.tasks:ProbeConfig", gpus=False, time="0:10:00",
            hidden=True),
    # The same on the GPU shape (one task per GPU, hpc.dist.setup() first): every rank reports the
    # torch.distributed variables it got, without needing torch.
    JobKind("probe-dist", "smoke test of the GPU shape: each rank reports RANK, WORLD_SIZE, MASTER_ADDR…",
            entry="hpc.tasks:probe", config="hpc.tasks:ProbeConfig", gpus=True, nodes=1, time="0:10:00",
            hidden=True),
)}


def get_kind(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown job kind {name!r} (kinds: {', '.join(public_kinds())})") from None


def public_kinds() -> list[str]:
    return [k for k, v in KINDS.items() if not v.hidden]


def resolve(ref: str) -> Any:
    """The object a ``module:attribute`` string names."""
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


def load_job_config(kind: JobKind, path: str | os.PathLike, sets: Iterable[str] = ()) -> Any:
    """The job's YAML (plus ``--set`` overrides) as its entry point's config object: unknown keys and
    bad values fail here, naming the file and the key.

    A kind whose entry point is not installed yet gets the plain mapping (the file must still exist
    and be a YAML mapping), so that --dry-run works before the entry point lands.
    """
    if not Path(path).is_file():
        raise ConfigError(f"job config file not found: {path}")
    sets = list(sets)
    if kind.config is None or not entry_installed(kind):
        if sets:
            raise ConfigError(f"--set: job kind {kind.name!r} cannot check its config here ({kind.entry} is "
                              f"not installed); edit {path} instead")
        return load_yaml(path)
    try:
        if kind.loader is not None:
            return resolve(kind.loader)(path, sets)
        return load_config(resolve(kind.config), path, sets=sets)
    except ConfigError as exc:
        raise ConfigError(f"{exc}{_other_kinds_hint(kind, path)}") from None


def _other_kinds_hint(kind: JobKind, path: str | os.PathLike) -> str:
    """When a file is not this kind's config but is a valid config of another kind, say so (a
    raw-source corpus config given to `corpus` instead of `sources`, say)."""
    fits = []
    package = kind.module.split(".")[0]
    for other in KINDS.values():
        # Only kinds of the same package: trying a training config would import torch for a hint.
        if other is kind or other.hidden or other.config is None or other.loader is not None:
            continue
        if other.config.split(".")[0] != package or not entry_installed(other):
            continue
        try:
            load_config(resolve(other.config), path)
        except (UserError, ValueError, TypeError):
            continue
        fits.append(other.name)
    if not fits:
        return ""
    return f" ({path} is a config of job kind {' / '.join(repr(f) for f in fits)}: python -m hpc.submit {fits[0]} …)"


# ---------------------------------------------------------------------------------------------
# A config frozen at submission


@dataclass(frozen=True)
class Frozen:
    """A typed config as plain data, made at submission and carried to the job in its pickle: the job
    rebuilds exactly the config that was checked (``common.config.from_dict``), whatever has become of
    the YAML files since."""

    cls: str                   # "module:Class"
    data: dict[str, Any]
    where: str = "the config frozen at submission"

    @classmethod
    def of(cls, cfg: Any, where: str = "the config frozen at submission") -> "Frozen":
        return cls(f"{type(cfg).__module__}:{type(cfg).__qualname__}", to_dict(cfg), where)

    def load(self) -> Any:
        return from_dict(resolve(self.cls), self.data, self.where)
