"""An output directory that appears complete or not at all.

Everything is written into ``TARGET.tmp-<pid>`` next to the target (same filesystem, so the final
rename is atomic). On success an existing target (only with ``force``) is moved aside and removed,
then the temporary directory is renamed; on any error, Ctrl-C or SIGTERM included, the temporary
directory is removed. Temporaries left by a killed run (its pid gone) are removed at the next start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from recover.errors import RecoverError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_target(target: str | os.PathLike, force: bool, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Refuse an existing target without ``force``, and a target that is (or holds) one of the inputs."""
    target = Path(target)
    resolved = target.resolve()
    for inp in inputs:
        r = Path(inp).resolve()
        if resolved == r or resolved in r.parents:
            raise RecoverError(f"output {target} is the input {inp}: choose another output directory")
    if target.exists() and not force:
        raise RecoverError(f"output {target} already exists: remove it or pass --force to replace it")
    if target.exists() and not target.is_dir():
        raise RecoverError(f"output {target} exists and is not a directory")
    return target


def _clean_stale(target: Path) -> None:
    for p in target.parent.glob(f"{target.name}.tmp-*"):
        suffix = p.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and int(suffix) != os.getpid() and not _pid_alive(int(suffix)):
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, force: bool = False,
               inputs: tuple[str | os.PathLike, ...] = ()) -> Iterator[Path]:
    target = check_target(target, force, inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(target)
    tmp = target.parent / f"{target.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            if not force:  # appeared while we worked
                raise RecoverError(f"output {target} appeared while writing: not replaced (pass --force)")
            old = target.parent / f"{target.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
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
