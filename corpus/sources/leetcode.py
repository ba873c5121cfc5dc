"""LeetCode: problems as JSON lines, or one (pretty-printed) JSON file per problem → one Document each.

Record fields (defaults, alternatives in preference order; remap with ``fields:``): ``id``
(``frontend_id``/``id``/``slug``), ``title``, ``slug``, ``difficulty``, ``statement``
(``content``/``statement``/``description``: HTML, Markdown or plain text), ``solutions`` as
``{lang: code}`` or ``[{langSlug|lang|language, code}]`` (LeetCode's own ``code_snippets`` shape). A
real-style dump, one file per problem with its own names, is read with for example::

    options: {fields: {id: problem_id, title: problem_title, statement: readme_description,
                       solutions: code_snippets, slug: problem_slug}}

Text: ``"<id>. <title>"``, the statement, then each solution in a fenced block ```` ```lang ```` so the
model learns the problem → code association in Markdown form. The statement goes through the HTML
parser only when it is HTML (``statement_format: auto`` looks for HTML block tags and no Markdown code
fence): Markdown stays Markdown, so ``List<Node>`` and fenced examples survive.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar, Literal

from corpus.document import Document
from corpus.sources.common import file_stem, iter_records
from corpus.sources.options import JsonOptions, record_id

SOURCE = "leetcode"
_BLOCK = frozenset({"p", "div", "br", "li", "ul", "ol", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "blockquote"})
_SPACES = re.compile(r"[ \t\r\f\v]+")
# An HTML statement has real block-level tags; Markdown may hold a stray <sup> or generic types (List<Node>).
_HTML_BLOCK = re.compile(r"<(?:p|div|pre|ul|ol|li|br|h[1-6]|table|blockquote)(?:\s[^<>]*)?/?>", re.I)
_MD_FENCE = re.compile(r"^\s*(?:```|~~~)", re.M)


@dataclass(frozen=True)
class LeetcodeOptions(JsonOptions):
    statement_format: Literal["auto", "html", "markdown"] = "auto"   # markdown: kept as written

    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "id": ("frontend_id", "id", "slug"), "title": ("title",), "slug": ("slug",), "difficulty": ("difficulty",),
        "statement": ("content", "statement", "description"), "solutions": ("solutions",),
    }


def is_html(text: str) -> bool:
    """Whether a statement is HTML (block tags, no Markdown code fence), not Markdown or plain text."""
    return bool(_HTML_BLOCK.search(text)) and not _MD_FENCE.search(text)


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
            pairs.append((item.get("langSlug") or item.get("lang") or item.get("language"), item.get("code")))
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


def read(path: Path, skips: Counter[str], options: LeetcodeOptions | None = None) -> Iterator[Document]:
    """One Document per problem; id ``leetcode:<id field>`` (else file stem + line or record number)."""
    opts = options or LeetcodeOptions()
    for n, obj in iter_records(path, skips, opts):
        title = (opts.get_str(obj, "title") or "").strip()
        statement = opts.get_str(obj, "statement")
        if not title or statement is None:
            skips["missing_field"] += 1
            continue
        solutions = _solutions(opts.get(obj, "solutions"))
        if solutions is None:
            skips["invalid_record"] += 1
            continue
        html = opts.statement_format == "html" or (opts.statement_format == "auto" and is_html(statement))
        body = html_to_text(statement) if html else statement.strip()
        if not body and not solutions:
            skips["empty_text"] += 1
            continue
        own = record_id(opts.get(obj, "id"))
        heading = f"{own}. {title}" if own else title
        text = "\n\n".join([heading] + ([body] if body else []) + [fence(lang, code) for lang, code in solutions])
        doc_id = f"{SOURCE}:{own}" if own else f"{SOURCE}:{file_stem(path)}:{n}"
        meta = {"title": title, "slug": opts.get(obj, "slug"), "difficulty": opts.get(obj, "difficulty"),
                "languages": [lang for lang, _ in solutions]}
        yield Document(doc_id, SOURCE, text, {k: v for k, v in meta.items() if v is not None})
