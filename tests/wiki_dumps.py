"""Wikipedia dumps in Wikimedia's multistream shape, made by the tests that split them.

Stream 0 holds the header and siteinfo, then bz2 streams of ``per_stream`` whole pages, then one holding
``</mediawiki>``; the index (bz2) lists ``offset:page_id:title`` for every page, the offset being that
of the stream holding it. What a page contains is the caller's: ``page(i) -> (title, ns, text)``.
"""

from __future__ import annotations

import bz2
from collections.abc import Callable
from pathlib import Path


def make_multistream(folder: Path, name: str, pages: int, per_stream: int, page: Callable[[int], tuple[str, int, str]],
                     lang: str, sitename: str, dbname: str, text_attrs: str = "") -> Path:
    header = (f'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" xml:lang="{lang}">\n'
              f'  <siteinfo><sitename>{sitename}</sitename><dbname>{dbname}</dbname></siteinfo>\n').encode()
    streams = [bz2.compress(header)]
    index: list[str] = []
    offset = len(streams[0])
    for first in range(0, pages, per_stream):
        chunk = []
        for i in range(first, min(pages, first + per_stream)):
            pid = 1000 + i
            title, ns, text = page(i)
            chunk.append(f"  <page>\n    <title>{title}</title>\n    <ns>{ns}</ns>\n    <id>{pid}</id>\n"
                         f"    <revision>\n      <id>{pid * 10}</id>\n      <text{text_attrs} xml:space=\"preserve\">"
                         f"{text}</text>\n    </revision>\n  </page>\n")
            index.append(f"{offset}:{pid}:{title}\n")
        data = bz2.compress("".join(chunk).encode())
        streams.append(data)
        offset += len(data)
    streams.append(bz2.compress(b"</mediawiki>\n"))
    dump = folder / f"{name}.xml.bz2"
    dump.write_bytes(b"".join(streams))
    (folder / f"{name}-index.txt.bz2").write_bytes(bz2.compress("".join(index).encode()))
    return dump
