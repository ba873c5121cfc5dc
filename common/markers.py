"""Completion markers: a small JSON file written last, which makes a rerun skip finished work.

Two kinds, one rule — the marker is written after everything it vouches for, through an atomic rename:

- **Step markers** (:func:`write_marker` / :func:`read_marker`): "this output was made from exactly this
  input and config". The fingerprint is a SHA-256 over canonical JSON of whatever the step depends on
  (:func:`fingerprint`); a marker whose fingerprint differs counts as absent, so a changed config
  reruns the step and an unchanged one skips it.
- **Sealed folders** (:func:`seal` / :func:`read_seal`): a folder written by several processes (a ZeRO-3
  checkpoint) counts only once its marker lists every file with its size and each file still has it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common.atomic import fsync_dir, fsync_file, write_json


def _plain(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return x


def canonical_json(*parts: Any) -> str:
    """One stable text for ``parts`` (dataclasses and paths as plain data, keys sorted)."""
    return json.dumps(_plain(list(parts)), sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def fingerprint(*parts: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``parts``."""
    return hashlib.sha256(canonical_json(*parts).encode("utf-8")).hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_marker(path: str | os.PathLike, fp: str, **data: Any) -> dict[str, Any]:
    """Write the marker ``path`` for work with fingerprint ``fp`` (call it after the work is on disk)."""
    marker = {"fingerprint": fp, "time": utc_now(), **data}
    write_json(path, marker)
    return marker


def read_marker(path: str | os.PathLike, fp: str | None = None) -> dict[str, Any] | None:
    """The marker at ``path``, or None when it is missing, unreadable or (with ``fp``) for other work."""
    try:
        marker = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(marker, dict):
        return None
    if fp is not None and marker.get("fingerprint") != fp:
        return None
    return marker


SEAL = "COMPLETE.json"


def seal(folder: str | os.PathLike, name: str = SEAL, **data: Any) -> dict[str, Any]:
    """fsync every file under ``folder`` and write the marker ``name`` listing them with their sizes.

    Only once every writer of the folder is done (after a barrier, for a multi-process save)."""
    folder = Path(folder)
    files: dict[str, int] = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.name != name and not f.name.startswith(f".{name}"):
            fsync_file(f)
            files[f.relative_to(folder).as_posix()] = f.stat().st_size
    marker = {"files": files, "time": utc_now(), **data}
    tmp = folder / f".{name}.tmp"
    with tmp.open("w", encoding="utf-8") as out:
        json.dump(marker, out, indent=1, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, folder / name)
    fsync_dir(folder)
    return marker


def read_seal(folder: str | os.PathLike, name: str = SEAL) -> dict[str, Any] | None:
    """The marker of a sealed ``folder`` if every file it lists is present with its size, else None."""
    folder = Path(folder)
    marker = read_marker(folder / name)
    if marker is None or not isinstance(marker.get("files"), dict):
        return None
    try:
        for rel, size in marker["files"].items():
            if (folder / rel).stat().st_size != size:
                return None
    except (OSError, TypeError):
        return None
    return marker
