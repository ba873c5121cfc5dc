"""Complete-or-absent training checkpoints on top of the Hugging Face Trainer's ``checkpoint-N`` folders.

The Trainer writes a checkpoint in place, file by file, from every rank (under ZeRO-3 each rank writes
its own parameter and optimizer partitions). A job killed half-way leaves a folder that looks like a
checkpoint and is not one. So a checkpoint counts only once its marker exists:

1. every rank finishes its part of the save (the Trainer's ``_save_checkpoint``),
2. a barrier, so rank 0 knows all partitions are on disk,
3. rank 0 writes the data position (``sampler.json``), fsyncs every file, and writes ``COMPLETE.json``
   (step, files and their sizes) last, through a temporary name and an atomic rename.

:func:`latest_complete` trusts a folder only if its marker names its step and every listed file has
its listed size. :func:`remove_incomplete` deletes the rest at the start of a run, and pruning (what
the Trainer's ``save_total_limit`` would do) happens here, after the new marker is written, so there is
never a moment without a complete checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.markers import read_seal, seal

MARKER = "COMPLETE.json"
SAMPLER_STATE = "sampler.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def _step_of(path: Path) -> int | None:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else None


def mark_complete(path: str | os.PathLike[str], step: int, extra: dict[str, Any] | None = None) -> Checkpoint:
    """Seal ``path`` (a checkpoint every rank has finished writing) with its marker; rank 0 only."""
    path = Path(path)
    meta = seal(path, MARKER, **{**(extra or {}), "step": step})
    return Checkpoint(path, step, meta)


def read_complete(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path`` if its marker is there, names the folder's step, and every file it
    lists has its size."""
    step = _step_of(path)
    if step is None:
        return None
    meta = read_seal(path, MARKER)
    if meta is None or meta.get("step") != step:
        return None
    return Checkpoint(path, step, meta)


def list_complete(root: str | os.PathLike[str]) -> list[Checkpoint]:
    root = Path(root)
    if not root.is_dir():
        return []
    found = (read_complete(p) for p in root.iterdir() if p.is_dir())
    return sorted((c for c in found if c is not None), key=lambda c: c.step)


def latest_complete(root: str | os.PathLike[str]) -> Checkpoint | None:
    done = list_complete(root)
    return done[-1] if done else None


def remove_incomplete(root: str | os.PathLike[str]) -> list[Path]:
    """Delete ``checkpoint-N`` folders without a valid marker (a save that never finished).

    Only safe while no save is running: at the start of a run, on rank 0, before the first step."""
    root = Path(root)
    if not root.is_dir():
        return []
    gone = [p for p in root.iterdir() if p.is_dir() and _step_of(p) is not None and read_complete(p) is None]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def prune(root: str | os.PathLike[str], keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` complete checkpoints (at least one always stays)."""
    old = list_complete(root)[:-max(keep, 1)]
    for c in old:
        shutil.rmtree(c.path, ignore_errors=True)
    return [c.path for c in old]


def resolve_resume(output_dir: str | os.PathLike[str], resume: str) -> Checkpoint | None:
    """What a run starts from: ``auto`` → the latest complete checkpoint (or None), ``never`` → None,
    anything else → that folder, which must be a complete checkpoint."""
    if resume == "never":
        return None
    if resume == "auto":
        return latest_complete(output_dir)
    chosen = read_complete(Path(resume))
    if chosen is None:
        raise ValueError(f"resume: {resume} is not a complete checkpoint (a checkpoint-N folder with {MARKER})")
    return chosen
