"""Text cleaning: the normalisation every document gets before the quality filters and dedup see it.

``clean(text, lang)`` is a pure function of its arguments (lang is ``zh``, ``en`` or ``code``), so the
build can run it in any process and stay byte-identical across worker counts. It is idempotent —
``clean(clean(x)) == clean(x)`` — which matters because dedup hashes cleaned text and a rebuild may
clean already-cleaned data; we get this by running the stages to a fixpoint (usually one extra,
cheap pass that changes nothing).

What it does, in order (prose = zh and en):

1. line endings: ``\\r\\n`` and ``\\r`` become ``\\n``;
2. HTML remnants: ``<script>``/``<style>`` blocks and ``<!-- comments -->`` dropped; tags from a
   fixed list of HTML element names dropped (block tags such as ``<br>``, ``<p>``, ``</div>`` become a
   line break so paragraphs do not run together); entities (``&nbsp;``, ``&amp;``, ``&#12345;``,
   ``&#x4e2d;``) decoded. Only *known* tag names are touched so that prose such as ``a <b and c> d``
   or ``x<y`` survives;
3. control characters (C0 except ``\\t``/``\\n``, DEL, C1) and zero-width characters (U+200B–U+200D,
   U+2060, U+FEFF, soft hyphen U+00AD) deleted; exotic spaces (NBSP, U+2000–U+200A, U+202F,
   U+205F, ideographic space U+3000) become an ASCII space;
4. citation marks as Baidu Baike and scraped Wikipedia leave them: ``[1]``, ``[12]``, ``[2-3]``,
   ``[1,4]``, ``[注1]``/``[注 1]`` (Baike footnotes). Decision: ``[注1]`` *is* removed — it is a footnote
   pointer whose target the readers do not keep. Up to three digits only, so ``[2019]`` stays;
5. wiki leftovers: ``[[target|text]]`` → ``text``, stray ``[[ ]] {{ }}`` removed, bold/italic
   quote runs ``''``/``'''`` removed, magic words such as ``__TOC__`` removed, table / template
   parameter lines (``{|``, ``|}``, ``|-``, ``| key = value``, lines of only pipes) removed;
6. zh only: fullwidth ASCII letters and digits (``Ａ１``) → halfwidth; halfwidth ``, . : ; ! ?``
   *between two CJK characters* → ``，。：；！？`` (spaces after the mark are dropped). Both
   neighbours must be CJK, so English text, numbers (``3.14``) and URLs inside Chinese keep ASCII;
7. whitespace: runs of spaces/tabs in a line → one space, lines stripped at both ends, runs of
   blank lines → one blank line, leading/trailing blank lines dropped.

Fenced code blocks (```` ``` ````) inside zh/en prose only get trailing whitespace stripped.
``lang="code"`` documents are left byte-exact except trailing whitespace (spaces, tabs, ``\\r``,
``\\f``, ``\\v``) at the end of each line — indentation, blank lines and every other byte are kept,
because whitespace is syntax in Python, Makefiles and YAML.
"""

from __future__ import annotations

import html
import re

__all__ = ["clean", "LANGS"]

LANGS = ("zh", "en", "code")

# --- character tables (str.translate is a single C loop: the cheapest way to map/delete chars) ----

_DELETE = (
    [c for c in range(0x00, 0x20) if c not in (0x09, 0x0A)]   # C0 controls except tab, newline
    + [0x7F]                                                    # DEL
    + list(range(0x80, 0xA0))                                   # C1 controls
    + [0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD]          # zero-width + soft hyphen
)
_SPACES = [0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000]

_PROSE_TABLE: dict[int, str | None] = {c: None for c in _DELETE}
_PROSE_TABLE.update({c: " " for c in _SPACES})

# zh: fullwidth digits/letters to ASCII. Fullwidth *punctuation* is left alone: it is the correct
# form in Chinese text.
_ZH_TABLE = dict(_PROSE_TABLE)
for _lo, _hi in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A)):
    for _c in range(_lo, _hi + 1):
        _ZH_TABLE[_c] = chr(_c - 0xFEE0)

# Every character either table changes, as one class: a regex scan for it is ~6x cheaper than
# str.translate's per-character dict lookup, and most documents contain none of them.
def _char_class(codes) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(codes)) + "]")


_PROSE_CHANGES = _char_class(_PROSE_TABLE)
_ZH_CHANGES = _char_class(_ZH_TABLE)

# --- compiled patterns ------------------------------------------------------------------------------

_NEWLINES = re.compile(r"\r\n?")

_BLOCK_TAGS = (
    "address|article|aside|blockquote|br|caption|center|dd|div|dl|dt|figcaption|figure|footer|"
    "h[1-6]|header|hr|li|main|nav|ol|p|pre|section|table|tbody|td|tfoot|th|thead|tr|ul"
)
_INLINE_TAGS = (
    "a|abbr|b|big|cite|code|del|em|font|i|img|ins|kbd|mark|nowiki|q|ref|references|s|samp|small|"
    "span|strike|strong|sub|sup|tt|u|var|wbr|html|head|body|meta|link|title|gallery|math|noinclude|"
    "includeonly|onlyinclude|poem"
)
# Attributes must look like attributes (name=value) so prose such as "a <b and c> d" is not a tag.
_ATTRS = r"""(?:\s+[\w:-]+\s*=\s*(?:"[^"<>]*"|'[^'<>]*'|[^\s"'<>]+))*\s*"""
_HTML_DROP = re.compile(r"<!--.*?(?:-->|\Z)|<(script|style)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.S | re.I)
_BLOCK_TAG = re.compile(rf"</?(?:{_BLOCK_TAGS}){_ATTRS}/?>", re.I)
_INLINE_TAG = re.compile(rf"</?(?:{_INLINE_TAGS}){_ATTRS}/?>", re.I)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")

_CITATION = re.compile(r"\[(?:\d{1,3}(?:\s*[-–,，、]\s*\d{1,3})*|注\s*\d{1,3})\]")

_WIKI_LINK = re.compile(r"\[\[(?:[^\[\]|\n]*\|)?([^\[\]\n]*)\]\]")
_WIKI_STRAY = re.compile(r"\[\[|\]\]|\{\{|\}\}|'{2,}|__[A-Z]{2,}__")
_WIKI_LINE = re.compile(r"^[ \t]*(?:\{\||\|\}|\|-|\|\+|\|[ \t]*[\w .-]*=|[|!]+[ \t]*$).*(?:\n|\Z)", re.M)

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_PUNCT = re.compile(rf"(?<=[{_CJK}])([,.:;!?]) *(?=[{_CJK}])")
# A necessary condition for a _CJK_PUNCT match without its look-behind, which made the scan try
# every position; this one only starts at the six marks.
_CJK_PUNCT_HINT = re.compile(rf"[,.:;!?] *(?=[{_CJK}])")
_PUNCT_FULL = {",": "，", ".": "。", ":": "：", ";": "；", "!": "！", "?": "？"}

_SPACE_RUN = re.compile(r"[ \t]+")
_LINE_EDGES = re.compile(r"^ | $", re.M)            # after _SPACE_RUN, edges hold at most one space
_BLANK_RUN = re.compile(r"\n{3,}")
_TRAILING_WS = re.compile(r"[ \t\r\f\v]+$", re.M)
_TRAILING_CHARS = ("", " ", "\t", "\r", "\f", "\v")   # "" for the empty text's text[-1:]
_FENCE = re.compile(r"^```.*?(?:^```[ \t]*$|\Z)", re.M | re.S)


def clean(text: str, lang: str) -> str:
    """Return ``text`` cleaned for ``lang`` ('zh', 'en' or 'code'); see the module docstring."""
    if lang == "code":
        return _clean_code(text)
    if lang not in ("zh", "en"):
        raise ValueError(f"clean: unknown lang {lang!r} (expected one of {', '.join(LANGS)})")
    # A stage can expose new work for an earlier one ("&amp;lt;" decodes to "&lt;", removing "[1]"
    # from "&am[1]p;" forms an entity), so iterate to a fixpoint; each changing pass removes or maps
    # characters, and ordinary text settles after one pass plus one confirming pass.
    for _ in range(8):
        new = _clean_prose_once(text, lang)
        if new == text:
            break
        text = new
    return text


def _clean_code(text: str) -> str:
    """Code is syntax: only trailing whitespace per line goes (it is invisible and never meaningful
    except in Markdown line breaks, which code files are not)."""
    # A trailing run ends right before a "\n" or at the end ("$" under re.M is nothing else), so
    # text without such a pair is already clean: a few C-speed finds instead of a regex scan.
    if text[-1:] in _TRAILING_CHARS or any(c + "\n" in text for c in _TRAILING_CHARS if c):
        return _TRAILING_WS.sub("", text)
    return text


def _clean_prose_once(text: str, lang: str) -> str:
    if "```" in text:
        return _clean_with_fences(text, lang)
    return _clean_prose_segment(text, lang)


def _clean_with_fences(text: str, lang: str) -> str:
    """Clean the prose around fenced code blocks and keep the blocks themselves (trailing whitespace
    aside), so a LeetCode-style solution embedded in Chinese text keeps its indentation."""
    out: list[str] = []
    pos = 0
    for m in _FENCE.finditer(text):
        before = _clean_prose_segment(text[pos : m.start()], lang)
        if before:
            out.append(before)
        out.append(_clean_code(m.group(0)).strip("\n"))
        pos = m.end()
    rest = _clean_prose_segment(text[pos:], lang)
    if rest:
        out.append(rest)
    return "\n\n".join(out)


def _clean_prose_segment(text: str, lang: str) -> str:
    if "\r" in text:
        text = _NEWLINES.sub("\n", text)
    text = _strip_html(text)
    if (_ZH_CHANGES if lang == "zh" else _PROSE_CHANGES).search(text):
        text = text.translate(_ZH_TABLE if lang == "zh" else _PROSE_TABLE)
    if "[" in text:
        text = _CITATION.sub("", text)
    text = _strip_wiki(text)
    if lang == "zh" and _CJK_PUNCT_HINT.search(text):
        text = _CJK_PUNCT.sub(_full_punct, text)
    return _normalise_whitespace(text)


def _strip_html(text: str) -> str:
    """Tags and entities; checks for '<' / '&' first because most documents have neither."""
    if "<" in text:
        text = _HTML_DROP.sub("", text)
        text = _BLOCK_TAG.sub("\n", text)
        text = _INLINE_TAG.sub("", text)
    if "&" in text:
        text = _ENTITY.sub(_decode_entity, text)
    return text


def _decode_entity(m: re.Match[str]) -> str:
    # html.unescape knows all HTML5 names and maps invalid code points to U+FFFD; an unknown name
    # comes back unchanged, which is what we want for "&foo;" in prose.
    return html.unescape(m.group(0))


def _strip_wiki(text: str) -> str:
    if "[[" in text:
        text = _WIKI_LINK.sub(r"\1", text)
    if "[[" in text or "]]" in text or "{{" in text or "}}" in text or "''" in text or "__" in text:
        text = _WIKI_STRAY.sub("", text)
    if "|" in text or "!" in text:
        text = _WIKI_LINE.sub("", text)
    return text


def _full_punct(m: re.Match[str]) -> str:
    return _PUNCT_FULL[m.group(1)]


def _normalise_whitespace(text: str) -> str:
    # Each substitution runs only where it can change something (its regex is tried at every
    # position, which made these three a third of the cleaning time on already-clean text):
    # runs of [ \t] differ from " " only with a tab or two spaces; after that, a line edge holds
    # a space only next to a newline or at either end of the text.
    if "\t" in text or "  " in text:
        text = _SPACE_RUN.sub(" ", text)
    if text[:1] == " " or text[-1:] == " " or " \n" in text or "\n " in text:
        text = _LINE_EDGES.sub("", text)
    if "\n\n\n" in text:
        text = _BLANK_RUN.sub("\n\n", text)
    return text.strip("\n")
