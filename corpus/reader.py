"""Streaming line reader for (optionally compressed) JSON-lines inputs.

Lines are read as bytes with a size cap, so a 50 MB line costs a bounded buffer, not 50 MB, and a
truncated or corrupt compressed file ends that file's stream with a counted error instead of a
crash. Decoding and JSON parsing happen later, in the workers.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import lzma
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from common.errors import UserError

COMPRESSED = (".gz", ".bz2", ".xz", ".zst")
SUFFIXES = tuple(base + comp for base in (".jsonl", ".json") for comp in ("",) + COMPRESSED)
# Errors a decompressor raises on a truncated or damaged stream.
STREAM_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, gzip.BadGzipFile, zstandard.ZstdError)


class InputError(UserError, ValueError):
    """An input path names nothing readable."""


@dataclass(frozen=True)
class Line:
    path: str
    lineno: int
    data: bytes | None  # None: the line was longer than the cap and was skipped


@dataclass(frozen=True)
class StreamError:
    path: str
    lineno: int
    reason: str
    detail: str


def expand_inputs(
    patterns: Iterable[str | os.PathLike],
    suffixes: tuple[str, ...] = SUFFIXES,
    *,
    what: str = "JSON-lines",
    dir_is_unit: bool = False,
    glob_dirs: bool = False,
) -> list[Path]:
    """Files named by paths, directories (their files ending in ``suffixes``, recursively) and globs.

    Sorted within each pattern: the order is part of the output's identity, so the same inputs
    always give the same document order. ``dir_is_unit`` keeps a directory whole (a GitHub
    repository, walked by its reader); ``glob_dirs`` lets a glob name directories too (otherwise a
    glob contributes its files only).
    """
    units: list[Path] = []
    for pattern in map(str, patterns):
        if any(ch in pattern for ch in "*?["):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"input pattern matches no file: {pattern}")
            paths = [Path(m) for m in matches if glob_dirs or Path(m).is_file()]
        else:
            paths = [Path(pattern)]
        for path in paths:
            if path.is_dir() and dir_is_unit:
                units.append(path)
            elif path.is_dir():
                found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(suffixes))
                if not found:
                    raise InputError(f"input directory has no {what} files ({', '.join(suffixes)}): {path}")
                units.extend(found)
            elif path.is_file():
                units.append(path)
            else:
                raise InputError(f"input not found: {path}")
    return units


def open_binary(path: Path) -> BinaryIO:
    name = path.name
    if name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if name.endswith(".zst"):
        return io.BufferedReader(_ZstdReader(path), 1 << 20)  # type: ignore[return-value]
    if name.endswith(".xz"):
        return lzma.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 20)


class _ZstdReader(io.RawIOBase):
    """A .zst file (one or several frames) as a raw stream that notices truncation.

    zstandard's own stream_reader ends quietly when a frame is cut short, which would make a
    truncated file look complete; here a frame left unfinished at the end of the file raises
    EOFError, like gzip, bz2 and lzma do.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "rb")
        self._dobj = zstandard.ZstdDecompressor().decompressobj()
        self._in_frame = False  # input fed to the current frame that has not finished it yet
        self._buf = b""

    def readable(self) -> bool:
        return True

    def _feed(self, data: bytes) -> None:
        while data:
            self._buf += self._dobj.decompress(data)
            self._in_frame = not self._dobj.eof
            data = self._dobj.unused_data if self._dobj.eof else b""
            if self._dobj.eof:
                self._dobj = zstandard.ZstdDecompressor().decompressobj()

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while not self._buf:
            chunk = self._file.read(1 << 20)
            if not chunk:
                if self._in_frame:
                    raise EOFError("zstd file ended before the end of its frame")
                return 0
            self._feed(chunk)
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def read_lines(path: Path, max_bytes: int, byte_range: tuple[int, int] | list[int] | None = None) -> Iterator[Line | StreamError]:
    """Yield every line of ``path`` (without its newline), or a StreamError where the file breaks off.

    A line longer than ``max_bytes`` is consumed in ``max_bytes`` pieces and yielded with
    ``data=None`` so the caller can count it without holding it.

    ``byte_range=(start, end)`` (an uncompressed file only): the lines that start at a byte ``p`` with
    ``start < p <= end`` (``0 <= p <= end`` when start is 0; none when the range is empty) — Hadoop's rule for line splits: a task skips
    the line it starts in (the previous task reads it, since it reads the line starting at its end), so
    ranges cut anywhere read every line exactly once. Line numbers stay those of the whole file: the
    newlines before ``start`` are counted (a byte count at memory speed, no decoding), so a document's id
    does not depend on how the file was split.
    """
    if byte_range is not None:
        yield from _read_range(path, max_bytes, int(byte_range[0]), int(byte_range[1]))
        return
    lineno = 0
    try:
        with open_binary(path) as f:
            while True:
                line = f.readline(max_bytes + 1)
                if not line:
                    return
                lineno += 1
                if len(line) > max_bytes and not line.endswith(b"\n"):
                    while line and not line.endswith(b"\n"):
                        line = f.readline(max_bytes + 1)
                    yield Line(str(path), lineno, None)
                    continue
                yield Line(str(path), lineno, line.rstrip(b"\r\n"))
    except STREAM_ERRORS as exc:
        yield StreamError(str(path), lineno + 1, "truncated_input", f"{type(exc).__name__}: {exc}")


def _skip_line(f: BinaryIO, max_bytes: int) -> int:
    """Consume the rest of the current line (through its newline); the bytes consumed."""
    n = 0
    while True:
        piece = f.readline(max_bytes + 1)
        n += len(piece)
        if not piece or piece.endswith(b"\n"):
            return n


def _read_range(path: Path, max_bytes: int, start: int, end: int) -> Iterator[Line]:
    if path.name.endswith(COMPRESSED):
        raise InputError(f"{path}: byte_range needs an uncompressed file (a compressed stream cannot be entered mid-way)")
    if end <= start:
        return   # an empty range owns no line (even at offset 0: the range after it starts there too)
    with open(path, "rb", buffering=1 << 20) as f:
        lineno = 0
        pos = start
        if start > 0:
            remaining = start
            while remaining:   # lines before the range, for file-wide line numbers
                chunk = f.read(min(remaining, 8 << 20))
                if not chunk:
                    return
                lineno += chunk.count(b"\n")
                remaining -= len(chunk)
            lineno += 1        # the line holding byte `start` belongs to the previous range
            pos += _skip_line(f, max_bytes)
        while pos <= end:
            line = f.readline(max_bytes + 1)
            if not line:
                return
            pos += len(line)
            lineno += 1
            if len(line) > max_bytes and not line.endswith(b"\n"):
                pos += _skip_line(f, max_bytes)
                yield Line(str(path), lineno, None)
                continue
            yield Line(str(path), lineno, line.rstrip(b"\r\n"))


def input_size(files: list[Path]) -> int | None:
    """Total bytes to read, when knowable without decompressing (progress bar total)."""
    if any(p.name.endswith(COMPRESSED) for p in files):
        return None
    return sum(os.path.getsize(p) for p in files)
