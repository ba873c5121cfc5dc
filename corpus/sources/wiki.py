"""Wikipedia (zh and en): MediaWiki XML dumps and WikiExtractor-style JSON lines.

XML dumps (``pages-articles.xml.bz2``, tens of GB uncompressed) are streamed with ``iterparse``: each
``<page>`` is handled at its end event and then cleared, and the root's reference to it is dropped,
so memory holds one page at a time. Only namespace 0 (articles) is kept and redirects are skipped;
wikitext is reduced to prose by :mod:`corpus.sources.wikitext`.

zh Wikipedia mixes Traditional and Simplified text; CaMA trains on Simplified, so ``to_simplified``
converts with OpenCC's ``t2s`` profile (the maintained converter, phrase-aware — not a char table).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from corpus.document import Document
from corpus.reader import STREAM_ERRORS, open_binary
from corpus.sources.common import file_stem, get_str, iter_json_records

_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# "#REDIRECT" in every wiki; zh also uses "#重定向". Case-insensitive, leading spaces allowed.
_REDIRECT = re.compile(r"^\s*#\s*(redirect|重定向)\b", re.I)
_STEM_LANG = re.compile(r"^([a-z]{2,3})wiki")


@dataclass(frozen=True)
class WikiOptions:
    lang: str | None = None          # "zh"/"en"; None: from <mediawiki xml:lang> or the file name ("zhwiki-…")
    to_simplified: bool = False      # zh: Traditional → Simplified with OpenCC t2s


@lru_cache(maxsize=1)
def _t2s() -> Callable[[str], str]:
    """The OpenCC converter, built once per process (loading its dictionaries costs ~10 ms)."""
    import opencc  # imported lazily: only zh builds with to_simplified need it

    return opencc.OpenCC("t2s").convert


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


def _finish(text: str, title: str, opts: WikiOptions) -> tuple[str, str]:
    if opts.to_simplified:
        convert = _t2s()
        return convert(text), convert(title)
    return text, title


def read_xml(path: Path, skips: Counter[str], options: WikiOptions | None = None) -> Iterator[Document]:
    """One Document per article page; id ``wiki_<lang>:<page id>``."""
    from corpus.sources.wikitext import strip_wikitext

    opts = options or WikiOptions()
    lang = opts.lang or _lang_from_stem(path)
    root: ET.Element | None = None
    try:
        with open_binary(path) as f:
            for event, elem in ET.iterparse(f, events=("start", "end")):
                if event == "start":
                    if root is None:
                        root = elem
                        lang = lang or root.get(_XML_LANG)
                    continue
                if _local(elem.tag) != "page":
                    continue
                doc = _page(elem, path, lang or "xx", opts, skips, strip_wikitext)
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


def _page(page: ET.Element, path: Path, lang: str, opts: WikiOptions, skips: Counter[str], strip: Callable[[str], str]) -> Document | None:
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
        text = strip(raw)
    except RecursionError:   # absurdly deep nesting in one page: skip the page, not the dump
        skips["unparsable_markup"] += 1
        return None
    if not text.strip():
        skips["empty_text"] += 1
        return None
    text, title = _finish(text, title, opts)
    source = f"wiki_{lang}"
    return Document(f"{source}:{page_id.strip()}", source, text, {"title": title, "page_id": page_id.strip(), "lang": lang})


def read_json(path: Path, skips: Counter[str], options: WikiOptions | None = None) -> Iterator[Document]:
    """WikiExtractor JSON lines ``{id, url, title, text}`` (text already prose); id ``wiki_<lang>:<id>``."""
    opts = options or WikiOptions()
    lang = opts.lang or _lang_from_stem(path) or "xx"
    source = f"wiki_{lang}"
    for lineno, obj in iter_json_records(path, skips):
        text = get_str(obj, "text")
        title = get_str(obj, "title") or ""
        if text is None:
            skips["missing_field"] += 1
            continue
        if not text.strip():
            skips["empty_text"] += 1
            continue
        own: Any = obj.get("id")
        doc_id = f"{source}:{own}" if isinstance(own, (str, int)) and str(own).strip() else f"{source}:{file_stem(path)}:{lineno}"
        text, title = _finish(text, title, opts)
        meta = {"title": title, "lang": lang}
        if isinstance(obj.get("url"), str):
            meta["url"] = obj["url"]
        yield Document(doc_id, source, text, meta)
