"""JSON layouts through options: field mapping, JSON lines, one pretty-printed object per file, arrays;
the LeetCode reader on a one-file-per-problem dump; Markdown statements kept as Markdown."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from corpus.document import Document
from corpus.sources import read_source
from corpus.sources.leetcode import is_html

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "sources"
FORUM = {"fields": {"text": "body", "id": "uid", "title": "headline", "lang": "language"}, "source": "forum"}
DUMP = {"fields": {"id": "problem_id", "title": "problem_title", "statement": "readme_description",
                   "solutions": "code_snippets", "slug": "problem_slug"}}


def run(layout: str, paths: list, **options) -> tuple[list[Document], Counter[str]]:
    skips: Counter[str] = Counter()
    return list(read_source(layout, paths, skips, **options)), skips


def test_field_mapping_over_lines_and_a_pretty_printed_array() -> None:
    docs, skips = run("json", [DATA / "json"], keep=["board"], **FORUM)
    assert [d.id for d in docs] == ["forum:a-1", "forum:p-100", "forum:p-101", "forum:posts:5"]   # articles.json first
    assert docs[0] == Document("forum:a-1", "forum", "Rivers carry water from the hills to the sea.\nThey shape valleys over many years.",
                               {"title": "Rivers", "lang": "en"})
    assert docs[2].meta == {"title": "周末去哪里", "lang": "zh", "board": "travel"}
    # broken line + a non-object array element; a post without body; the empty one in the array
    assert skips == Counter(invalid_json=2, missing_field=1, empty_text=1)


def test_one_pretty_printed_object_per_file_and_concatenated_objects(tmp_path: Path) -> None:
    folder = tmp_path / "objs"
    folder.mkdir()
    records = [{"uid": f"u{i}", "body": f"text number {i}\nover two lines"} for i in range(3)]
    for r in records:
        (folder / f"{r['uid']}.json").write_text(json.dumps(r, indent=2), encoding="utf-8")
    (folder / "many.json").write_text("\n".join(json.dumps({"uid": f"m{i}", "body": "b"}, indent=4) for i in range(2)), encoding="utf-8")
    (folder / "z-broken.json").write_text('{\n  "uid": "x",\n  "body": "no end"\n', encoding="utf-8")
    docs, skips = run("json", [folder], fields={"text": "body", "id": "uid"})
    assert [d.id for d in docs] == ["json:m0", "json:m1", "json:u0", "json:u1", "json:u2"]
    assert docs[2].text == "text number 0\nover two lines"
    assert skips == Counter(truncated_input=1)
    # the format can be forced: read as JSON lines, a pretty-printed file is a run of broken lines
    docs, skips = run("json", [folder / "u0.json"], format="lines", fields={"text": "body"})
    assert docs == [] and skips["invalid_json"] == 4


def test_a_broken_pretty_printed_record_is_skipped_and_the_next_one_read(tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text('{\n  "text": "first", "oops"\n}\n{\n  "text": "second"\n}\n', encoding="utf-8")
    for chunk in (1, 5, 1 << 20):
        docs, skips = run("json", [path], chunk_bytes=chunk)
        assert [d.text for d in docs] == ["second"] and skips == Counter(invalid_json=1), chunk


def test_leetcode_one_file_per_problem_dump_with_its_own_field_names() -> None:
    docs, skips = run("leetcode", [DATA / "leetcode_dump"], **DUMP)
    assert [d.id for d in docs] == ["leetcode:0001", "leetcode:0002"]
    md, html = docs[0].text, docs[1].text
    # Markdown statement kept as written: generics, inline code, fences and ** survive
    assert md.startswith("0001. Pair Sum\n\nGiven an array `nums` of integers")
    assert "`List<Integer>`" in md and "`List<Node>`" in md and "**Example:**" in md
    assert "```\nInput: nums = [1,3,4], target = 7\nOutput: [1,2]\n```" in md
    assert "```python3\nclass Solution:\n    def pairSum(self, nums: List[int], target: int) -> List[int]:" in md
    assert "```cpp\nclass Solution {" in md and md.index("```python3") < md.index("```cpp")
    assert docs[0].meta == {"title": "Pair Sum", "slug": "pair-sum", "difficulty": "Easy", "languages": ["python3", "cpp"]}
    # HTML statement converted: tags gone, entities decoded, list items kept
    assert "<p>" not in html and "&lt;" not in html and "- -100 <= Node.val <= 100" in html
    assert html.startswith("0002. Merge Sorted Lists\n\nYou are given the heads of two sorted linked lists a and b.")
    assert "```java\nclass Solution {" in html
    assert skips == Counter(missing_field=1, truncated_input=1)   # no title; a file cut mid-string


def test_leetcode_statement_format_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": 9, "title": "T", "content": "<p>a &lt; b</p>"}) + "\n", encoding="utf-8")
    assert run("leetcode", [path], statement_format="markdown")[0][0].text == "9. T\n\n<p>a &lt; b</p>"
    assert run("leetcode", [path])[0][0].text == "9. T\n\na < b"


@pytest.mark.parametrize(("text", "html"), [
    ("<p>Given <code>nums</code>.</p>", True),
    ("Line one<br>line two", True),
    ('<div class="x">a</div>', True),
    ("Return a `List<Node>` of `Map<String, Integer>`.", False),
    ("Use 10<sup>4</sup> and a < b > c.", False),
    ("Example:\n\n```html\n<p>inside a fence</p>\n```", False),
    ("plain text", False),
])
def test_is_html(text: str, html: bool) -> None:
    assert is_html(text) is html


def test_documents_keep_source_id_and_meta(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": 7, "text": "x", "title": "t", "meta": {"url": "u", "n": [1]}}) + "\n", encoding="utf-8")
    docs, _ = run("jsonl", [path], source="web")
    assert docs == [Document("web:7", "web", "x", {"url": "u", "n": [1], "title": "t"})]
    docs, _ = run("english", [path], fields={"id": "id"})
    assert docs == [Document("english:7", "english", "x", {"url": "u", "n": [1]})]


def test_auto_format_on_one_line_arrays_and_runs_of_objects(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([{"text": f"t{i}"} for i in range(3)]), encoding="utf-8")
    (tmp_path / "b.json").write_text('{"text": "x"} {"text": "y"}', encoding="utf-8")
    (tmp_path / "c.json").write_text('{"text": "' + "z" * (1 << 20) + '"}', encoding="utf-8")   # first line > the sniff cap
    docs, skips = run("json", [tmp_path])
    assert [d.id for d in docs] == ["json:a:1", "json:a:2", "json:a:3", "json:b:1", "json:b:2", "json:c:1"] and not skips
