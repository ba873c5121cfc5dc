"""Small file helpers of the training side: JSON objects read with a clear error, JSON lines written
complete or absent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping


def read_json_object(path: str | os.PathLike, error: type[Exception], missing: str, kind: str = "JSON",
                     expect: str = "a JSON object") -> dict[str, Any]:
    """The JSON object in ``path``; otherwise ``error`` naming the file: ``{missing} not found: PATH``,
    ``PATH: not a readable {kind} (why)`` or ``PATH: expected {expect}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{missing} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not a readable {kind} ({exc})") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: expected {expect}")
    return data


def write_jsonl_atomic(records: Iterable[Mapping[str, Any]], out: str | os.PathLike) -> None:
    """JSON lines (UTF-8, unescaped) written to a temporary name next to ``out``, fsynced, and renamed
    when complete: a crash leaves the previous file or none, never half of one."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
