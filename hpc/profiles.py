"""Cluster profiles: what a Slurm cluster offers and how a job starts there (`configs/cluster/*.yaml`).

A profile names its partitions (nodes, GPUs per node and their type, CPUs, memory, time limit,
account/qos), the shell lines every job runs before its command (module load, venv activation), the
environment it exports, how long before the end of its time Slurm warns a job (so it can checkpoint),
how often a job may be requeued, and where logs go. `hpc.submit` checks every request against it
before anything reaches `sbatch`.

    profile = load_profile("cama_3x8v100")        # configs/cluster/cama_3x8v100.yaml, or a path
    part = profile.partition("gpu")               # ConfigError naming the known ones if unknown
    part.mem_mb, part.time_limit_min

Loaded with common.config's rules: `yaml.safe_load`, unknown keys and wrong types rejected with the
file and the key path (`cama_3x8v100.yaml: partitions.gpu: unknown key 'gpu_per_node' …`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import ConfigError, from_dict, load_yaml

PROFILE_DIR = Path(__file__).resolve().parent.parent / "configs" / "cluster"
# The profile used when neither --cluster nor $CAMA_CLUSTER names one: the local dev cluster, so that
# trying the suite on a laptop never needs a flag, and a real cluster is always chosen on purpose.
DEFAULT_PROFILE = "dev"
PROFILE_ENV = "CAMA_CLUSTER"

_UNLIMITED = ("infinite", "unlimited")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_mem_mb(value: str) -> int:
    """Slurm's memory syntax (`250G`, `6000M`, `6000` = MB, `1T`) → megabytes."""
    m = _SIZE.match(str(value))
    if m is None:
        raise ValueError(f"{value!r} is not a memory size like 250G or 6000M")
    factor = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}[m.group(2).lower()]
    return max(1, math.ceil(float(m.group(1)) * factor))


def parse_time_min(value: str | int) -> int | None:
    """Slurm's time syntax → whole minutes (rounded up); None for INFINITE/UNLIMITED.

    Accepted, as in `sbatch --time`: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{value!r} is not a positive number of minutes")
        return value
    text = str(value).strip()
    if text.lower() in _UNLIMITED:
        return None
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            raise ValueError(f"{value!r} is not a Slurm time (M, H:M:S, D-H:M:S, …)")
        days = int(d)
    parts = text.split(":")
    if not all(p.isdigit() for p in parts) or len(parts) > 3:
        raise ValueError(f"{value!r} is not a Slurm time (M, H:M:S, D-H:M:S, …)")
    nums = [int(p) for p in parts]
    if days:  # after a day count: H, H:M, H:M:S
        h, m, s = (nums + [0, 0])[:3]
    elif len(nums) == 1:
        h, m, s = 0, nums[0], 0
    elif len(nums) == 2:
        h, m, s = 0, nums[0], nums[1]
    else:
        h, m, s = nums
    minutes = days * 24 * 60 + h * 60 + m + math.ceil(s / 60)
    if minutes < 1:
        raise ValueError(f"{value!r} is shorter than a minute")
    return minutes


def format_minutes(minutes: int | None) -> str:
    if minutes is None:
        return "UNLIMITED"
    d, rest = divmod(minutes, 24 * 60)
    h, m = divmod(rest, 60)
    return f"{d}-{h:02d}:{m:02d}:00" if d else f"{h}:{m:02d}:00"


@dataclass(frozen=True)
class Partition:
    nodes: int                      # nodes a job may use in this partition
    cpus_per_node: int
    mem_per_node: str               # Slurm syntax: "250G", "6000M"
    time_limit: str = "UNLIMITED"   # the partition's MaxTime, Slurm syntax ("7-00:00:00")
    gpus_per_node: int = 0
    gpu_type: str | None = None     # gres type ("v100"); requests become --gpus-per-node=v100:8
    account: str | None = None
    qos: str | None = None
    # The shape a GPU job gets when neither the command line nor its job kind says (unset: all of the
    # partition's nodes / all of a node's GPUs). A small dev cluster sets these so that the tiny
    # configs (2 ranks) run on it as shipped.
    default_nodes: int | None = None
    default_gpus_per_node: int | None = None

    def __post_init__(self) -> None:
        for key in ("nodes", "cpus_per_node"):
            if getattr(self, key) < 1:
                raise ConfigError(f"key {key!r}: must be >= 1, got {getattr(self, key)}")
        for key, most in (("default_nodes", self.nodes), ("default_gpus_per_node", self.gpus_per_node)):
            value = getattr(self, key)
            if value is not None and not 1 <= value <= most:
                raise ConfigError(f"key {key!r}: must be between 1 and {most} (the partition's "
                                  f"{key.removeprefix('default_')}), got {value}")
        if self.gpus_per_node < 0:
            raise ConfigError(f"key 'gpus_per_node': must be >= 0, got {self.gpus_per_node}")
        try:
            parse_mem_mb(self.mem_per_node)
        except ValueError as exc:
            raise ConfigError(f"key 'mem_per_node': {exc}") from None
        try:
            parse_time_min(self.time_limit)
        except ValueError as exc:
            raise ConfigError(f"key 'time_limit': {exc}") from None

    @property
    def mem_mb(self) -> int:
        return parse_mem_mb(self.mem_per_node)

    @property
    def time_limit_min(self) -> int | None:
        return parse_time_min(self.time_limit)


@dataclass(frozen=True)
class Profile:
    name: str
    default_partition: str
    partitions: dict[str, Partition]
    # Where CPU-only work (corpus array tasks) goes; the default partition when unset.
    cpu_partition: str | None = None
    # Shell lines every job runs before its command: `module load …`, `source …/activate`.
    setup: list[str] = field(default_factory=list)
    # Exported in every job (after `setup`).
    env: dict[str, str] = field(default_factory=dict)
    # Slurm sends USR2 this many seconds before the time limit (--signal=USR2@N): the time a job has
    # to write its checkpoint and requeue. A 13B ZeRO-3 checkpoint needs minutes.
    signal_lead_s: int = 120
    # How often a job may be requeued after a timeout or preemption before it is left failed.
    requeue_limit: int = 3
    # Slurm commands (sbatch, sacct, squeue, scancel, scontrol) whose daemon does not answer are tried
    # this often in all, waiting slurm_backoff_s, then twice that, … between tries (hpc.slurmcmd);
    # $CAMA_SLURM_TRIES / $CAMA_SLURM_BACKOFF_S override both.
    slurm_tries: int = 3
    slurm_backoff_s: float = 1.0
    # submitit's pickles and logs, and submitted.jsonl; relative = to the directory you submit from
    # (it must be on a filesystem every node sees).
    log_folder: str = "logs/slurm"
    # Command that starts Python on the nodes; unset = the interpreter that submits (same venv).
    python: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.partitions:
            raise ConfigError("key 'partitions': at least one partition is needed")
        for key in ("default_partition", "cpu_partition"):
            value = getattr(self, key)
            if value is not None and value not in self.partitions:
                raise ConfigError(f"key {key!r}: {value!r} is not one of the partitions "
                                  f"({', '.join(sorted(self.partitions))})")
        for key in ("signal_lead_s", "requeue_limit"):
            if getattr(self, key) < 0:
                raise ConfigError(f"key {key!r}: must be >= 0, got {getattr(self, key)}")
        if self.slurm_tries < 1:
            raise ConfigError(f"key 'slurm_tries': must be >= 1 (1: no retry), got {self.slurm_tries}")
        if self.slurm_backoff_s < 0:
            raise ConfigError(f"key 'slurm_backoff_s': must be >= 0 seconds, got {self.slurm_backoff_s}")

    def partition(self, name: str | None = None) -> Partition:
        name = name or self.default_partition
        try:
            return self.partitions[name]
        except KeyError:
            raise ConfigError(f"unknown partition {name!r} in cluster profile {self.name!r} "
                              f"(it has: {', '.join(sorted(self.partitions))})") from None


def profile_from_dict(values: Mapping[str, Any], where: str, default_name: str = "") -> Profile:
    """A Profile from parsed YAML; errors name ``where`` and the key path."""
    values = dict(values)
    if "name" not in values and default_name:
        values["name"] = default_name
    raw_parts = values.get("partitions")
    if not isinstance(raw_parts, Mapping):
        if "partitions" in values:
            raise ConfigError(f"{where}: key 'partitions': expected a mapping of partition name to its "
                              f"settings, got {type(raw_parts).__name__}")
        raise ConfigError(f"{where}: missing required key 'partitions'")
    parts = {}
    for pname, sub in raw_parts.items():
        if not isinstance(sub, Mapping):
            raise ConfigError(f"{where}: partitions.{pname}: expected a mapping of keys, got {type(sub).__name__}")
        parts[str(pname)] = from_dict(Partition, sub, f"{where}: partitions.{pname}")
    values["partitions"] = parts
    values["env"] = _env(values.get("env", {}), where)
    return from_dict(Profile, values, where)


def _env(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: key 'env': expected a mapping of variable to value, got {type(raw).__name__}")
    env = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ConfigError(f"{where}: env: {key!r} is not a valid environment variable name")
        # YAML reads `1` and `true` as int/bool: an exported variable is text either way.
        if isinstance(value, bool):
            value = "1" if value else "0"
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: env.{key}: expected a string, got {type(value).__name__}")
        env[key] = str(value)
    return env


def profile_path(name_or_path: str | os.PathLike) -> Path:
    """`dev` → configs/cluster/dev.yaml; anything that looks like a path is taken as one."""
    text = str(name_or_path)
    if os.sep in text or text.endswith((".yaml", ".yml")) or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"cluster profile file not found: {path}")
        return path
    path = PROFILE_DIR / f"{text}.yaml"
    if not path.is_file():
        raise ConfigError(f"no cluster profile {text!r} (profiles in {PROFILE_DIR}: "
                          f"{', '.join(available_profiles()) or 'none'}; or pass a path to a YAML file)")
    return path


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def default_profile_name(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(PROFILE_ENV) or DEFAULT_PROFILE


def load_profile(name_or_path: str | os.PathLike | None = None) -> Profile:
    """Load a profile by name (configs/cluster/<name>.yaml) or path; None = $CAMA_CLUSTER or `dev`."""
    path = profile_path(name_or_path if name_or_path is not None else default_profile_name())
    return profile_from_dict(load_yaml(path), path.name, default_name=path.stem)
