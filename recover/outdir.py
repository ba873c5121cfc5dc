"""An output directory that appears complete or not at all, and recover's rules for where it may go.

The mechanics are :func:`common.atomic.atomic_dir`: everything is written into ``TARGET.tmp-<pid>``
next to the target (same filesystem, so the final rename is atomic); on success an existing target
(only with ``force``) is moved aside and removed, then the temporary directory is renamed; on any
error, Ctrl-C or SIGTERM included, the temporary directory is removed; temporaries left by a killed
run (its pid gone) are removed at the next start. What is recover's own: a target that is (or holds)
one of the command's inputs is refused, and the refusals are :class:`RecoverError` naming the flag
that changes them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from common.atomic import atomic_dir as _atomic_dir
from recover.errors import RecoverError


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


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, force: bool = False,
               inputs: tuple[str | os.PathLike, ...] = ()) -> Iterator[Path]:
    """An empty temporary directory that becomes ``target`` when the block ends without an error."""
    target = check_target(target, force, inputs)
    # Only common.atomic_dir's own FileExistsError (the target appeared while we worked) is translated;
    # one raised by the caller's block is the caller's.
    in_block = False
    try:
        with _atomic_dir(target, replace=force) as tmp:
            in_block = True
            yield tmp
            in_block = False
    except FileExistsError:
        if in_block:
            raise
        raise RecoverError(f"output {target} appeared while writing: not replaced (pass --force)") from None
