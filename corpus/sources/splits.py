"""Splitting one large input file into byte ranges, so several prepare tasks share it.

:func:`corpus.sources.byte_ranges` returns at most ``n`` contiguous ranges ``[start, end)`` covering the
file (fewer when it has fewer split points; never an empty one), or None when the file cannot be split
— then one task reads it whole. A task passes its range as the reader's ``byte_range`` option; the
ranges' Documents, concatenated in order, are the whole file's Documents (ids included).

- JSON lines, uncompressed: any offsets will do, since a range reads the lines *starting* inside it
  (Hadoop's rule, :func:`corpus.reader.read_lines`); the cuts are simply ``size × k / n``. Compressed JSON
  lines cannot be entered mid-way: None.
- A Wikipedia multistream dump (``…-pages-articles-multistream.xml.bz2``): cuts at bz2 stream starts
  read from its index (``…-multistream-index.txt[.bz2]``, lines ``offset:page_id:title``), the one nearest
  to ``size × k / n``; each offset is checked to start a bz2 stream, so an index that belongs to another
  dump fails here, naming the index line, not hours later. Without an index: None.
"""

from __future__ import annotations

import bisect
import bz2
import os
from pathlib import Path

from corpus.reader import COMPRESSED, InputError

_BZ2_STREAM_MAGIC = b"BZh"
_BZ2_BLOCK_MAGIC = b"1AY&SY"     # the first block header after "BZh<level>" (an empty stream has none)
_BZ2_EOS_MAGIC = b"\x17rE8P\x90"


def line_ranges(path: Path, n: int) -> list[tuple[int, int]] | None:
    if path.is_dir() or path.name.endswith(COMPRESSED):
        return None
    size = path.stat().st_size
    cuts = sorted({size * k // n for k in range(1, n)} - {0, size})
    edges = [0, *cuts, size]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def default_index(dump: Path) -> Path | None:
    """The index beside a multistream dump, by Wikimedia's naming; None if there is none."""
    name = dump.name
    if not name.endswith(".xml.bz2"):
        return None
    stem = name[: -len(".xml.bz2")]
    for suffix in ("-index.txt.bz2", "-index.txt"):
        candidate = dump.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def stream_offsets(index: Path, dump_size: int) -> list[int]:
    """The distinct stream offsets of an index, increasing; InputError naming the line if it is malformed."""
    offsets: list[int] = []
    opener = bz2.open if index.name.endswith(".bz2") else open
    try:
        with opener(index, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                head, sep, _ = line.partition(b":")
                try:
                    offset = int(head)
                except ValueError:
                    offset = -1
                if not sep or offset < 0:
                    raise InputError(f"{index}:{lineno}: not a multistream index line (expected offset:page_id:title)")
                if offsets and offset < offsets[-1]:
                    raise InputError(f"{index}:{lineno}: offset {offset} is smaller than the line before's ({offsets[-1]})")
                if offset >= dump_size:
                    raise InputError(f"{index}:{lineno}: offset {offset} is past the end of the dump ({dump_size} bytes)")
                if not offsets or offset != offsets[-1]:
                    offsets.append(offset)
    except (OSError, EOFError) as exc:
        raise InputError(f"{index}: cannot read the multistream index ({exc})") from None
    return offsets


def _check_stream_start(dump: Path, offset: int, index: Path) -> None:
    with open(dump, "rb") as f:
        f.seek(offset)
        head = f.read(10)
    if not (head[:3] == _BZ2_STREAM_MAGIC and head[3:4].isdigit() and head[4:10] in (_BZ2_BLOCK_MAGIC, _BZ2_EOS_MAGIC)):
        raise InputError(f"{index}: offset {offset} does not start a bz2 stream of {dump}: "
                         "the index does not belong to this dump")


def multistream_ranges(dump: Path, n: int, index: str | os.PathLike | None) -> list[tuple[int, int]] | None:
    if not dump.is_file() or not dump.name.endswith(".bz2"):
        return None
    index_path = Path(index) if index is not None else default_index(dump)
    if index_path is None:
        return None
    if not index_path.is_file():
        raise InputError(f"multistream index not found: {index_path}")
    size = dump.stat().st_size
    # not the first page stream: a range ending there would hold the header alone
    offsets = [o for o in stream_offsets(index_path, size) if o > 0][1:]
    cuts: list[int] = []
    for k in range(1, n):
        target = size * k / n
        i = bisect.bisect_left(offsets, target)
        near = [offsets[j] for j in (i - 1, i) if 0 <= j < len(offsets)]
        if not near:
            break
        cut = min(near, key=lambda o: (abs(o - target), o))
        if cut > (cuts[-1] if cuts else 0):
            cuts.append(cut)
    for cut in cuts:
        _check_stream_start(dump, cut, index_path)
    edges = [0, *cuts, size]
    return [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
