"""Wikitext → prose.

A small, deliberate subset of MediaWiki markup handling, enough for pretraining text: what a reader
of the rendered article sees as running prose is kept, everything else (templates, references, tables,
files, categories, markup) is removed. Not a parser: nested constructs (templates in templates, links in
file captions) are matched with explicit depth counters because regexes cannot balance brackets.
Order matters: comments first (they can hide any markup), then references (they hold templates),
then templates (they hold links and tables), tables, then links.
"""

from __future__ import annotations

import html
import re

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
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}")
_TABLE_TOKEN = re.compile(r"\{\||\|\}")
_LINK_TOKEN = re.compile(r"\[\[|\]\]")
_EXTERNAL = re.compile(r"\[(?:https?:|ftp:|//)[^\s\]]*\s*([^\]]*)\]", re.I)
_QUOTES = re.compile(r"'{2,}")
_HEADING = re.compile(r"^(={1,6})\s*(.*?)\s*\1\s*$")
_LIST = re.compile(r"^[*#:;]+\s*")
_MAGIC = re.compile(r"__[A-Z]+__")
_RULE = re.compile(r"^-{4,}\s*$")


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


def _remove_balanced(text: str, token: re.Pattern[str], opener: str) -> str:
    """Remove every outermost balanced span, and every unmatched opener/closer token alone.

    Dropping only the stray token keeps the rest of the article when the markup has a typo.
    """
    outer, stray = _outermost(text, token, opener)
    return _replace_spans(text, sorted([(s, e, "") for s, e in outer] + [(s, e, "") for s, e in stray]))


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
    """Per-line cleanup: headings to bare lines, list markers stripped, rules and blanks dropped.

    A heading whose section ended up empty (e.g. "References" after refs were removed) is dropped:
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
        line = _LIST.sub("", line).strip()
        if line:
            lines.append((line, False))
    kept: list[str] = []
    for i, (line, is_heading) in enumerate(lines):
        if is_heading and (i + 1 == len(lines) or lines[i + 1][1]):
            continue
        kept.append(line)
    return kept


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


def strip_wikitext(text: str) -> str:
    """Prose of a wikitext page, lines joined with "\\n" (empty string if nothing is left)."""
    text = _COMMENT.sub("", text)
    text = _CONVERSION.sub(_conversion, text)
    text = _REF_SELF.sub("", text)
    text = _NON_PROSE_TAGS.sub("", text)
    text = _remove_balanced(text, _TEMPLATE_TOKEN, "{{")
    text = _remove_balanced(text, _TABLE_TOKEN, "{|")
    text = _links(text)
    text = _EXTERNAL.sub(lambda m: m.group(1).strip(), text)
    text = _QUOTES.sub("", text)
    text = _MAGIC.sub("", text)
    text = _TAG.sub("", text)   # remaining inline tags (<small>, <span>, <br/>…): keep their text
    text = html.unescape(text).replace("\u00a0", " ")
    # The removals above can join pieces into a new comment or ref ("<!-{{x}}->" → "<!-->"), and
    # unescaping can spell one ("&lt;!--"): strip again until nothing changes (each pass shortens).
    while True:
        again = _TAG.sub("", _NON_PROSE_TAGS.sub("", _REF_SELF.sub("", _COMMENT.sub("", text))))
        if again == text:
            break
        text = again
    return "\n".join(_lines(text))
