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
from corpus.reader import COMPRESSED, STREAM_ERRORS, InputError, Line, StreamError, open_binary, read_lines
from corpus.sources.jsonstream import iter_elements
from corpus.sources.options import JsonOptions

# A JSON line longer than this is skipped (counted as "line_too_long") so one giant line costs a bounded
# buffer, not its size. 64 MiB is far above any real article but far below a node's memory.
MAX_LINE_BYTES = 64 << 20
_SNIFF_BYTES = 1 << 20     # format: auto looks at the first line up to this many bytes


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


def iter_json_records(path: Path, skips: Counter[str], max_bytes: int = MAX_LINE_BYTES,
                      byte_range: list[int] | tuple[int, int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(lineno, object)`` for each JSON-object line of a (possibly compressed) JSON-lines file.

    Blank lines are ignored silently (trailing newlines are common); undecodable lines, non-object
    values, JSON nested too deeply to parse, over-long lines and a truncated compressed stream are
    counted and skipped. (Not :func:`common.jsonl.iter_jsonl`: the inputs here may be compressed, and
    a cut-off compressed stream ends the file, counted, instead of raising.) ``byte_range``: one split
    of the file (:func:`corpus.reader.read_lines`).
    """
    for item in read_lines(path, max_bytes, byte_range):
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


def json_format(path: Path, opts: JsonOptions) -> str:
    """``lines`` or ``json`` for this file (see :mod:`corpus.sources.options`, ``format: auto``)."""
    if opts.format != "auto":
        return opts.format
    name = path.name
    for suffix in COMPRESSED:
        name = name.removesuffix(suffix)
    if name.endswith(".jsonl"):
        return "lines"
    try:
        with open_binary(path) as f:
            head = f.readline(_SNIFF_BYTES + 1)
            while head and not head.strip():
                head = f.readline(_SNIFF_BYTES + 1)
    except STREAM_ERRORS:
        return "lines"      # unreadable from the start: counted when the file is read
    first = head.lstrip()[:1]
    if first == b"[" or (first == b"{" and len(head) > _SNIFF_BYTES and not head.endswith(b"\n")):
        return "json"       # an array, or a first line too long to be sure of: JSON text reads both shapes
    try:
        return "lines" if isinstance(parse_json(head), dict) else "json"
    except ValueError:
        return "json"       # "{" alone: the start of multi-line JSON (or garbage, counted then)


def iter_records(path: Path, skips: Counter[str], opts: JsonOptions) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(n, object)`` for each record of a JSON layout file: ``n`` is the line number (JSON lines) or the
    record's 1-based position (JSON text); a non-object record is counted ``invalid_json``."""
    if json_format(path, opts) == "lines":
        yield from iter_json_records(path, skips, opts.max_record_bytes, opts.byte_range)
        return
    if opts.byte_range is not None:
        raise InputError(f"{path}: byte_range needs JSON lines (format: lines); this file is read as JSON text")
    n = 0
    try:
        with open_binary(path) as f:
            for obj in iter_elements(f, skips, opts.chunk_bytes, opts.max_record_bytes):
                n += 1
                if not isinstance(obj, dict):
                    skips["invalid_json"] += 1
                    continue
                yield n, obj
    except STREAM_ERRORS:
        skips["truncated_input"] += 1
