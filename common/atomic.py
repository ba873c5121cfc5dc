"""Files and folders that appear complete or not at all.

Everything is written to a temporary name next to its target — ``NAME.tmp.<pid>`` for a file,
``NAME.tmp-<pid>`` for a folder — on the same filesystem, fsynced, and renamed over the target when
complete. A crash leaves the previous target (or none) plus a temporary whose pid is dead:
:func:`stale_temps` finds those and :func:`remove_stale_temps` deletes them, so a rerun cleans up
after the run that was killed (``kill -9`` leaves no partial ``.bin`` beside the output forever).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# NAME.tmp.<pid>, NAME.tmp.<pid>.suffix (a writer's own parts), NAME.tmp-<pid> (folders).
_TEMP = re.compile(r"\.tmp[.-](\d+)(?:\.[^/]*)?$")


def temp_path(path: str | os.PathLike) -> Path:
    """The temporary name this process writes ``path`` under."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp.{os.getpid()}")


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; renamed over ``path`` when the block ends
    without an error, removed when it raises (Ctrl-C included)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if fsync and tmp.exists():
            fsync_file(tmp)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", fsync: bool = True,
                encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """``open()`` for writing, complete or absent: ``with atomic_open(p) as f: f.write(...)``."""
    if "b" in mode:
        encoding = None
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    if fsync:
        fsync_dir(Path(path).parent)


def write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> None:
    with atomic_open(path, "w", fsync=fsync) as f:
        f.write(text)


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2, sort_keys: bool = False,
               fsync: bool = True) -> None:
    """JSON (UTF-8, unescaped, newline-terminated), complete or absent."""
    write_text(path, json.dumps(data, indent=indent, ensure_ascii=False, sort_keys=sort_keys) + "\n", fsync=fsync)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def temp_owner(path: str | os.PathLike) -> int | None:
    """The pid in a temporary's name (``x.bin.tmp.123`` → 123), or None for other names."""
    m = _TEMP.search(Path(path).name)
    return int(m.group(1)) if m else None


def stale_temps(folder: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Temporaries in ``folder`` (names starting with ``prefix``) whose writer is no longer running."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for p in sorted(folder.iterdir()):
        if not p.name.startswith(prefix):
            continue
        pid = temp_owner(p)
        if pid is not None and pid != os.getpid() and not pid_alive(pid):
            found.append(p)
    return found


def remove_stale_temps(folder: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Delete what :func:`stale_temps` finds; returns what went. Temporaries of live processes stay."""
    gone = stale_temps(folder, prefix)
    for p in gone:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return gone


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder that becomes ``target`` when the block ends without an error.

    An existing ``target`` is replaced only with ``replace`` (moved aside, swapped, then deleted);
    without it ``FileExistsError``. On any error the temporary folder is removed. Temporaries of
    killed runs next to the target are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target.parent, f"{target.name}.tmp-")
    if target.exists() and not replace:
        raise FileExistsError(f"{target} already exists")
    tmp = target.parent / f"{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists() and not replace:
            raise FileExistsError(f"{target} appeared while it was being written: not replaced")
        replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Swap a finished temporary folder in as ``target`` (an existing one is moved aside, then deleted).

    For a folder several processes fill before one of them completes it (a ZeRO-3 export), where
    :func:`atomic_dir`'s single ``with`` block cannot span the writers; name the temporary
    ``TARGET.tmp-<pid>`` so :func:`remove_stale_temps` clears it after a crash."""
    tmp, target = Path(tmp), Path(target)
    if target.exists():
        old = target.parent / f"{target.name}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    fsync_dir(target.parent)
    return target
