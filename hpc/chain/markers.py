"""The chain's stages and their completion markers (``run_dir/stages/<stage>.json``, common.markers).

A marker is written last, when a stage is done, with the fingerprint of everything the stage was
given (its own config and, through the previous stage's fingerprint, everything upstream); a marker
whose fingerprint differs counts as absent.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from common.markers import fingerprint as _sha256
from common.markers import read_marker, write_marker

STAGES = ("tokenizer", "corpus", "pretrain", "lora", "recover", "generate", "report")
# pipeline.yaml's `tuning:` → the stage that tunes the pretrained model (the run folder it writes).
TUNING_STAGES = {"lora": "lora", "full": "sft"}


def stages_for(tuning: str = "lora") -> tuple[str, ...]:
    """The chain's stages with ``tuning`` (lora: :data:`STAGES`; full: the sft stage in lora's place)."""
    return tuple(TUNING_STAGES[tuning] if s == "lora" else s for s in STAGES)


def fingerprint(data: Any) -> str:
    return _sha256(data)[:16]


def marker_path(run_dir: str | os.PathLike, stage: str) -> Path:
    return Path(run_dir) / "stages" / f"{stage}.json"


def read(run_dir: str | os.PathLike, stage: str, fp: str | None = None) -> dict[str, Any] | None:
    """The stage's marker (with ``fp``: only if it was written for that fingerprint), else None."""
    return read_marker(marker_path(run_dir, stage), fp)


def write(run_dir: str | os.PathLike, stage: str, fp: str, result: Any, seconds: float) -> dict[str, Any]:
    # A stage's result may hold paths and other objects: the marker keeps their text.
    plain = json.loads(json.dumps(result, default=str, ensure_ascii=False))
    return write_marker(marker_path(run_dir, stage), fp, stage=stage, seconds=round(seconds, 2),
                        finished=time.strftime("%Y-%m-%dT%H:%M:%S"), job_id=os.environ.get("SLURM_JOB_ID"),
                        result=plain)
