"""One large file read by several tasks: byte ranges at bz2 stream boundaries of a Wikipedia multistream
dump (from its index) and at line boundaries of JSON lines — 1 task and N tasks give the same Documents."""

from __future__ import annotations

import bz2
import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wiki_dumps
from corpus.reader import InputError
from corpus.sources import byte_ranges, read_source, resolve_reader
from corpus.sources.wiki import WikiOptions, read_xml

NAME = "zhwiki-20240101-pages-articles-multistream"


def make_multistream(folder: Path, pages: int, per_stream: int, name: str = NAME, lang: str = "zh") -> Path:
    """A zh dump (tests/wiki_dumps.py) with talk pages (ns 1) and redirects among the articles."""
    def page(i: int) -> tuple[str, int, str]:
        text = "#REDIRECT [[X]]" if i % 11 == 5 else f"第{i}页：关于'''测试'''的条目，见[[链接{i}|标签]]。{{{{模板|{i}}}}}&lt;b&gt;"
        return f"页面:{i}", 1 if i % 7 == 3 else 0, text

    return wiki_dumps.make_multistream(folder, name, pages, per_stream, page, lang, "维基百科", "zhwiki",
                                       text_attrs=' bytes="9"')


def read_ranges(layout: str, path: Path, ranges: list[tuple[int, int]], **options) -> tuple[list, Counter[str]]:
    skips: Counter[str] = Counter()
    docs = []
    for start, end in ranges:
        docs += list(read_source(layout, [path], skips, byte_range=[start, end], **options))
    return docs, skips


def blank_outside(path: Path, start: int, end: int, out: Path) -> Path:
    """A copy of ``path`` whose bytes outside ``[start, end)`` are zeros: a reader that reads them fails."""
    data = bytearray(path.read_bytes())
    data[:start] = bytes(start)
    data[end:] = bytes(len(data) - end)
    out.write_bytes(bytes(data))
    return out


def test_multistream_dump_1_and_4_tasks_read_the_same_documents(tmp_path: Path) -> None:
    dump = make_multistream(tmp_path, pages=64, per_stream=5)
    whole_skips: Counter[str] = Counter()
    whole = list(read_xml(dump, whole_skips))
    assert len(whole) == 64 - 9 - 5 and whole_skips == Counter(not_article_namespace=9, redirect=5)
    assert whole[0].id == "wiki_zh:1000" and whole[0].text == "第0页：关于测试的条目，见标签。"
    one = byte_ranges("wiki", dump, 1)
    assert one == [(0, dump.stat().st_size)]
    four = byte_ranges("wiki", dump, 4)
    assert len(four) == 4 and four[0][0] == 0 and four[-1][1] == dump.stat().st_size
    assert all(a < b and b == c for (a, b), (c, _) in zip(four, four[1:]))
    offsets = {int(line.split(b":")[0]) for line in bz2.decompress((tmp_path / f"{NAME}-index.txt.bz2").read_bytes()).splitlines()}
    assert {a for a, _ in four[1:]} <= offsets          # every cut is a stream start from the index
    for ranges in (one, four):
        docs, skips = read_ranges("wiki", dump, ranges)
        assert docs == whole and skips == whole_skips
    # each task decompresses only its own streams: zeroing every byte outside its range changes nothing
    for k, (start, end) in enumerate(four):
        expected = list(read_xml(dump, Counter(), WikiOptions(byte_range=[start, end])))
        assert expected, k
        folder = tmp_path / f"task{k}"
        folder.mkdir()
        alone = blank_outside(dump, start, end, folder / dump.name)
        skips: Counter[str] = Counter()
        assert list(read_xml(alone, skips, WikiOptions(byte_range=[start, end]))) == expected and not skips.get("truncated_input"), k


def test_multistream_lang_from_the_header_stream_when_the_name_has_none(tmp_path: Path) -> None:
    dump = make_multistream(tmp_path, pages=12, per_stream=3, name="dump-multistream", lang="en")
    ranges = byte_ranges("wiki", dump, 3)
    assert len(ranges) == 3
    docs, _ = read_ranges("wiki", dump, ranges)
    assert docs == list(read_xml(dump, Counter())) and {d.source for d in docs} == {"wiki_en"}


def test_multistream_many_tasks_fewer_streams_and_bad_ranges(tmp_path: Path) -> None:
    dump = make_multistream(tmp_path, pages=10, per_stream=5)      # header, 2 page streams, footer
    ranges = byte_ranges("wiki", dump, 16)
    assert len(ranges) == 2                                         # only one cut point between page streams
    whole = list(read_xml(dump, Counter()))
    assert read_ranges("wiki", dump, ranges)[0] == whole
    # a range that ends inside a stream is a cut input, counted
    start, end = ranges[1]
    skips: Counter[str] = Counter()
    list(read_xml(dump, skips, WikiOptions(byte_range=[start, end - 20])))
    assert skips["truncated_input"] == 1


def test_multistream_without_index_or_with_a_wrong_one(tmp_path: Path) -> None:
    dump = make_multistream(tmp_path, pages=10, per_stream=2)
    index = tmp_path / f"{NAME}-index.txt.bz2"
    plain = tmp_path / "other" / "zhwiki-x-pages-articles.xml.bz2"
    plain.parent.mkdir()
    plain.write_bytes(bz2.compress(bz2.decompress(dump.read_bytes())))
    assert byte_ranges("wiki", plain, 4) is None                    # not multistream, no index: one task
    assert byte_ranges("wiki", tmp_path / "x.xml", 4) is None
    lines = bz2.decompress(index.read_bytes()).decode().splitlines()
    shifted = tmp_path / "shifted-index.txt"
    shifted.write_text("\n".join(f"{int(l.split(':')[0]) + 3}:{l.split(':', 1)[1]}" for l in lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="does not start a bz2 stream.*the index does not belong to this dump"):
        byte_ranges("wiki", dump, 3, {"index": str(shifted)})
    broken = tmp_path / "broken-index.txt"
    broken.write_text(lines[0] + "\nnot an index line\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"broken-index.txt:2: not a multistream index line"):
        byte_ranges("wiki", dump, 3, {"index": str(broken)})
    with pytest.raises(InputError, match="byte_range needs a bz2 multistream dump"):
        list(read_xml(tmp_path / "a.xml", Counter(), WikiOptions(byte_range=[0, 5])))


# ---------------------------------------------------------------- JSON lines
def write_lines(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            if i % 9 == 4:
                f.write("{broken\n")
            elif i % 13 == 6:
                f.write("\n")
            else:
                f.write(json.dumps({"text": f"line {i} " + "字" * (i % 17), "meta": {"i": i}}, ensure_ascii=False) + "\n")
    return path


def test_json_lines_1_and_4_tasks_read_the_same_documents(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "big.jsonl", 200)
    whole, whole_skips = read_ranges("english", path, [(0, path.stat().st_size)])
    plain_skips: Counter[str] = Counter()
    assert whole == list(read_source("english", [path], plain_skips)) and whole_skips == plain_skips
    four = byte_ranges("english", path, 4)
    assert len(four) == 4 and four[0][0] == 0 and four[-1][1] == path.stat().st_size
    docs, skips = read_ranges("english", path, four)
    assert docs == whole and skips == whole_skips
    assert [d.id for d in docs[:2]] == ["english:big:1", "english:big:2"]   # file-wide line numbers


def test_json_lines_range_boundary_exactly_on_a_newline_or_a_line_start(tmp_path: Path) -> None:
    path = tmp_path / "few.jsonl"
    path.write_bytes(b'{"text": "a"}\n{"text": "b"}\n{"text": "c"}\n')
    whole = read_ranges("english", path, [(0, path.stat().st_size)])[0]
    newline = path.read_bytes().index(b"\n")       # 13: the end of line 1
    for cut in (newline, newline + 1, newline - 1, 1, 0):
        docs, _ = read_ranges("english", path, [(0, cut), (cut, path.stat().st_size)])
        assert docs == whole, cut


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"")),
       cuts=st.lists(st.integers(0, 400), max_size=6))
def test_json_lines_any_cuts_read_every_line_once(tmp_path_factory, data: bytes, cuts: list[int]) -> None:
    """Arbitrary bytes (lines of any kind) cut at arbitrary offsets: the same Documents and skips as one read."""
    path = tmp_path_factory.mktemp("jl") / "x.jsonl"
    lines = [json.dumps({"text": f"t{i}"}).encode() if i % 2 else piece for i, piece in enumerate(data.split(b"\n"))]
    path.write_bytes(b"\n".join(lines))
    size = path.stat().st_size
    edges = sorted({0, size, *(c for c in cuts if c < size)})
    ranges = list(zip(edges, edges[1:])) or [(0, 0)]
    assert read_ranges("english", path, ranges) == read_ranges("english", path, [(0, size)])


def test_json_lines_cannot_split_compressed_or_json_text(tmp_path: Path) -> None:
    gz = tmp_path / "x.jsonl.bz2"
    gz.write_bytes(bz2.compress(b'{"text": "a"}\n'))
    assert byte_ranges("english", gz, 4) is None
    pretty = tmp_path / "p.json"
    pretty.write_text('[\n  {"text": "a"}\n]\n', encoding="utf-8")
    assert byte_ranges("json", pretty, 4) is None
    assert byte_ranges("wudao", pretty, 4) is None
    assert resolve_reader("github").split == "lines" and byte_ranges("github", tmp_path, 2) is None   # a repository
    with pytest.raises(InputError, match="byte_range needs an uncompressed file"):
        read_ranges("english", gz, [(0, 5)])
    with pytest.raises(InputError, match="byte_range needs JSON lines"):
        read_ranges("json", pretty, [(0, 5)])
