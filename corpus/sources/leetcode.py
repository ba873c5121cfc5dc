"""LeetCode: JSON lines of problems → one Document per problem.

Record fields (alternatives in preference order): ``frontend_id``/``id``, ``title``, ``slug``,
``difficulty``, ``content``/``statement`` (HTML or plain text), ``solutions`` as ``{lang: code}`` or
``[{lang, code}]``. Text: ``"<id>. <title>"``, the statement as plain text, then each solution in a
fenced block ```` ```lang ```` so the model learns the problem → code association in Markdown form.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from corpus.document import Document
from corpus.sources.common import file_stem, get_str, iter_json_records

SOURCE = "leetcode"
_BLOCK = frozenset({"p", "div", "br", "li", "ul", "ol", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "blockquote"})
_SPACES = re.compile(r"[ \t\r\f\v]+")


class _Text(HTMLParser):
    """HTML → text: block tags break lines, <pre> keeps its whitespace, <sup> becomes ``^`` (10<sup>4</sup> → 10^4)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        elif tag == "sup":
            self.parts.append("^")
        elif tag == "pre":
            self.pre += 1
        elif tag == "img":
            pass   # images carry no text

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data if self.pre else _SPACES.sub(" ", data.replace("\n", " ")))


def html_to_text(html_text: str) -> str:
    """Plain text of an HTML fragment; lines stripped (outside <pre> that is harmless), blank runs collapsed."""
    if "<" not in html_text:
        return html_text.strip()
    parser = _Text()
    parser.feed(html_text)
    parser.close()
    lines = [line.rstrip() for line in "".join(parser.parts).replace("\xa0", " ").split("\n")]
    out: list[str] = []
    for line in lines:
        if line.strip() or (out and out[-1]):
            out.append(line if line.startswith("  ") else line.strip())
    return "\n".join(out).strip()


def _solutions(raw: Any) -> list[tuple[str, str]] | None:
    """``[(lang, code)]`` in input order, or None if the field has the wrong shape."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = []
        for item in raw:
            if not isinstance(item, dict):
                return None
            pairs.append((item.get("lang") or item.get("language"), item.get("code")))
    else:
        return None
    if not all(isinstance(lang, str) and isinstance(code, str) for lang, code in pairs):
        return None
    return [(lang.strip().lower(), code) for lang, code in pairs if code.strip()]


def fence(lang: str, code: str) -> str:
    """A Markdown code block; the fence is longer than any backtick run in the code so it cannot close early."""
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{code.rstrip(chr(10))}\n{ticks}"


def read(path: Path, skips: Counter[str]) -> Iterator[Document]:
    """One Document per problem; id ``leetcode:<frontend_id|id|slug>`` (else file stem + line)."""
    for lineno, obj in iter_json_records(path, skips):
        title = (get_str(obj, "title") or "").strip()
        statement = get_str(obj, "content", "statement", "description")
        if not title or statement is None:
            skips["missing_field"] += 1
            continue
        solutions = _solutions(obj.get("solutions"))
        if solutions is None:
            skips["invalid_record"] += 1
            continue
        body = html_to_text(statement)
        if not body and not solutions:
            skips["empty_text"] += 1
            continue
        own = obj.get("frontend_id", obj.get("id", obj.get("slug")))
        has_id = isinstance(own, (str, int)) and not isinstance(own, bool) and str(own).strip()
        heading = f"{str(own).strip()}. {title}" if has_id else title
        text = "\n\n".join([heading] + ([body] if body else []) + [fence(lang, code) for lang, code in solutions])
        doc_id = f"{SOURCE}:{str(own).strip()}" if has_id else f"{SOURCE}:{file_stem(path)}:{lineno}"
        meta = {"title": title, "slug": obj.get("slug"), "difficulty": obj.get("difficulty"), "languages": [lang for lang, _ in solutions]}
        yield Document(doc_id, SOURCE, text, {k: v for k, v in meta.items() if v is not None})
