"""Source readers (corpus/sources/) on the hand-written samples in examples/data/sources/.

Each test checks documents (ids, text) and skip counts by reason; the Wudao tests also check
incremental parsing across buffer boundaries and bounded memory on a large generated array.
"""

from __future__ import annotations

import bz2
import gzip
import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from corpus.document import Document
from corpus.reader import InputError
from corpus.sources import READERS, expand, read_source
from corpus.sources import github as gh
from corpus.sources.wikitext import strip_wikitext
from corpus.sources.wudao import WudaoOptions
from corpus.sources.wudao import read as read_wudao

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "sources"


def run(layout: str, paths: list[Path | str], **options) -> tuple[list[Document], Counter[str]]:
    skips: Counter[str] = Counter()
    docs = list(read_source(layout, paths, skips, **options))
    return docs, skips


# ---------------------------------------------------------------- baike / english
def test_baike_both_layouts() -> None:
    docs, skips = run("baike", [DATA / "baike"])
    assert [d.id for d in docs] == ["baike:baike_sample:1", "baike:baike_sample:2"]
    assert docs[0].text == "大熊猫\n大熊猫是中国特有的哺乳动物，以竹子为主要食物。\n形态特征\n体色黑白相间，头圆尾短。[1]\n栖息环境\n多生活在海拔较高的山地竹林中。"
    assert "空段落" not in docs[0].text  # heading of an empty section dropped
    assert docs[1].text.startswith("长江\n长江是亚洲第一长河")
    assert all(d.source == "baike" and d.meta["title"] for d in docs)
    assert skips == Counter(invalid_json=1, missing_field=1, empty_text=1, invalid_record=1)


def test_english() -> None:
    docs, skips = run("english", [DATA / "english" / "en_mix.jsonl"])
    assert [d.id for d in docs] == ["english:en_mix:1", "english:en_mix:2", "english:en_mix:6"]
    assert docs[0].meta == {"source": "books", "lang": "en"}
    assert docs[2].meta == {}
    assert skips == Counter(invalid_json=1, missing_field=1, empty_text=1)


def test_compressed_jsonl_and_truncated_stream(tmp_path: Path) -> None:
    raw = (DATA / "english" / "en_mix.jsonl").read_bytes()
    good = tmp_path / "en_mix.jsonl.bz2"
    good.write_bytes(bz2.compress(raw))
    docs, _ = run("english", [good])
    assert [d.id for d in docs] == ["english:en_mix:1", "english:en_mix:2", "english:en_mix:6"]  # stem drops .jsonl.bz2
    cut = tmp_path / "cut.jsonl.gz"   # gzip decodes incrementally, so lines before the cut come out
    cut.write_bytes(gzip.compress(raw * 50)[:-40])
    docs, skips = run("english", [cut])
    assert skips["truncated_input"] == 1 and len(docs) > 0


# ---------------------------------------------------------------- wudao
def test_wudao_broken_element_and_straddling_buffers() -> None:
    expected = ["wudao:uk0000", "wudao:uk0001", "wudao:uk0003"]
    results = []
    for chunk in (1, 3, 7, 64, 1 << 20):   # 1 byte: every element and multibyte char straddles a refill
        skips: Counter[str] = Counter()
        docs = list(read_wudao(DATA / "wudao" / "part-2021001.json", skips, WudaoOptions(chunk_bytes=chunk)))
        assert [d.id for d in docs] == expected, chunk
        assert skips == Counter(invalid_json=1, empty_text=1), chunk
        results.append(docs)
    assert all(r == results[0] for r in results)
    docs = results[0]
    assert docs[0].text == "春季养生小常识\n春天气温变化大，早晚要注意添加衣物，饮食宜清淡。"
    assert docs[1].text.startswith("城市公交线路调整：")  # title not repeated when content starts with it
    assert docs[2].text == "没有标题的短文，也应当被保留下来。"
    assert docs[0].meta["dataType"] == "博客"


def test_wudao_truncated_and_not_array(tmp_path: Path) -> None:
    full = (DATA / "wudao" / "part-2021001.json").read_text(encoding="utf-8")
    cut = tmp_path / "cut.json"
    cut.write_text(full[: full.index("uk0003") + 20], encoding="utf-8")
    skips: Counter[str] = Counter()
    docs = list(read_wudao(cut, skips, WudaoOptions(chunk_bytes=5)))
    assert [d.id for d in docs] == ["wudao:uk0000", "wudao:uk0001"]
    assert skips == Counter(invalid_json=1, truncated_input=1)
    obj = tmp_path / "obj.json"
    obj.write_text('{"id": 1}', encoding="utf-8")
    skips = Counter()
    assert list(read_wudao(obj, skips)) == [] and skips == Counter(invalid_json=1)


def test_wudao_oversized_element_is_skipped(tmp_path: Path) -> None:
    elems = [{"uniqueKey": "a", "content": "x" * 5000}, {"uniqueKey": "b", "content": "short"}]
    path = tmp_path / "big.json"
    path.write_text(json.dumps(elems), encoding="utf-8")
    skips: Counter[str] = Counter()
    docs = list(read_wudao(path, skips, WudaoOptions(chunk_bytes=256, max_element_bytes=1000)))
    assert [d.id for d in docs] == ["wudao:b"] and skips == Counter(invalid_json=1)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from collections import Counter
    from pathlib import Path
    from corpus.sources.wudao import read, WudaoOptions
    path = Path(sys.argv[1])
    # Peak RSS of the read alone: ru_maxrss cannot be reset and already holds the imports' transient
    # peak (which would hide growth), so reset the kernel's high-water mark (VmHWM) and read it after.
    status = lambda key: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS:")
    skips = Counter()
    n = chars = 0
    for doc in read(path, skips, WudaoOptions(chunk_bytes=1 << 16)):
        n += 1
        chars += len(doc.text)
    after = status("VmHWM:")
    print(json.dumps({"n": n, "skips": dict(skips), "growth_kb": after - before, "chars": chars}))
    """
)


def test_wudao_memory_bounded_on_large_array(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    element = {"id": 0, "uniqueKey": "", "titleUkey": "t", "dataType": "博客", "title": "标题", "content": "内容丰富的段落。" * 130}
    with path.open("w", encoding="utf-8") as f:   # ~55 MB array, written in pieces (this process stays small too)
        f.write("[")
        for i in range(17000):
            element["id"], element["uniqueKey"] = i, f"k{i}"
            f.write(("," if i else "") + json.dumps(element, ensure_ascii=False))
        f.write("]")
    size = path.stat().st_size
    assert size > 50_000_000
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(path)],
        capture_output=True, text=True, check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    result = json.loads(out.stdout)
    assert result["n"] == 17000 and result["skips"] == {}
    # KiB; json.load of the file would grow RSS by >1.4x its size
    assert result["growth_kb"] * 1024 < size / 10, result


# ---------------------------------------------------------------- wiki
ZH_XML = DATA / "wiki" / "zhwiki-sample-pages-articles.xml"
EN_BZ2 = DATA / "wiki" / "enwiki-sample-pages-articles.xml.bz2"


def test_wiki_zh_xml_to_simplified() -> None:
    docs, skips = run("wiki", [ZH_XML], to_simplified=True)
    assert [d.id for d in docs] == ["wiki_zh:101"]
    text = docs[0].text
    assert text == "台北是一座位于台湾北部的城市，也是重要的经济中心。\n历史\n早期这里是平原与河流交会之地。"
    assert docs[0].meta["title"] == "台北"
    for leftover in ("{{", "}}", "{|", "|}", "[[", "]]", "<ref", "'''", "<!--", "cite", "夜景", "分类", "城市]]", "1990"):
        assert leftover not in text, leftover
    # 2 redirects (<redirect/> element and "#重定向" text), Talk + Template namespaces, a page left empty
    assert skips == Counter(redirect=2, not_article_namespace=2, empty_text=1)


def test_wiki_zh_keeps_traditional_without_option() -> None:
    docs, _ = run("wiki", [ZH_XML])
    assert docs[0].text.startswith("臺北是一座位於臺灣北部的城市") and "經濟中心" in docs[0].text


def test_wiki_en_bz2_stream() -> None:
    docs, skips = run("wiki", [EN_BZ2])
    assert [d.id for d in docs] == ["wiki_en:7"]
    assert docs[0].text == "Exampleton is a town on the river known for its annual fair.\nEconomy\nFarming\nTourism, see the visitor guide."
    assert skips == Counter(redirect=1, not_article_namespace=1)


def test_wiki_generated_bz2_and_truncated(tmp_path: Path) -> None:
    xml = ZH_XML.read_bytes()
    path = tmp_path / "zhwiki-x-pages-articles.xml.bz2"
    path.write_bytes(bz2.compress(xml))
    docs, _ = run("wiki", [tmp_path])   # a directory: its .xml.bz2 files
    assert [d.id for d in docs] == ["wiki_zh:101"]
    cut = tmp_path / "cut" / "zhwiki-cut.xml.bz2"
    cut.parent.mkdir()
    cut.write_bytes(bz2.compress(xml)[:-30])
    docs, skips = run("wiki", [cut])
    assert skips["truncated_input"] + skips["invalid_xml"] == 1


def test_wikitext_hard_cases() -> None:
    src = (
        "{{Infobox|a={{b|{{c}}}}|img=[[File:x.png]]}}'''Bold''' and ''it'' [[Target page|label kept]] [[Plain]]s."
        "<ref name=r>{{cite|x}}</ref><ref name=r /><!-- comment -->\n"
        "[[File:Pic.jpg|thumb|caption with [[Nested|link]] and [[another]]]]\n"
        "[[Image:Other.png]][[Category:Things]][[文件:图.png|缩略图|[[链接]]]][[分类:事物]]\n"
        "== Heading ==\n* item one\n# item two\n{|\n| cell {{t}}\n|}\n"
        "See [http://example.com the site] and [[:Category:Things|the category]].\n"
        "Unbalanced {{ brace stays harmless.\n"
        "== Empty ==\n"
    )
    out = strip_wikitext(src)
    assert out == (
        "Bold and it label kept Plains.\nHeading\nitem one\nitem two\n"
        "See the site and the category.\nUnbalanced brace stays harmless."
    )


WIKI_MEMORY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from collections import Counter
    from pathlib import Path
    from corpus.sources.wiki import read_xml
    # Peak RSS of the read alone: ru_maxrss cannot be reset and already holds the imports' transient
    # peak (which would hide growth), so reset the kernel's high-water mark (VmHWM) and read it after.
    status = lambda key: next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS:")
    skips = Counter()
    n = sum(1 for _ in read_xml(Path(sys.argv[1]), skips))
    after = status("VmHWM:")
    print(json.dumps({"n": n, "skips": dict(skips), "growth_kb": after - before}))
    """
)


def test_wiki_xml_streams_with_bounded_memory(tmp_path: Path) -> None:
    # uncompressed: bz2 streaming is covered above, and compressing 15 MB here would take seconds
    path = tmp_path / "enwiki-big-pages-articles.xml"
    body = ("Plain prose in a long paragraph, as most of an article is. " * 20 + "[[link|label]] {{tmpl|x}}\n") * 8
    with path.open("w", encoding="utf-8") as f:
        f.write('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" xml:lang="en">\n')
        for i in range(1500):
            f.write(f"<page><title>P{i}</title><ns>0</ns><id>{i}</id><revision><id>1</id><text>{body}</text></revision></page>\n")
        f.write("</mediawiki>\n")
    size = path.stat().st_size   # ~15 MB
    out = subprocess.run(
        [sys.executable, "-c", WIKI_MEMORY_SCRIPT, str(path)],
        capture_output=True, text=True, check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    result = json.loads(out.stdout)
    assert result["n"] == 1500 and result["skips"] == {}
    assert result["growth_kb"] * 1024 < size / 5, (result, size)   # without clearing pages: growth > size


def test_wiki_json() -> None:
    docs, skips = run("wiki_json", [DATA / "wiki_json"], to_simplified=True)
    assert [d.id for d in docs] == ["wiki_zh:13", "wiki_zh:16"]
    assert docs[0].text == "数学是研究数量、结构以及空间等概念的学科。" and docs[0].meta["title"] == "数学"
    assert docs[0].meta["url"].endswith("curid=13")
    assert skips == Counter(empty_text=1, invalid_json=1)


# ---------------------------------------------------------------- github
REPOS = DATA / "github" / "repos"


def test_github_repos_and_jsonl() -> None:
    docs, skips = run("github", [REPOS / "alpha", REPOS / "beta", DATA / "github" / "code.jsonl"])
    assert [d.id for d in docs] == ["github:alpha:src/main.py", "github:alpha:src/util.js", "github:org/gamma:src/main.rs"]
    # byte-exact: trailing spaces, tabs and CRLF untouched
    assert docs[0].text == (REPOS / "alpha" / "src" / "main.py").read_bytes().decode()
    assert docs[1].text == (REPOS / "alpha" / "src" / "util.js").read_bytes().decode() and "\r\n" in docs[1].text
    assert docs[0].meta == {"repo": "alpha", "path": "src/main.py", "lang": "python", "license": "mit"}
    assert docs[2].meta["lang"] == "rust"
    assert skips == Counter(
        language_not_allowed=4,   # README.md, 2 LICENSE files, Fortran record
        vendored=3,               # vendor/leftpad.js, static/app.min.js, node_modules/pkg/index.py
        generated=2,              # api_pb2.py (protoc header), x_string.go (stringer)
        minified=1,               # web/bundle.js
        license_denied=2,         # beta (AGPL LICENSE), org/closed (proprietary)
        invalid_json=1, missing_field=1,
    )


@pytest.mark.parametrize(
    ("path", "content", "lang", "license", "reason"),
    [
        ("vendor/a.py", "x = 1\n", None, None, "vendored"),
        ("web/node_modules/p/i.js", "x = 1\n", None, None, "vendored"),
        ("third_party/z.c", "int x;\n", None, None, "vendored"),
        ("a/jquery.min.js", "x=1\n", None, None, "vendored"),
        ("notes.txt", "hello\n", None, None, "language_not_allowed"),
        ("x.f90", "x\n", "fortran", None, "language_not_allowed"),
        ("a.py", "   \n", None, None, "empty_text"),
        ("a.py", "x = 1\n", None, "AGPL-3.0", "license_denied"),
        ("a.py", "# This file is auto-generated.\nx = 1\n", None, None, "generated"),
        ("a.go", "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage a\n", None, None, "generated"),
        ("package-lock.json", "{}", "javascript", None, "generated"),
        ("a.js", "var a=" + "1+" * 800 + "1;\n", None, None, "minified"),
        ("a.js", ("x" * 150 + "\n") * 10, None, None, "minified"),
        ("a.py", "#" * 50 + "\n" + "-= " * 40 + "\n", None, None, "minified"),
        ("a.py", "x = 1\n", None, "mit", None),
        ("a.py", "x = 1\n", None, None, None),   # unknown license: no license filter
    ],
)
def test_github_filters_each_reject_the_right_file(path: str, content: str, lang: str | None, license: str | None, reason: str | None) -> None:
    opts = gh.GithubOptions()
    assert gh.reject_reason(path, content, len(content), gh._lang_of(path, lang), license, opts) == reason


def test_github_options(tmp_path: Path) -> None:
    big = tmp_path / "repo" / "big.py"
    big.parent.mkdir()
    big.write_text("x = 1\n" * 100)
    (tmp_path / "repo" / "bin.py").write_bytes(b"\xff\xfe\x00x")
    docs, skips = run("github", [tmp_path / "repo"], max_file_bytes=100)
    assert docs == [] and skips == Counter(too_large=1, binary=1)
    docs, skips = run("github", [tmp_path / "repo"], languages=frozenset({"go"}))
    assert docs == [] and skips == Counter(language_not_allowed=2)
    docs, skips = run("github", [REPOS / "beta"], deny_licenses=frozenset())
    assert [d.meta["license"] for d in docs] == ["agpl-3.0"]


# ---------------------------------------------------------------- leetcode
def test_leetcode() -> None:
    docs, skips = run("leetcode", [DATA / "leetcode"])
    assert [d.id for d in docs] == ["leetcode:1", "leetcode:2"]
    text = docs[0].text
    assert text.startswith("1. Pair Sum\n\nGiven an array nums and an integer target,")
    assert "<p>" not in text and "&lt;" not in text and "2 <= nums.length <= 10^4" in text
    assert "Input: nums = [1,3,4], target = 7\nOutput: [1,2]" in text
    assert "```python3\nclass Solution:\n    def pairSum(self, nums, target):\n" in text
    assert text.count("```") == 4 and text.index("```python3") < text.index("```cpp")
    assert docs[0].meta["languages"] == ["python3", "cpp"] and docs[0].meta["difficulty"] == "Easy"
    assert docs[1].text.startswith("2. 反转字符串\n\n编写一个函数") and "```java\n" in docs[1].text
    assert skips == Counter(invalid_json=1, missing_field=1, invalid_record=1)


def test_leetcode_fence_outlasts_backticks() -> None:
    from corpus.sources.leetcode import fence

    block = fence("md", "use ``` to fence\n")
    assert block.startswith("````md\n") and block.endswith("\n````")


# ---------------------------------------------------------------- registry, determinism, config errors
ALL = {
    "baike": ([DATA / "baike"], {}),
    "wudao": ([DATA / "wudao"], {"chunk_bytes": 5}),
    "wiki": ([DATA / "wiki"], {"to_simplified": True}),
    "wiki_json": ([DATA / "wiki_json"], {}),
    "english": ([DATA / "english"], {}),
    "github": ([str(REPOS / "*"), DATA / "github" / "code.jsonl"], {}),
    "leetcode": ([DATA / "leetcode"], {}),
    "json": ([DATA / "json"], {"fields": {"text": "body", "id": "uid"}}),
    "jsonl": ([DATA / "json" / "posts.jsonl"], {"fields": {"text": "body"}}),
}


def test_every_reader_has_a_sample_and_is_deterministic() -> None:
    assert set(ALL) == set(READERS)
    for layout, (paths, opts) in ALL.items():
        first, s1 = run(layout, paths, **opts)
        second, s2 = run(layout, paths, **opts)
        assert first and first == second and s1 == s2, layout
        assert len({d.id for d in first}) == len(first), layout
        assert all(d.text.strip() for d in first), layout


def test_read_source_orders_inputs_and_rejects_bad_config(tmp_path: Path) -> None:
    units = expand("wiki", [DATA / "wiki"])
    assert [u.name for u in units] == ["enwiki-sample-pages-articles.xml.bz2", "zhwiki-sample-pages-articles.xml"]
    with pytest.raises(InputError, match="unknown source layout"):
        expand("nope", [DATA])
    with pytest.raises(InputError, match="not found"):
        read_source("english", [tmp_path / "missing.jsonl"], Counter())
    with pytest.raises(InputError, match="no english files"):
        read_source("english", [tmp_path], Counter())
    with pytest.raises(TypeError, match="to_simplfied"):
        read_source("wiki", [DATA / "wiki"], Counter(), to_simplfied=True)
    # every layout takes options now: an unknown one is named with the known ones
    with pytest.raises(TypeError, match="unknown option 'lang'.*known options: .*fields"):
        read_source("baike", [DATA / "baike"], Counter(), lang="zh")


# ---------------------------------------------------------------- robustness (property tests)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

WUDAO_SAMPLE = (DATA / "wudao" / "part-2021001.json").read_bytes()


@settings(max_examples=150, deadline=None)
@given(
    edits=st.lists(st.tuples(st.integers(0, len(WUDAO_SAMPLE) - 1), st.sampled_from(list(b'{}[],":\\ x'))), max_size=4),
    cut=st.integers(1, len(WUDAO_SAMPLE)),
    chunk=st.integers(1, 40),
)
def test_wudao_never_raises_and_ignores_buffer_size(tmp_path_factory, edits, cut, chunk) -> None:
    """Corrupted/truncated arrays never raise, and the result does not depend on where refills fall."""
    data = bytearray(WUDAO_SAMPLE[:cut])
    for pos, byte in edits:
        if pos < len(data):
            data[pos] = byte
    path = tmp_path_factory.mktemp("wd") / "x.json"
    path.write_bytes(bytes(data))
    small: Counter[str] = Counter()
    big: Counter[str] = Counter()
    a = list(read_wudao(path, small, WudaoOptions(chunk_bytes=chunk)))
    b = list(read_wudao(path, big, WudaoOptions(chunk_bytes=1 << 20)))
    assert a == b and small == big


WIKI_PIECES = list("{}[]|=*#:'<>/!-ab 文\n") + ["{{", "}}", "[[", "]]", "{|", "|}", "<ref>", "</ref>", "<ref/>", "<!--", "-->", "File:", "分类:", "http://x "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WIKI_PIECES), max_size=80).map("".join))
def test_strip_wikitext_never_raises(src: str) -> None:
    out = strip_wikitext(src)
    assert isinstance(out, str) and "<ref" not in out and "<!--" not in out


def test_wikitext_zh_conversion_markup() -> None:
    src = "-{H|zh-hans:软件;zh-hant:軟體;}-他用-{zh-hans:软件; zh-hant:軟體;}-和-{Linux}-工作，见[[内存|-{zh-cn:内存;zh-tw:記憶體}-]]。"
    assert strip_wikitext(src) == "他用软件和Linux工作，见内存。"
