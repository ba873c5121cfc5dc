"""Output files the training side writes: complete or absent."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping


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
