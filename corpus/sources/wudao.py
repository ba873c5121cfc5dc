"""WuDaoCorpus 2.0 (base): each file is ONE JSON array of ``{id, uniqueKey, titleUkey, dataType, title, content}``.

Files are ~200 MB, so the array is never loaded whole. The file is decoded incrementally into a text
buffer of a few chunks; ``json.JSONDecoder.raw_decode`` parses one element at a time from the buffer and
the consumed prefix is dropped, so memory is bounded by chunk size + the largest element.

Telling "incomplete" from "broken". When ``raw_decode`` fails and the file is not exhausted, the element
may simply continue past the buffer. The decoder reports errors at the point it stopped: an element cut
off by the buffer end fails either within a few characters of the end, or with "Unterminated string" (it
reports the string's start). Only those two cases read more data (up to ``max_element_bytes``); any other
error, or an element still failing at EOF or at the size cap, is broken.

Resuming after a broken element: skip to the next ``}`` ``,`` ``{`` boundary (whitespace allowed) after
the broken element's start and parse again from that ``{``. The pattern can in principle occur inside a
string; then the next parse fails too (counted again) or yields an object missing fields (counted as
``missing_field``) — never a crash, never an unbounded read. If no boundary follows, the file ends there.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus.document import Document
from corpus.reader import STREAM_ERRORS, open_binary
from corpus.sources.common import file_stem

SOURCE = "wudao"
_WS = re.compile(r"[\s,]*")          # whitespace and element separators between elements
_RESYNC = re.compile(r"\}\s*,\s*(?=\{)")
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class WudaoOptions:
    chunk_bytes: int = 1 << 20           # bytes read per refill; tests use a tiny value to force straddling
    max_element_bytes: int = 16 << 20    # an element longer than this is treated as broken (bounds memory)


class _Buffer:
    """A sliding window of decoded text over a (possibly compressed) binary stream."""

    def __init__(self, f: Any, chunk_bytes: int) -> None:
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


def _elements(buf: _Buffer, opts: WudaoOptions, skips: Counter[str]) -> Iterator[Any]:
    """Yield each parsed array element; count broken ones in ``skips`` ("invalid_json", "truncated_input")."""
    if not buf.skip_ws():
        skips["empty_file"] += 1
        return
    if buf.text[buf.pos] != "[":
        skips["invalid_json"] += 1     # not an array: nothing sensible to resume at
        return
    buf.pos += 1
    while True:
        if not buf.skip_ws():
            skips["truncated_input"] += 1   # array never closed
            return
        if buf.text[buf.pos] == "]":
            return
        while True:
            try:
                obj, end = _DECODER.raw_decode(buf.text, buf.pos)
                buf.pos = end
                yield obj
                break
            except json.JSONDecodeError as err:
                maybe_cut = err.msg.startswith("Unterminated string") or err.pos >= len(buf.text) - 8
                if maybe_cut and len(buf.text) - buf.pos < opts.max_element_bytes and buf.fill(max(opts.chunk_bytes, len(buf.text) - buf.pos)):
                    continue   # grow geometrically so retries cost O(element) overall
                if buf.eof and maybe_cut:
                    skips["truncated_input"] += 1
                    return
                skips["invalid_json"] += 1
                if not _resync(buf, opts):
                    return
                break


def _resync(buf: _Buffer, opts: WudaoOptions) -> bool:
    """Move ``buf.pos`` to the ``{`` of the next element after a broken one; False if none follows."""
    search_from = buf.pos + 1
    while True:
        m = _RESYNC.search(buf.text, search_from)
        if m:
            buf.pos = m.end()
            return True
        # keep a short tail in case the boundary straddles the refill; drop the rest of the broken element
        keep = max(search_from, len(buf.text) - 64)
        buf.pos = keep
        search_from = 0
        if not buf.fill(opts.chunk_bytes):
            return False


def read(path: Path, skips: Counter[str], options: WudaoOptions | None = None) -> Iterator[Document]:
    """One Document per array element with a non-empty ``content``.

    Id ``wudao:<uniqueKey>`` (WuDao's content hash, stable and global); else ``wudao:<stem>:<index>``
    where index counts the elements that parsed (a broken element does not take a number).
    """
    opts = options or WudaoOptions()
    stem = file_stem(path)
    index = -1
    try:
        with open_binary(path) as f:
            buf = _Buffer(f, opts.chunk_bytes)
            for obj in _elements(buf, opts, skips):
                index += 1
                if not isinstance(obj, dict):
                    skips["invalid_record"] += 1
                    continue
                content = obj.get("content")
                if not isinstance(content, str):
                    skips["missing_field"] += 1
                    continue
                title = obj.get("title") if isinstance(obj.get("title"), str) else ""
                if not content.strip():
                    skips["empty_text"] += 1
                    continue
                key = obj.get("uniqueKey")
                doc_id = f"{SOURCE}:{key}" if isinstance(key, str) and key else f"{SOURCE}:{stem}:{index}"
                # The title is its own line unless the content already starts with it (common for news).
                text = content if not title.strip() or content.lstrip().startswith(title.strip()) else f"{title.strip()}\n{content}"
                meta = {"title": title, "dataType": obj.get("dataType"), "uniqueKey": key, "titleUkey": obj.get("titleUkey")}
                yield Document(doc_id, SOURCE, text, {k: v for k, v in meta.items() if v is not None})
    except STREAM_ERRORS:
        skips["truncated_input"] += 1
