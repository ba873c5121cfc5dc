"""JSON and JSON-lines files read with errors that name the file and the line.

A bad line in a long job is skipped and counted by the caller (``on_error="skip"`` yields a
:class:`BadLine` in its place); in a small input (a template, a case file) it is an error
(:class:`~common.errors.InputDataError` with ``FILE:LINE: why``). Deep nesting (a few thousand ``[``)
makes Python's decoder raise RecursionError: that is a bad line like any other, never a crash.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from common.atomic import atomic_open
from common.errors import InputDataError

MAX_LINE_BYTES = 64 << 20
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class BadLine:
    """A line that is not a JSON object: where, and why (``invalid_json``, ``not_object``, ``not_utf8``…)."""

    path: Path
    lineno: int
    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.lineno}: {self.reason}{': ' + self.detail if self.detail else ''}"


def parse_json(data: str | bytes) -> Any:
    """``json.loads`` whose every failure — nesting too deep included — is a ValueError."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _parse_line(raw: bytes, path: Path, lineno: int) -> dict[str, Any] | BadLine:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadLine(path, lineno, "not_utf8", f"invalid byte at {exc.start}")
    try:
        obj = parse_json(text)
    except ValueError as exc:
        return BadLine(path, lineno, "invalid_json", str(exc))
    if not isinstance(obj, dict):
        return BadLine(path, lineno, "not_object", f"a JSON {type(obj).__name__}, not an object")
    return obj


def iter_jsonl(path: str | os.PathLike, on_error: Literal["raise", "skip"] = "raise",
               max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """``(line number, object)`` for every non-blank line of a JSON-lines file (plain text; a UTF-8
    byte-order mark at the start of the file is ignored).

    ``on_error="raise"``: the first bad line raises InputDataError ``FILE:LINE: …``; ``"skip"``: it is
    yielded as a :class:`BadLine` for the caller to count."""
    path = Path(path)
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise InputDataError(f"file not found: {path}") from None
    except OSError as exc:
        raise InputDataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]  # editors on Windows write one; it is not part of the first object
            if not raw.strip():
                continue
            item: dict[str, Any] | BadLine
            if len(raw) > max_line_bytes:
                item = BadLine(path, lineno, "line_too_long", f"{len(raw)} bytes > {max_line_bytes}")
            else:
                item = _parse_line(raw, path, lineno)
            if isinstance(item, BadLine) and on_error == "raise":
                raise InputDataError(str(item))
            yield lineno, item


def read_json_object(path: str | os.PathLike, error: type[Exception] = InputDataError, missing: str = "file",
                     kind: str = "JSON", expect: str = "a JSON object") -> dict[str, Any]:
    """The JSON object in ``path``; otherwise ``error`` naming the file: ``{missing} not found: PATH``,
    ``PATH: not a readable {kind} (why)`` or ``PATH: expected {expect}``."""
    path = Path(path)
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{missing} not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(f"{path}: not a readable {kind} ({exc})") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: expected {expect}")
    return data


def write_jsonl(records: Iterable[Mapping[str, Any]], out: str | os.PathLike) -> int:
    """JSON lines (UTF-8, unescaped), complete or absent; returns how many records were written."""
    n = 0
    with atomic_open(out, "w") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def parse_json_prefix(text: str, pos: int = 0) -> tuple[Any, int]:
    """The JSON value starting at ``text[pos]`` and the index just after it (``JSONDecoder.raw_decode``),
    for streaming parsers. Every failure is a :class:`json.JSONDecodeError` (a ValueError) carrying
    ``msg`` and ``pos`` — nesting too deep included (``msg`` "nested too deeply", ``pos`` the value's start)."""
    try:
        return _DECODER.raw_decode(text, pos)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, pos) from None


_DECODER = json.JSONDecoder()
