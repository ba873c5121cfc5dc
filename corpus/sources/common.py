"""Shared plumbing for the source readers.

Every reader has the same shape, ``read(path, skips, options=None) -> Iterator[Document]``: it streams one
file, yields Documents with stable ids, and counts each malformed record in ``skips[reason]`` instead of
raising, because one bad record must never kill a multi-hour build (DESIGN.md, "Bad input never crashes").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.jsonl import parse_json
from corpus.reader import COMPRESSED, Line, StreamError, read_lines

# A JSON line longer than this is skipped (counted as "line_too_long") so one giant line costs a bounded
# buffer, not its size. 64 MiB is far above any real article but far below a node's memory.
MAX_LINE_BYTES = 64 << 20


def file_stem(path: Path) -> str:
    """The file name without data and compression suffixes: ``zhwiki.jsonl.bz2`` -> ``zhwiki``.

    Ids are built from it (not from the full path) so moving the input folder keeps ids stable.
    """
    name = path.name
    for suffix in COMPRESSED:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for suffix in (".jsonl", ".json", ".xml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name


def iter_json_records(path: Path, skips: Counter[str], max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(lineno, object)`` for each JSON-object line of a (possibly compressed) JSON-lines file.

    Blank lines are ignored silently (trailing newlines are common); undecodable lines, non-object
    values, JSON nested too deeply to parse, over-long lines and a truncated compressed stream are
    counted and skipped. (Not :func:`common.jsonl.iter_jsonl`: the inputs here may be compressed, and
    a cut-off compressed stream ends the file, counted, instead of raising.)
    """
    for item in read_lines(path, max_bytes):
        if isinstance(item, StreamError):
            skips["truncated_input"] += 1
            return
        assert isinstance(item, Line)
        if item.data is None:
            skips["line_too_long"] += 1
            continue
        if not item.data.strip():
            continue
        try:
            obj = parse_json(item.data)
        except ValueError:   # UnicodeDecodeError is one
            skips["invalid_json"] += 1
            continue
        if not isinstance(obj, dict):
            skips["invalid_json"] += 1
            continue
        yield item.lineno, obj


def get_str(obj: dict[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` present in ``obj`` with a string value (None if none is).

    Layouts in the wild disagree on field names (``content`` vs ``statement``), so readers list the
    alternatives in preference order.
    """
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str):
            return value
    return None
