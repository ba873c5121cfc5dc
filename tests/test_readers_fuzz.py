"""Every reader on bad input: arbitrary bytes, corrupted samples, JSON nested thousands deep, the wrong
text encoding, compressed files cut short. No exception escapes a reader; bad input is counted in skips.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections import Counter
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus.document import Document
from corpus.sources import READERS, resolve_reader

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "sources"

# layout -> (a sample file of it, the file name its inputs have, a valid record in its shape)
SAMPLES: dict[str, tuple[Path, str, bytes]] = {
    "baike": (DATA / "baike" / "baike_sample.jsonl", "x.jsonl", '{"title": "标题", "content": "正文内容"}'.encode()),
    "wudao": (DATA / "wudao" / "part-2021001.json", "x.json", '{"uniqueKey": "k", "title": "标题", "content": "正文"}'.encode()),
    "wiki": (DATA / "wiki" / "zhwiki-sample-pages-articles.xml", "zhwiki-x.xml", b""),
    "wiki_json": (DATA / "wiki_json" / "zhwiki_extracted.jsonl", "zhwiki-x.jsonl", '{"id": 1, "title": "t", "text": "正文"}'.encode()),
    "english": (DATA / "english" / "en_mix.jsonl", "x.jsonl", b'{"text": "some text"}'),
    "github": (DATA / "github" / "code.jsonl", "x.jsonl", b'{"repo": "r", "path": "a.py", "content": "x = 1\\nprint(x)\\n"}'),
    "leetcode": (DATA / "leetcode" / "problems.jsonl", "x.jsonl", b'{"id": 1, "title": "T", "content": "<p>s</p>"}'),
    "json": (DATA / "json" / "articles.json", "x.json", b'{"text": "body"}'),
    "jsonl": (DATA / "json" / "posts.jsonl", "x.jsonl", b'{"text": "body"}'),
}
FAST = {"wudao": {"chunk_bytes": 7}, "json": {"chunk_bytes": 7}}   # small refills: exercise straddling too


def read_all(layout: str, path: Path) -> tuple[list[Document], Counter[str]]:
    spec = resolve_reader(layout)
    skips: Counter[str] = Counter()
    docs = list(spec.call(path, skips, spec.options(FAST.get(layout, {}))))
    for doc in docs:
        assert isinstance(doc, Document) and isinstance(doc.text, str) and doc.text.strip() and isinstance(doc.id, str)
    return docs, skips


def test_every_reader_is_fuzzed() -> None:
    assert set(SAMPLES) == set(READERS)


@pytest.mark.parametrize("layout", sorted(SAMPLES))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_arbitrary_and_corrupted_bytes_never_raise(tmp_path: Path, layout: str, data: st.DataObject) -> None:
    sample, name, _ = SAMPLES[layout]
    raw = sample.read_bytes()
    if data.draw(st.booleans(), "from the sample"):
        buf = bytearray(raw[: data.draw(st.integers(0, len(raw)), "cut")])
        for pos, byte in data.draw(st.lists(st.tuples(st.integers(0, max(0, len(buf) - 1)),
                                                      st.sampled_from(list(b'{}[],":\\<>/&\n\x00\xff x'))), max_size=6), "edits"):
            if pos < len(buf):
                buf[pos] = byte
        content = bytes(buf)
    else:
        content = data.draw(st.binary(max_size=400), "bytes")
    path = tmp_path / name
    path.write_bytes(content)
    read_all(layout, path)


def _json_file(layout: str, records: list[bytes]) -> bytes:
    if layout in ("wudao", "json"):
        return b"[" + b",\n".join(records) + b"]"
    return b"\n".join(records) + b"\n"


@pytest.mark.parametrize("layout", sorted(set(SAMPLES) - {"wiki"}))
@pytest.mark.parametrize("bomb", [b"[" * 5000, b'{"a":' * 4000, b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"])
def test_deeply_nested_record_is_skipped_and_counted(tmp_path: Path, layout: str, bomb: bytes) -> None:
    _, name, good = SAMPLES[layout]
    path = tmp_path / name
    path.write_bytes(_json_file(layout, [good, bomb, good]))
    docs, skips = read_all(layout, path)
    assert skips["invalid_json"] >= 1, skips
    assert len(docs) >= (1 if layout in ("wudao", "json") else 2)   # the records around it are still read


def test_deeply_nested_xml_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "zhwiki-x.xml"
    page = "<page><title>T</title><ns>0</ns><id>{}</id><revision><text>{}</text></revision></page>"
    path.write_text("<mediawiki>" + page.format(1, "正文") + page.format(2, "{{" * 20000 + "[[" * 20000) +
                    "<page>" + "<x>" * 5000 + "</x>" * 5000 + "</page>" + page.format(3, "再一页") + "</mediawiki>", encoding="utf-8")
    docs, skips = read_all("wiki", path)
    assert [d.id for d in docs] == ["wiki_zh:1", "wiki_zh:3"] and skips["missing_field"] == 1


@pytest.mark.parametrize("layout", sorted(set(SAMPLES) - {"wiki"}))
@pytest.mark.parametrize("encoding", ["gbk", "utf-16", "latin-1", "utf-32"])
def test_wrong_text_encoding_never_raises(tmp_path: Path, layout: str, encoding: str) -> None:
    _, name, good = SAMPLES[layout]
    text = good.decode("utf-8").replace("some text", "café naïve").replace("body", "résumé")
    path = tmp_path / name
    try:
        path.write_bytes(_json_file(layout, [text.encode(encoding, "replace")] * 2))
    except LookupError:
        pytest.skip(encoding)
    docs, skips = read_all(layout, path)
    # each record is either read (json.loads detects UTF-16/32 by its BOM; latin-1/GBK bytes inside a
    # JSON array are replaced by U+FFFD) or counted: never silently lost
    assert len(docs) + sum(skips.values()) >= 1, (docs, skips)


@pytest.mark.parametrize("encoding", ["gbk", "utf-16"])
def test_wiki_wrong_encoding_never_raises(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "zhwiki-x.xml"
    path.write_bytes(SAMPLES["wiki"][0].read_text(encoding="utf-8").encode(encoding, "replace"))
    read_all("wiki", path)


COMPRESSORS = {
    ".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
    ".zst": lambda b: zstandard.ZstdCompressor().compress(b),
}


@pytest.mark.parametrize("layout", sorted(SAMPLES))
@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_truncated_compressed_input_is_counted(tmp_path: Path, layout: str, suffix: str) -> None:
    sample, name, _ = SAMPLES[layout]
    packed = COMPRESSORS[suffix](sample.read_bytes() * 3)
    full, _ = read_all(layout, _write(tmp_path / "full" / (name + suffix), packed))
    for cut in sorted({1, 7, len(packed) // 3, len(packed) // 2, len(packed) - 9, len(packed) - 1}):
        docs, skips = read_all(layout, _write(tmp_path / f"cut{cut}" / (name + suffix), packed[:cut]))
        assert sum(skips.values()) >= 1, (cut, skips)       # the cut is noticed, never silent
        assert len(docs) <= len(full)


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
