"""corpus.clean: one example per cleaning rule, the CJK punctuation neighbour rule, code
byte-exactness, and idempotence as a hypothesis property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus.clean import clean


# --- control and zero-width characters ----------------------------------------------------------------

def test_control_chars_removed_but_tab_and_newline_kept() -> None:
    assert clean("a\x00b\x07c\x1bd\x7fe\x85f\ttab\nline", "en") == "abcdef tab\nline"


def test_zero_width_removed() -> None:
    assert clean("\ufeff中\u200b文\u200c测\u200d试\u2060好", "zh") == "中文测试好"


def test_exotic_spaces_become_space() -> None:
    assert clean("a\u00a0b\u3000c\u2009d", "en") == "a b c d"


def test_crlf_normalised() -> None:
    assert clean("one\r\ntwo\rthree", "en") == "one\ntwo\nthree"


# --- HTML -------------------------------------------------------------------------------------------------

def test_html_tags_removed_block_tags_break_lines() -> None:
    assert clean("<p>First</p><div class=\"x\">Second<br/>Third</div>", "en") == "First\n\nSecond\nThird"


def test_html_inline_tags_and_comments_and_scripts_removed() -> None:
    text = "a <b>bold</b> <span style='c'>x</span><!-- note --> y<script>var x=1;</script> z"
    assert clean(text, "en") == "a bold x y z"


def test_html_entities_decoded() -> None:
    assert clean("Tom&nbsp;&amp;&nbsp;Jerry &#20013;&#x6587; 1 &lt; 2", "en") == "Tom & Jerry 中文 1 < 2"


def test_angle_brackets_in_prose_survive() -> None:
    assert clean("if x<y and a <b and c> d", "en") == "if x<y and a <b and c> d"
    assert clean("unknown &foo; entity", "en") == "unknown &foo; entity"


# --- citations ----------------------------------------------------------------------------------------------

def test_baike_citation_marks_removed() -> None:
    assert clean("长江是亚洲第一长河[1]，全长6300千米[2-3]。源头[12]在青海[注1]。", "zh") == (
        "长江是亚洲第一长河，全长6300千米。源头在青海。"
    )


def test_citation_like_years_kept() -> None:
    assert clean("the [2019] edition and [a] note", "en") == "the [2019] edition and [a] note"


# --- wiki leftovers --------------------------------------------------------------------------------------

def test_wiki_leftovers_removed() -> None:
    text = "__TOC__\n'''Bold''' and ''italic'' [[Target|link text]] [[Plain]] {{stray}}\n{|\n|-\n| name = value\n||\nAfter"
    assert clean(text, "en") == "Bold and italic link text Plain stray\nAfter"


def test_single_apostrophe_kept() -> None:
    assert clean("rock 'n' roll isn't dead", "en") == "rock 'n' roll isn't dead"


# --- whitespace --------------------------------------------------------------------------------------------

def test_whitespace_runs_collapsed_and_lines_stripped() -> None:
    assert clean("  a \t  b   \n\tc  ", "en") == "a b\nc"


def test_blank_line_runs_collapse_to_one() -> None:
    assert clean("a\n\n\n\n\nb\n\nc\n\n\n", "en") == "a\n\nb\n\nc"


def test_fenced_code_in_prose_keeps_indentation() -> None:
    text = "Solution:\n```python\ndef f(x):   \n\n\n\n    return  x\n```\nDone   here"
    assert clean(text, "en") == "Solution:\n\n```python\ndef f(x):\n\n\n\n    return  x\n```\n\nDone here"


# --- zh width normalisation ---------------------------------------------------------------------------------

def test_fullwidth_letters_digits_to_halfwidth() -> None:
    assert clean("ＡＢＣ１２３ｘｙｚ", "zh") == "ABC123xyz"


def test_fullwidth_punctuation_kept_in_zh() -> None:
    assert clean("你好，世界！（注）", "zh") == "你好，世界！（注）"


def test_halfwidth_punct_between_cjk_becomes_fullwidth() -> None:
    assert clean("中文,测试.好:是;对!吗?嗯", "zh") == "中文，测试。好：是；对！吗？嗯"
    assert clean("中文, 测试", "zh") == "中文，测试"


def test_punct_neighbour_rule_keeps_ascii_next_to_non_cjk() -> None:
    # English inside Chinese, numbers and a URL: one neighbour is not CJK, so ASCII stays.
    text = "他说Hello, world.圆周率3.14很有名,见example.com和v2.0版"
    assert clean(text, "zh") == "他说Hello, world.圆周率3.14很有名，见example.com和v2.0版"


def test_en_not_width_normalised_for_punct() -> None:
    assert clean("中文,测试", "en") == "中文,测试"


# --- code ---------------------------------------------------------------------------------------------------

def test_code_byte_exact_except_trailing_whitespace() -> None:
    src = "def f():\t \r\n\n\n\n    x  =  [1]  # [2]\n\treturn x<y &amp; '''doc'''   \n\u200b\n"
    expected = "def f():\n\n\n\n    x  =  [1]  # [2]\n\treturn x<y &amp; '''doc'''\n\u200b\n"
    assert clean(src, "code") == expected


def test_code_without_trailing_whitespace_unchanged() -> None:
    src = "  int main() {\n\n\n\n\treturn 0;\n}\n"
    assert clean(src, "code") == src


def test_unknown_lang_rejected() -> None:
    with pytest.raises(ValueError, match="fr"):
        clean("x", "fr")


# --- idempotence ---------------------------------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    list("ab中文 \t\n\r,.:;!?[]{}|'_-<>&#;/=\"") + ["\u200b", "\x00", "\u3000", "Ａ", "１", "[1]", "[注2]",
    "<br>", "</p>", "&amp;", "&lt;", "&#20013;", "&nbsp;", "[[", "]]", "{{", "'''", "__TOC__", "```", "\n| a = b\n",
    "{|", "|-", "<!--", "-->", "<b x=\"1\">", "...", "……"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=60).map("".join), st.sampled_from(["zh", "en", "code"]))
def test_clean_is_idempotent(text: str, lang: str) -> None:
    once = clean(text, lang)
    assert clean(once, lang) == once


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["zh", "en", "code"]))
def test_clean_is_idempotent_on_any_unicode(text: str, lang: str) -> None:
    once = clean(text, lang)
    assert clean(once, lang) == once


# --- the shortcuts: a stage skipped only where it would change nothing ---------------------------------

def _clean_every_stage(text: str, lang: str) -> str:
    """clean() with every substitution and table applied unconditionally (no 'is there anything to
    do' checks): the definition the fast path must equal."""
    import corpus.clean as c

    if lang == "code":
        return c._TRAILING_WS.sub("", text)

    def segment(t: str) -> str:
        t = c._NEWLINES.sub("\n", t)
        t = c._HTML_DROP.sub("", t)
        t = c._BLOCK_TAG.sub("\n", t)
        t = c._INLINE_TAG.sub("", t)
        t = c._ENTITY.sub(c._decode_entity, t)
        t = t.translate(c._ZH_TABLE if lang == "zh" else c._PROSE_TABLE)
        t = c._CITATION.sub("", t)
        t = c._WIKI_LINK.sub(r"\1", t)
        t = c._WIKI_STRAY.sub("", t)
        t = c._WIKI_LINE.sub("", t)
        if lang == "zh":
            t = c._CJK_PUNCT.sub(c._full_punct, t)
        t = c._SPACE_RUN.sub(" ", t)
        t = c._LINE_EDGES.sub("", t)
        t = c._BLANK_RUN.sub("\n\n", t)
        return t.strip("\n")

    def once(t: str) -> str:
        if "```" not in t:
            return segment(t)
        out, pos = [], 0
        for m in c._FENCE.finditer(t):
            before = segment(t[pos:m.start()])
            if before:
                out.append(before)
            out.append(c._TRAILING_WS.sub("", m.group(0)).strip("\n"))
            pos = m.end()
        rest = segment(t[pos:])
        if rest:
            out.append(rest)
        return "\n\n".join(out)

    for _ in range(8):
        new = once(text)
        if new == text:
            break
        text = new
    return text


_EDGY = st.sampled_from(list(" \t\n\r\x0b\x0c\x85\xa0\u2003\u3000\uff11\uff41中文ab.,:;!?|{}[]'_=-<>&#") +
                        ["  ", " \n", "\n ", "\n\n\n", "\t\r\n", "中,文", "中. 文", "[1]", "&amp;", "<br>", "```",
                         "[[a|b]]", "{|", "| a = b", "__TOC__", "\x00", "\u200b", "\ufeff"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_EDGY, max_size=50).map("".join), st.sampled_from(["zh", "en", "code"]))
def test_clean_equals_every_stage_applied(text: str, lang: str) -> None:
    assert clean(text, lang) == _clean_every_stage(text, lang)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200), st.sampled_from(["zh", "en", "code"]))
def test_clean_equals_every_stage_applied_on_any_unicode(text: str, lang: str) -> None:
    assert clean(text, lang) == _clean_every_stage(text, lang)
