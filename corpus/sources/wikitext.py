"""Wikitext → prose.

A small, deliberate subset of MediaWiki markup handling, enough for pretraining text: what a reader
of the rendered article sees as running prose is kept, everything else (references, infoboxes and other
non-prose templates, tables, files, categories, markup) is removed. Not a parser: nested constructs
(templates in templates, links in file captions) are matched with explicit depth counters because
regexes cannot balance brackets. Order matters: comments first (they can hide any markup), then
reference *sections* (below), then ``<ref>``s (they hold templates), then templates (they hold links and
tables), tables, then links.

- **Reference sections** — See also, References, Notes, Further reading, External links, Bibliography,
  Sources… and zh 参见, 参考文献, 参考资料, 注释, 外部链接, 延伸阅读, 相关条目, 脚注… in Simplified and
  Traditional forms (:data:`REFERENCE_SECTIONS`) — are dropped by heading: the heading and everything
  up to the next heading of the same or a higher level. They are lists of titles, ISBNs and URLs that
  survive every other rule as lines of "text".
- **Templates** that are part of a sentence (``convert``, dates, ``lang``, ``nihongo``, ``nowrap``…) are
  rendered as the text a reader sees (:mod:`corpus.sources.wikitemplates`); every other one is dropped.
- **Tables**: ``tables="drop"`` removes them; ``tables="text"`` keeps each row as one line, its cells
  (header cells too) joined by " | " — not tabs, which text cleaning turns into spaces — and the caption
  as a line of its own, markup stripped.
- **Empty brackets** left by dropped templates ("Albedo ()", "（；）", "(, born 1950)") are removed or
  tidied, and a space left before a comma between words is closed up ("At , Alabama" → "At, Alabama").
- List items holding an ISBN are bibliography entries wherever they are ("Editions"): dropped.
"""

from __future__ import annotations

import html
import re
from typing import Literal

from corpus.sources.wikitemplates import render as render_template

# Link prefixes whose links are not prose: files, images and categories (en + zh + common aliases).
# A leading ":" (``[[:Category:X]]``) makes a visible link, handled before this check.
NON_PROSE_PREFIXES = frozenset(
    p.casefold()
    for p in ("File", "Image", "Media", "Category", "文件", "檔案", "档案", "图像", "圖像", "图片", "圖片",
              "媒体", "媒體", "分类", "分類", "Wikipedia", "WP", "Help", "帮助", "幫助")
)

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
# zh language-conversion markup: -{text}-, -{zh-hans:简;zh-hant:繁;}-, and rules -{H|…}- / -{T|…}- (invisible).
_CONVERSION = re.compile(r"-\{(.*?)\}-", re.S)
_VARIANT = re.compile(r"(zh(?:-[a-z]+)?)\s*:\s*([^;]*)")
_PREFERRED_VARIANTS = ("zh-hans", "zh-cn", "zh-sg", "zh", "zh-hant", "zh-tw", "zh-hk")
# <ref .../> first (self-closing), then <ref ...>...</ref>; also other tags whose content is not prose.
_REF_SELF = re.compile(r"<ref\b[^>]*/\s*>", re.I)
_NON_PROSE_TAGS = re.compile(
    r"<(ref|references|gallery|math|chem|timeline|score|syntaxhighlight|source|templatestyles|imagemap|graph)\b[^>]*?(?:/\s*>|>.*?</\1\s*>)",
    re.I | re.S,
)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_BR = re.compile(r"<br\s*/?\s*>", re.I)
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}")
_TABLE_TOKEN = re.compile(r"\{\||\|\}")
_LINK_TOKEN = re.compile(r"\[\[|\]\]")
_EXTERNAL = re.compile(r"\[(?:https?:|ftp:|//)[^\s\]]*\s*([^\]]*)\]", re.I)
_QUOTES = re.compile(r"'{2,}")
_HEADING = re.compile(r"^(={1,6})\s*(.*?)\s*\1\s*$")
_LIST = re.compile(r"^[*#:;]+\s*")
_ISBN = re.compile(r"\bISBN(?:-1[03])?:?\s*[0-9][0-9Xx -]{8,}")
_MAGIC = re.compile(r"__[A-Z]+__")
_RULE = re.compile(r"^-{4,}\s*$")

# Headings of sections that hold references and link lists, not prose (compared case-folded, without
# spaces, markup and a trailing colon). zh in Simplified and Traditional forms, and the mixed forms
# editors write.
REFERENCE_SECTIONS = frozenset(
    "".join(h.split()).casefold() for h in (
        "See also", "References", "Notes", "Further reading", "External links", "Bibliography", "Sources",
        "Footnotes", "Citations", "Works cited", "Notes and references", "References and notes",
        "Notes and citations", "Sources and references", "References and sources", "Cited sources",
        "Reference", "Note", "External link", "Related articles", "Sources and further reading",
        "Further reading and external links", "Explanatory notes",
        "参见", "參見", "参看", "參看", "参考", "參考", "参考文献", "參考文獻", "参考资料", "參考資料", "参考书目",
        "參考書目", "参考来源", "參考來源", "资料来源", "資料來源", "注释", "註釋", "注釋",
        "注解", "註解", "注脚", "註腳", "脚注", "腳註", "腳注", "外部链接", "外部連結", "外部鏈接", "外部連接",
        "外部链結", "延伸阅读", "延伸閱讀", "扩展阅读", "擴展閱讀", "相关条目", "相關條目", "相关链接", "相關連結",
        "相關鏈接", "参考文献与注释", "參考文獻與註釋", "注释与参考文献", "註釋與參考文獻", "参考资料与注释",
        "相关文献", "相關文獻",
    )
)
_HEADING_LINE = re.compile(r"(={1,6})([^\n]+?)\1[ \t]*(?=\n|\Z)")
_HEADING_MARKUP = re.compile(r"'{2,}|<[^<>]*>|\{\{[^{}]*\}\}|\[\[(?:[^\[\]|]*\|)?|\]\]")

_CELL_SPLIT = re.compile(r"\|\||!!|\[\[|\]\]")
# Brackets left empty (or holding only separators) once templates are gone. An ASCII "()" only after a
# space or at a line start, so code such as "printf()" keeps its parentheses; fullwidth ones always.
_BRACKET_LEAD = re.compile(r"([(（])[ \t,;，；、:：]+")
_BRACKET_TAIL = re.compile(r"[ \t,;，；、]+([)）])")
_EMPTY = re.compile(r"[ \t]*\([ \t]*\)|[ \t]*（[ \t]*）")
# The three rules run only on a line where this finds something: most lines hold brackets, few need them.
_BRACKET_HINT = re.compile(r"[(（][ \t,;，；、:：)）]|[ \t,;，；、][)）]")
# only between words ("At , Alabama"): "shift , (comma) or . (full stop)" is prose about the marks
_SPACE_BEFORE_PUNCT = re.compile(r"(?<=\w)[ \t]+(?=,[ \t]+\w)")
_SPACES = re.compile(r"[ \t]{2,}")


def _outermost(text: str, token: re.Pattern[str], opener: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Bracket matching in one pass: ``(outermost matched spans, unmatched tokens)``, both sorted.

    Openers and closers are paired with a stack, so ``{{ a {{ b }}`` pairs the inner ones and leaves the
    first opener unmatched — the reading MediaWiki itself gives. Linear time even for pages full of
    stray brackets (re-scanning after each stray one would be quadratic).
    """
    stack: list[int] = []
    pairs: list[tuple[int, int]] = []
    stray: list[tuple[int, int]] = []
    for m in token.finditer(text):
        if m.group() == opener:
            stack.append(m.start())
        elif stack:
            pairs.append((stack.pop(), m.end()))
        else:
            stray.append((m.start(), m.end()))
    stray.extend((pos, pos + len(opener)) for pos in stack)
    pairs.sort()
    outer: list[tuple[int, int]] = []
    for start, end in pairs:   # pairs nest properly, so a pair starting inside the last outer one is inside it
        if not outer or start >= outer[-1][1]:
            outer.append((start, end))
    return outer, sorted(stray)


def _replace_spans(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with each non-overlapping ``(start, end, replacement)`` applied (spans sorted by start)."""
    out: list[str] = []
    last = 0
    for start, end, repl in spans:
        if start < last:   # a stray token inside an already replaced span
            continue
        out.append(text[last:start])
        out.append(repl)
        last = end
    out.append(text[last:])
    return "".join(out)


def _split_top(inner: str) -> list[str]:
    """Split a link's inside on ``|`` that are not inside a nested ``[[…]]``."""
    if "[[" not in inner:   # fast path: almost every link
        return inner.split("|")
    parts, depth, start, i = [], 0, 0, 0
    while i < len(inner):
        two = inner[i:i + 2]
        if two == "[[":
            depth += 1
            i += 2
            continue
        if two == "]]" and depth:
            depth -= 1
            i += 2
            continue
        if inner[i] == "|" and depth == 0:
            parts.append(inner[start:i])
            start = i + 1
        i += 1
    parts.append(inner[start:])
    return parts


def _render_link(inner: str) -> str:
    """Text a reader sees for ``[[inner]]``: label, else target; nothing for files/categories."""
    visible = inner.startswith(":")
    target_part = inner[1:] if visible else inner
    parts = _split_top(target_part)
    target = parts[0].strip()
    if not visible and ":" in target and target.split(":", 1)[0].strip().casefold() in NON_PROSE_PREFIXES:
        return ""
    if len(parts) > 1:
        label = "|".join(parts[1:]).strip()
        # the "pipe trick" [[Foo (bar)|]] shows the target; keep it simple and show the target
        return (_links(label) if "[[" in label or "]]" in label else label) if label else target
    return target


def _links(text: str) -> str:
    """Replace every outermost ``[[…]]`` by its visible text (nested links inside are rendered recursively).

    Unmatched ``[[``/``]]`` are dropped, keeping the text around them.
    """
    if "[[" not in text and "]]" not in text:
        return text
    outer, stray = _outermost(text, _LINK_TOKEN, "[[")
    spans = [(s, e, _render_link(text[s + 2:e - 2])) for s, e in outer] + [(s, e, "") for s, e in stray]
    return _replace_spans(text, sorted(spans))


def _lines(text: str) -> list[str]:
    """Per-line cleanup: headings to bare lines, list markers stripped, rules and blanks dropped,
    list items holding an ISBN dropped (bibliography entries), empty brackets removed (:func:`_tidy`).

    A heading whose section ended up empty (e.g. "Etymology" when it held only a template) is dropped:
    a lone heading carries no prose.
    """
    lines: list[tuple[str, bool]] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or _RULE.match(line):
            continue
        h = _HEADING.match(line)
        if h:
            if h.group(2).strip():
                lines.append((h.group(2).strip(), True))
            continue
        listed = _LIST.match(line)
        if listed and _ISBN.search(line):
            continue   # a bibliography entry in a list outside the reference sections ("Editions")
        line = _tidy(line[listed.end():] if listed else line).strip()
        if line and line.strip("| "):   # a table row whose cells were all images or templates is pipes alone
            lines.append((line, False))
    kept: list[str] = []
    for i, (line, is_heading) in enumerate(lines):
        if is_heading and (i + 1 == len(lines) or lines[i + 1][1]):
            continue
        kept.append(line)
    return kept


def _tidy(line: str) -> str:
    """A line without the holes dropped templates leave: "Albedo ()" → "Albedo", "（；）" → "",
    "(, born 1950)" → "(born 1950)", "At , Alabama" → "At, Alabama"; runs of spaces as one."""
    if ("(" in line or "（" in line) and _BRACKET_HINT.search(line):
        line = _BRACKET_LEAD.sub(r"\1", line)
        line = _BRACKET_TAIL.sub(r"\1", line)
        line = _EMPTY.sub(_empty, line)
    if " ," in line:
        line = _SPACE_BEFORE_PUNCT.sub("", line)
    if "  " in line or "\t" in line:
        line = _SPACES.sub(" ", line)
    return line


def _empty(m: re.Match[str]) -> str:
    """An empty bracket pair goes (with the spaces before it) unless it is an ASCII "()" right after a
    word, as in "printf()"."""
    text = m.group()
    if text.endswith(")") and m.start() > 0 and text[0] not in " \t":
        return text
    return ""


def _heading_key(title: str) -> str:
    return "".join(_HEADING_MARKUP.sub("", title).split()).casefold().rstrip(":：")


def _headings(text: str):
    """The heading lines of ``text``: matches of _HEADING_LINE at a line start, found with a string scan
    for "\\n=" (a regex anchored at every line start is tried at every character). A heading starts in
    the first column, as in MediaWiki."""
    if text.startswith("="):
        m = _HEADING_LINE.match(text)
        if m:
            yield m
    pos = text.find("\n=")
    while pos >= 0:
        m = _HEADING_LINE.match(text, pos + 1)
        if m:
            yield m
        pos = text.find("\n=", pos + 2)


def drop_reference_sections(text: str) -> str:
    """``text`` without its reference sections (:data:`REFERENCE_SECTIONS`): each such heading and
    everything up to the next heading of the same or a higher level (a lower ``=`` count)."""
    if "=" not in text:
        return text
    out: list[str] = []
    last = 0
    skipping = 0          # the level of the reference heading being skipped; 0: none
    for m in _headings(text):
        level = len(m.group(1))
        if skipping:
            if level > skipping:
                continue
            skipping, last = 0, m.start()
        if _heading_key(m.group(2)) in REFERENCE_SECTIONS:
            out.append(text[last:m.start()])
            skipping = level
    if not skipping:
        out.append(text[last:])
    return "".join(out)


def _templates(text: str, lang: str | None) -> str:
    """Every outermost ``{{…}}`` replaced by its rendering (:mod:`corpus.sources.wikitemplates`: the
    text of a prose template, else nothing); unmatched ``{{``/``}}`` dropped."""
    if "{{" not in text and "}}" not in text:
        return text
    outer, stray = _outermost(text, _TEMPLATE_TOKEN, "{{")

    def nested(inner: str) -> str:
        return _templates(inner, lang)

    spans = [(s, e, render_template(text[s + 2:e - 2], nested, lang)) for s, e in outer]
    return _replace_spans(text, sorted(spans + [(s, e, "") for s, e in stray]))


def _tables(text: str, mode: str) -> str:
    """Tables dropped (``mode="drop"``) or as text rows (``"text"``); unmatched ``{|``/``|}`` dropped."""
    if "{|" not in text and "|}" not in text:
        return text
    outer, stray = _outermost(text, _TABLE_TOKEN, "{|")
    if mode == "drop":
        spans = [(s, e, "") for s, e in outer]
    else:
        spans = [(s, e, "\n" + _table_text(text[s + 2:e - 2]) + "\n") for s, e in outer]
    return _replace_spans(text, sorted(spans + [(s, e, "") for s, e in stray]))


def _split_cells(line: str, seps: tuple[str, ...]) -> list[str]:
    """A row line split at ``||`` (and ``!!`` on a header line) outside ``[[…]]``."""
    parts: list[str] = []
    depth = start = 0
    for m in _CELL_SPLIT.finditer(line):
        tok = m.group()
        if tok == "[[":
            depth += 1
        elif tok == "]]":
            depth = max(0, depth - 1)
        elif depth == 0 and tok in seps:
            parts.append(line[start:m.start()])
            start = m.end()
    parts.append(line[start:])
    return parts


def _cell_content(cell: str) -> str:
    """A cell's content: what follows its attributes (``style="…" | content``), if it has any."""
    depth = 0
    i = 0
    while i < len(cell):
        two = cell[i:i + 2]
        if two == "[[":
            depth += 1
            i += 2
            continue
        if two == "]]":
            depth = max(0, depth - 1)
            i += 2
            continue
        if cell[i] == "|" and depth == 0:
            return cell[i + 1:].strip()
        i += 1
    return cell.strip()


def _table_text(body: str) -> str:
    """The inside of one ``{|…|}`` as lines: the caption, then one line per row, cells joined by " | "."""
    body = _tables(body, "text")   # a table in a cell becomes rows inside that cell
    lines = body.split("\n")[1:]   # the first line holds the table's attributes
    caption: list[str] = []
    rows: list[list[str]] = []
    row: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("|+"):
            caption.append(_cell_content(line[2:]))
        elif line.startswith("|-"):
            if row:
                rows.append(row)
            row = []
        elif line.startswith("!"):
            row.extend(_cell_content(c) for c in _split_cells(line[1:], ("!!", "||")))
        elif line.startswith("|"):
            row.extend(_cell_content(c) for c in _split_cells(line[1:], ("||",)))
        elif row:   # a cell's content goes on over several lines (a list in a cell: its items)
            row[-1] = f"{row[-1]} {_LIST.sub('', line)}".strip()
    if row:
        rows.append(row)
    out = [c for c in caption if c]
    for r in rows:
        while r and not r[-1]:   # empty cells at the ends (spans, spacer columns) carry nothing
            r.pop()
        while r and not r[0]:
            r.pop(0)
        if r:
            out.append(" | ".join(r))
    return "\n".join(out)


def _conversion(m: re.Match[str]) -> str:
    """Visible text of one ``-{…}-``: the Simplified variant when variants are given (CaMA trains on Simplified)."""
    inner = m.group(1)
    if re.match(r"^\s*[A-Za-z]\s*\|", inner):   # flags like H| (rule for the whole page) or T| (title): not text
        return ""
    variants = dict((k, v.strip()) for k, v in _VARIANT.findall(inner))
    if variants:
        for key in _PREFERRED_VARIANTS:
            if key in variants:
                return variants[key]
        return next(iter(variants.values()))
    return inner


def strip_wikitext(text: str, tables: Literal["drop", "text"] = "drop", lang: str | None = None) -> str:
    """Prose of a wikitext page, lines joined with "\\n" (empty string if nothing is left).

    ``tables``: ``drop`` or ``text`` (rows as lines, cells joined by " | "); ``lang``: the wiki's
    language, for the few templates whose text differs (a zh date is "2001年3月5日").
    """
    if tables not in ("drop", "text"):
        raise ValueError(f"strip_wikitext: tables must be 'drop' or 'text', got {tables!r}")
    text = _COMMENT.sub("", text)
    text = _CONVERSION.sub(_conversion, text)
    text = drop_reference_sections(text)
    text = _REF_SELF.sub("", text)
    text = _NON_PROSE_TAGS.sub("", text)
    text = _templates(text, lang)
    text = _tables(text, tables)
    text = _links(text)
    text = _EXTERNAL.sub(lambda m: m.group(1).strip(), text)
    text = _QUOTES.sub("", text)
    text = _MAGIC.sub("", text)
    text = _BR.sub(" ", text)   # a line break inside a paragraph or cell separates words
    text = _TAG.sub("", text)   # remaining inline tags (<small>, <span>, <br/>…): keep their text
    text = html.unescape(text).replace("\u00a0", " ")
    # The removals above can join pieces into a new comment, ref, template or link ("<!-{{x}}->" →
    # "<!-->", "}{{}" → "}}", "{[[{" → "{{"), and unescaping can spell one ("&lt;!--"): strip again until
    # nothing changes (each pass removes markup; the bound only guards against a renderer's surprise).
    for _ in range(16):
        again = _TAG.sub("", _NON_PROSE_TAGS.sub("", _REF_SELF.sub("", _COMMENT.sub("", text))))
        if "{{" in again or "}}" in again:
            again = _templates(again, lang)
        if "{|" in again or "|}" in again:
            again = _tables(again, tables)
        if "[[" in again or "]]" in again:
            again = _links(again)
        if again == text:
            break
        text = again
    return "\n".join(_lines(text))
