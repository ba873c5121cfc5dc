"""Wikipedia (zh and en): MediaWiki XML dumps and WikiExtractor-style JSON lines.

XML dumps (``pages-articles.xml.bz2``, tens of GB uncompressed) are streamed with ``iterparse``: each
``<page>`` is handled at its end event and then cleared, and the root's reference to it is dropped,
so memory holds one page at a time. Only namespace 0 (articles) is kept and redirects are skipped;
wikitext is reduced to prose by :mod:`corpus.sources.wikitext`.

Multistream dumps (``pages-articles-multistream.xml.bz2``: bz2 streams of 100 pages each, the first
holding the ``<mediawiki>`` header and ``<siteinfo>``, the last the closing tag; the index
``…-multistream-index.txt.bz2`` gives each page's stream offset) split into prepare tasks at stream
boundaries (:func:`corpus.sources.splits.byte_ranges`): with ``byte_range: [start, end]`` the reader
seeks to ``start`` and decompresses only the streams in ``[start, end)``. A range after the first is a
run of whole ``<page>`` elements with no root: it is parsed inside a stand-in root, and the root left
open at a range's end is closed, so every range parses on its own and the pages of the ranges, in
order, are the pages of the whole dump.

zh Wikipedia mixes Traditional and Simplified text; CaMA trains on Simplified, so ``to_simplified``
converts text and title with an OpenCC profile (:mod:`corpus.sources.simplify`: ``true`` is ``t2s``;
``tw2s``/``tw2sp``/``hk2s``… for Taiwan and Hong Kong text; any source can do the same with the
source-level ``to_simplified`` key).

``tables``: ``drop`` (the default) removes tables, ``text`` keeps each row as a line of its cells joined
by " | " (see :mod:`corpus.sources.wikitext`). Dropping is the default because a table's rows are not
prose: kept, they are short lines of numbers and names that the line-based quality rules count
against the whole article (a long table can get the article's prose rejected with it); WikiExtractor,
the usual dump-to-text tool, drops them too.
"""

from __future__ import annotations

import bz2
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

from corpus.document import Document
from corpus.reader import STREAM_ERRORS, InputError, open_binary
from corpus.sources.common import file_stem, iter_records
from corpus.sources.options import JsonOptions, check_byte_range, record_id
from corpus.sources.simplify import converter, profile
from corpus.sources.wikitext import strip_wikitext

_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# "#REDIRECT" in every wiki; zh also uses "#重定向". Case-insensitive, leading spaces allowed.
_REDIRECT = re.compile(r"^\s*#\s*(redirect|重定向)\b", re.I)
_STEM_LANG = re.compile(r"^([a-z]{2,3})wiki")


_LANG_ATTR = re.compile(rb'xml:lang="([^"]+)"')
_READ = 1 << 16          # bytes read at a time (the parser holds the elements of one read until drained)
_OUT = 1 << 16           # decompressed bytes produced at a time (bounds memory on highly compressible streams)


@dataclass(frozen=True)
class WikiOptions:
    """Options of the ``wiki`` (XML dump) layout."""

    lang: str | None = None          # "zh"/"en"; None: from the file name ("zhwiki-…") or <mediawiki xml:lang>
    to_simplified: bool | str | None = False   # zh: an OpenCC profile (t2s, tw2s, tw2sp, hk2s, hk2sp); true = t2s
    tables: Literal["drop", "text"] = "drop"   # text: each table row as a line, cells joined by " | "
    byte_range: list[int] | None = None   # [start, end): the bz2 streams of one split of a multistream dump
    index: str | None = None         # the multistream index (byte_ranges); None: next to the dump, by name

    def __post_init__(self) -> None:
        object.__setattr__(self, "to_simplified", profile(self.to_simplified))
        check_byte_range(self.byte_range)
        if self.byte_range is not None:
            object.__setattr__(self, "byte_range", [int(self.byte_range[0]), int(self.byte_range[1])])


@dataclass(frozen=True)
class WikiJsonOptions(JsonOptions):
    """Options of the ``wiki_json`` (WikiExtractor JSON lines) layout."""

    lang: str | None = None
    to_simplified: bool | str | None = False   # an OpenCC profile, as for the XML layout

    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {"text": ("text",), "title": ("title",), "id": ("id",), "url": ("url",)}

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "to_simplified", profile(self.to_simplified))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return child.text or ""
    return None


def _find(elem: ET.Element, name: str) -> ET.Element | None:
    for child in elem:
        if _local(child.tag) == name:
            return child
    return None


def _lang_from_stem(path: Path) -> str | None:
    m = _STEM_LANG.match(file_stem(path))
    return m.group(1) if m else None


def _finish(text: str, title: str, opts: WikiOptions | WikiJsonOptions) -> tuple[str, str]:
    if opts.to_simplified:
        convert = converter(str(opts.to_simplified))
        return convert(text), convert(title)
    return text, title


def read_xml(path: Path, skips: Counter[str], options: WikiOptions | None = None) -> Iterator[Document]:
    """One Document per article page; id ``wiki_<lang>:<page id>``."""
    opts = options or WikiOptions()
    strip = partial(strip_wikitext, tables=opts.tables)
    lang = opts.lang or _lang_from_stem(path)
    byte_range = opts.byte_range
    if byte_range is not None and not path.name.endswith(".bz2"):
        raise InputError(f"{path}: byte_range needs a bz2 multistream dump (pages-articles-multistream.xml.bz2)")
    mid_file = byte_range is not None and byte_range[0] > 0
    if mid_file and lang is None:
        lang = _header_lang(path)     # the range has no root element: the first stream holds xml:lang
    root: ET.Element | None = None
    try:
        if byte_range is None:
            f = open_binary(path)
            chunks: Iterable[bytes] = iter(lambda: f.read(_READ), b"")
        else:
            f = open(path, "rb")
            chunks = _bz2_streams(f, byte_range[0], byte_range[1])
        with f:
            for event, elem in _xml_events(chunks, stand_in_root=mid_file, close_root=byte_range is not None):
                if event == "start":
                    if root is None:
                        root = elem
                        lang = lang or root.get(_XML_LANG)
                    continue
                if _local(elem.tag) != "page":
                    continue
                doc = _page(elem, path, lang or "xx", opts, skips, strip)
                # clear the page and detach it from the root so finished pages do not accumulate
                elem.clear()
                if root is not None:
                    root.clear()
                if doc is not None:
                    yield doc
    except ET.ParseError:
        skips["invalid_xml"] += 1      # the rest of the file cannot be parsed reliably
    except STREAM_ERRORS:
        skips["truncated_input"] += 1


def _xml_events(chunks: Iterable[bytes], stand_in_root: bool, close_root: bool) -> Iterator[tuple[str, ET.Element]]:
    """``(event, element)`` for start and end events of the XML in ``chunks``, parsed incrementally.

    ``stand_in_root``: the data is a run of elements without a root (a range of a multistream dump), so a
    bare ``<mediawiki>`` is put around it. ``close_root``: a root still open when the data ends is closed
    (a range ends before the dump does) instead of being a parse error.
    """
    parser = ET.XMLPullParser(events=("start", "end"))
    root: ET.Element | None = None
    closed = False

    def drain() -> Iterator[tuple[str, ET.Element]]:
        nonlocal root, closed
        for event, elem in parser.read_events():
            if root is None:
                root = elem
            elif event == "end" and elem is root:
                closed = True
            yield event, elem  # type: ignore[misc]

    if stand_in_root:
        parser.feed(b"<mediawiki>")
    for chunk in chunks:
        parser.feed(chunk)
        yield from drain()
    if close_root and root is not None and not closed:
        # a namespaced root is <mediawiki xmlns="…">: its closing tag is the plain local name
        parser.feed(f"</{_local(root.tag)}>".encode())
    parser.close()
    yield from drain()


def _bz2_streams(f: Any, start: int, end: int) -> Iterator[bytes]:
    """The decompressed bytes of the bz2 streams in ``[start, end)`` of ``f``, reading nothing outside it.

    Each stream is decompressed by its own decompressor (multistream = concatenated streams). A range
    that ends inside a stream raises EOFError (counted ``truncated_input`` by the caller), like a cut file.
    """
    f.seek(start)
    remaining = end - start
    d = bz2.BZ2Decompressor()
    fresh = True        # the current decompressor has not been fed yet
    pending = b""       # compressed bytes not yet given to a decompressor
    while True:
        if d.eof:
            pending = d.unused_data + pending
            d, fresh = bz2.BZ2Decompressor(), True
        if d.needs_input:
            if not pending:
                if remaining <= 0:
                    break
                pending = f.read(min(_READ, remaining))
                if not pending:
                    break
                remaining -= len(pending)
            data, pending = pending, b""
            fresh = False
        else:
            data = b""
        out = d.decompress(data, max_length=_OUT)
        if out:
            yield out
    if not fresh and not d.eof:
        raise EOFError(f"the byte range ends inside a bz2 stream (at byte {end})")


def _header_lang(path: Path) -> str | None:
    """``xml:lang`` of the ``<mediawiki>`` root, from the dump's first bz2 stream (a few KB: the header)."""
    try:
        with open(path, "rb") as f:
            head = b""
            for out in _bz2_streams(f, 0, 1 << 20):
                head += out
                at = head.find(b"<mediawiki")
                if len(head) > 65536 or (at >= 0 and b">" in head[at:]):
                    break
    except STREAM_ERRORS:
        return None
    start = head.find(b"<mediawiki")
    m = _LANG_ATTR.search(head, start, head.find(b">", start)) if start >= 0 else None
    return m.group(1).decode("ascii", "replace") if m else None


def _page(page: ET.Element, path: Path, lang: str, opts: WikiOptions | WikiJsonOptions, skips: Counter[str], strip: Callable[..., str]) -> Document | None:
    title = _child_text(page, "title")
    ns = _child_text(page, "ns")
    page_id = _child_text(page, "id")
    revision = _find(page, "revision")
    raw = _child_text(revision, "text") if revision is not None else None
    if title is None or page_id is None or raw is None:
        skips["missing_field"] += 1
        return None
    if (ns or "0").strip() != "0":
        skips["not_article_namespace"] += 1
        return None
    if _find(page, "redirect") is not None or _REDIRECT.match(raw):
        skips["redirect"] += 1
        return None
    try:
        text = strip(raw, lang=lang)
    except (RecursionError, ValueError, IndexError):
        # absurdly deep nesting, or a template argument no renderer foresaw, in one page: skip the page,
        # not the dump
        skips["unparsable_markup"] += 1
        return None
    if not text.strip():
        skips["empty_text"] += 1
        return None
    text, title = _finish(text, title, opts)
    source = f"wiki_{lang}"
    return Document(f"{source}:{page_id.strip()}", source, text, {"title": title, "page_id": page_id.strip(), "lang": lang})


def read_json(path: Path, skips: Counter[str], options: WikiJsonOptions | WikiOptions | None = None) -> Iterator[Document]:
    """WikiExtractor JSON lines ``{id, url, title, text}`` (text already prose); id ``wiki_<lang>:<id>``."""
    if options is None or isinstance(options, WikiJsonOptions):
        opts = options or WikiJsonOptions()
    else:   # the XML layout's options, as callers passed them before the layouts had their own
        opts = WikiJsonOptions(lang=options.lang, to_simplified=options.to_simplified)
    lang = opts.lang or _lang_from_stem(path) or "xx"
    source = f"wiki_{lang}"
    for lineno, obj in iter_records(path, skips, opts):
        text = opts.get_str(obj, "text")
        title = opts.get_str(obj, "title") or ""
        if text is None:
            skips["missing_field"] += 1
            continue
        if not text.strip():
            skips["empty_text"] += 1
            continue
        own = record_id(opts.get(obj, "id"))
        doc_id = f"{source}:{own}" if own else f"{source}:{file_stem(path)}:{lineno}"
        text, title = _finish(text, title, opts)
        meta = {"title": title, "lang": lang}
        url = opts.get_str(obj, "url")
        if url is not None:
            meta["url"] = url
        yield Document(doc_id, source, text, meta)
