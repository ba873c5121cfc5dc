"""Streaming JSON text: an array of records, or records one after another (a pretty-printed object over
many lines, several of them), parsed one element at a time with bounded memory.

Files can be hundreds of MB (a WuDao part is one 200 MB array), so nothing is loaded whole. The file is
decoded incrementally into a text buffer of a few chunks; :func:`common.jsonl.parse_json_prefix` parses
one element at a time from the buffer and the consumed prefix is dropped, so memory is bounded by chunk
size + the largest element (``max_element_bytes``).

Telling "incomplete" from "broken". When parsing fails and the file is not exhausted, the element may
simply continue past the buffer. The decoder reports errors at the point it stopped: an element cut off
by the buffer end fails either within a few characters of the end, or with "Unterminated string" (it
reports the string's start). Only those two cases read more data (up to ``max_element_bytes``); any other
error (nesting too deep included), or an element still failing at EOF or at the size cap, is broken.

Resuming after a broken element: skip to the next element boundary after the broken element's start
(``}`` ``,`` ``{`` in an array; a line starting with ``{`` between top-level records) and parse again
there. The pattern can in principle occur inside a string; then the next parse fails too (counted
again) or yields an object missing fields (counted by the reader) — never a crash, never an unbounded
read. If no boundary follows, the file ends there.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, BinaryIO

from common.jsonl import parse_json_prefix

_WS = re.compile(r"[\s,]*")          # whitespace and element separators between elements
_RESYNC_ARRAY = re.compile(r"\}\s*,\s*(?=\{)")
_RESYNC_VALUES = re.compile(r"\n(?=\{)")   # top-level records of pretty-printed JSON start a line


class Buffer:
    """A sliding window of decoded text over a (possibly compressed) binary stream."""

    def __init__(self, f: BinaryIO, chunk_bytes: int) -> None:
        self.f = f
        self.chunk = chunk_bytes
        # errors="replace": one bad byte sequence must not lose a 200 MB file; cleaning sees U+FFFD.
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.pos = 0
        self.eof = False

    def fill(self, need: int | None = None) -> bool:
        """Append about ``need`` more chars (one chunk if None); False if nothing was added (EOF).

        Drops the consumed prefix first, which is what keeps the window small.
        """
        if self.eof:
            return False
        if self.pos:
            self.text = self.text[self.pos:]
            self.pos = 0
        start = len(self.text)
        target = start + (need or 1)
        while len(self.text) < target:
            raw = self.f.read(self.chunk)
            if not raw:
                self.text += self.decoder.decode(b"", final=True)
                self.eof = True
                break
            self.text += self.decoder.decode(raw)
        return len(self.text) > start

    def skip_ws(self) -> bool:
        """Advance over whitespace/commas; False when the stream is exhausted."""
        while True:
            self.pos = _WS.match(self.text, self.pos).end()
            if self.pos < len(self.text):
                return True
            if not self.fill():
                return False


def iter_elements(f: BinaryIO, skips: Counter[str], chunk_bytes: int, max_element_bytes: int,
                  require_array: bool = False) -> Iterator[Any]:
    """Each element of the JSON array in ``f``, or each top-level value when it is not an array
    (``require_array``: that is counted ``invalid_json`` and ends the file). Broken elements are
    counted in ``skips`` (``invalid_json``, ``truncated_input``) and skipped."""
    buf = Buffer(f, chunk_bytes)
    if not buf.skip_ws():
        skips["empty_file"] += 1
        return
    array = buf.text[buf.pos] == "["
    if not array and require_array:
        skips["invalid_json"] += 1     # not an array: nothing sensible to resume at
        return
    if array:
        buf.pos += 1
    resync = _RESYNC_ARRAY if array else _RESYNC_VALUES
    while True:
        if not buf.skip_ws():
            if array:
                skips["truncated_input"] += 1   # array never closed
            return
        if array and buf.text[buf.pos] == "]":
            return
        while True:
            try:
                obj, end = parse_json_prefix(buf.text, buf.pos)
                buf.pos = end
                yield obj
                break
            except ValueError as err:
                msg, at = getattr(err, "msg", ""), getattr(err, "pos", 0)
                maybe_cut = msg != "nested too deeply" and (msg.startswith("Unterminated string") or at >= len(buf.text) - 8)
                if maybe_cut and len(buf.text) - buf.pos < max_element_bytes and buf.fill(max(chunk_bytes, len(buf.text) - buf.pos)):
                    continue   # grow geometrically so retries cost O(element) overall
                if buf.eof and maybe_cut:
                    skips["truncated_input"] += 1
                    return
                skips["invalid_json"] += 1
                if not _resync(buf, resync, chunk_bytes):
                    return
                break


def _resync(buf: Buffer, pattern: re.Pattern[str], chunk_bytes: int) -> bool:
    """Move ``buf.pos`` to the start of the next element after a broken one; False if none follows."""
    search_from = buf.pos + 1
    while True:
        m = pattern.search(buf.text, search_from)
        if m:
            buf.pos = m.end()
            return True
        # keep a short tail in case the boundary straddles the refill; drop the rest of the broken element
        keep = max(search_from, len(buf.text) - 64)
        buf.pos = keep
        search_from = 0
        if not buf.fill(chunk_bytes):
            return False
