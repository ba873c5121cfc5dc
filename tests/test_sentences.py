"""corpus.sentences: the split rules by example, and losslessness/monotonicity as properties."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus import sentences as S
from corpus.sentences import LANGS, line_ends, sentence_ends, split

TEXT_LANGS = ("zh", "en")
# Whitespace the splitter knows; a piece made only of these would be a useless sample boundary.
SPLITTER_WS = set(" \t\x0b\x0c\u00a0\u3000\r\n")


def pieces_of(data: bytes, ends: np.ndarray) -> list[bytes]:
    return [data[a:b] for a, b in zip([0, *ends.tolist()[:-1]], ends.tolist())]


# ---------------------------------------------------------------------------------------------
# zh


def test_zh_each_terminator_ends_a_sentence_and_stays_with_it():
    assert split("你好。我很好！真的吗？是的；好", "zh") == ["你好。", "我很好！", "真的吗？", "是的；", "好"]


def test_zh_terminator_runs_stay_together():
    assert split("真的吗？！好的。。然后?!再见", "zh") == ["真的吗？！", "好的。。", "然后?!", "再见"]


def test_zh_closing_quotes_and_brackets_stay_with_the_sentence_they_close():
    text = "他说：“你好。”她笑了。「走吧！」『好？』（完。）【注。】《书。》‘是。’〔甲。〕〈乙！〉"
    got = split(text, "zh")
    assert got == [
        "他说：“你好。”", "她笑了。", "「走吧！」", "『好？』", "（完。）", "【注。】", "《书。》",
        "‘是。’", "〔甲。〕", "〈乙！〉",
    ]
    # The original CaMA splitter began the next sentence with the closer.
    assert not any(p[0] in "”’」』）】》〕〉" for p in got)


def test_zh_quote_followed_by_a_comma_is_inside_a_longer_sentence():
    assert split("“好！”，他说。然后走了", "zh") == ["“好！”，他说。", "然后走了"]


def test_zh_spaces_after_a_terminator_go_to_the_next_sentence():
    assert split("第一句。 第二句。\t第三句", "zh") == ["第一句。", " 第二句。", "\t第三句"]


def test_zh_line_breaks_end_sentences_and_belong_to_the_one_before():
    text = "第一段。\n第二段\n\n第三段。\r\n第四段。  \n　　第五段"
    assert split(text, "zh") == ["第一段。\n", "第二段\n\n", "第三段。\r\n", "第四段。  \n", "　　第五段"]


def test_zh_no_piece_is_only_line_breaks():
    got = split("甲。\n\n\n乙！\r\n\r\n丙\n", "zh")
    assert got == ["甲。\n\n\n", "乙！\r\n\r\n", "丙\n"]


def test_zh_ellipsis_alone_is_not_a_terminator():
    assert split("他想了想……然后走了。", "zh") == ["他想了想……然后走了。"]
    assert split("他想了想……。然后走了", "zh") == ["他想了想……。", "然后走了"]


def test_zh_fullwidth_dot_is_a_decimal_point_before_a_digit():
    assert split("圆周率是３．１４．对", "zh") == ["圆周率是３．１４．", "对"]


def test_zh_ascii_terminators_split_unless_glued_to_ascii():
    assert split("你好!我是张三?好的;走", "zh") == ["你好!", "我是张三?", "好的;", "走"]
    assert split("访问http://x.cn/?q=1&a=2获取", "zh") == ["访问http://x.cn/?q=1&a=2获取"]


def test_zh_mode_splits_english_sentences_by_the_en_rules():
    text = "我喜欢Python. It is great. Mr. Smith agrees. 我也是。版本v2.0发布"
    assert split(text, "zh") == [
        "我喜欢Python.", " It is great.", " Mr. Smith agrees.", " 我也是。", "版本v2.0发布",
    ]


# ---------------------------------------------------------------------------------------------
# en


def test_en_basic_sentences():
    assert split("Hello world. This is a test! Is it? Yes.", "en") == [
        "Hello world.", " This is a test!", " Is it?", " Yes.",
    ]


def test_en_no_split_before_lowercase():
    assert split("He said hi. then he left.", "en") == ["He said hi. then he left."]


def test_en_runs_and_closers():
    text = 'Really?! "Yes." (Fine.) Next'
    assert split(text, "en") == ["Really?!", ' "Yes."', " (Fine.)", " Next"]


@pytest.mark.parametrize(
    "abbr",
    ["Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Sr.", "Jr.", "St.", "vs.", "e.g.", "i.e.", "cf.",
     "Inc.", "Ltd.", "Co.", "Corp.", "No.", "Fig.", "Vol.", "pp.", "Jan.", "Sept.", "Dec.",
     "U.S.", "U.K.", "a.m.", "p.m."],
)
def test_en_no_split_after_abbreviations(abbr):
    text = f"We met {abbr} Smith there. Then we left."
    assert split(text, "en") == [f"We met {abbr} Smith there.", " Then we left."]


def test_en_initials_do_not_end_sentences():
    text = "J. K. Rowling wrote it. Then she rested."
    assert split(text, "en") == ["J. K. Rowling wrote it.", " Then she rested."]


def test_en_decimals_versions_and_domains_never_split():
    text = "Pi is 3.14 and v2.0 ships 1.5M units via example.com today. Done."
    assert split(text, "en") == ["Pi is 3.14 and v2.0 ships 1.5M units via example.com today.", " Done."]


def test_en_mixed_with_cjk():
    assert split("I agree.我同意。Good", "en") == ["I agree.", "我同意。", "Good"]


def test_semicolon_ends_a_sentence_in_zh_only():
    assert split("First part; Second part", "en") == ["First part; Second part"]
    assert split("First part; Second part", "zh") == ["First part;", " Second part"]


def test_en_ellipsis():
    text = "Wait... Then go. Wait... then go. 我想...算了"
    assert split(text, "en") == ["Wait...", " Then go.", " Wait... then go.", " 我想...算了"]


def test_en_line_breaks_and_trailing_spaces():
    text = "\n\n  Hello.  \n  \nWorld  \nMr.\nSmith.   "
    assert split(text, "en") == ["\n\n  Hello.  \n  \n", "World  \n", "Mr.\n", "Smith.   "]


def test_abbreviation_list_keeps_the_plain_end_shortcut_valid():
    # _ASCII_PLAIN_END treats "<4 lowercase letters>. Capital" as certain: no abbreviation may
    # end that way.
    assert not [a for a in S.ABBREVIATIONS if re.search(r"[a-z]{4}$", a)]


# ---------------------------------------------------------------------------------------------
# code

PYTHON = '''import os


# helper for f
@decorator
@other(x=1)
def f():
    return 1
x = 1
class A:

    def g(self):
        pass
async def h():
    pass
'''


def test_code_blocks_blank_lines_definitions_decorators_and_comments():
    assert split(PYTHON, "code") == [
        "import os\n\n\n",
        "# helper for f\n@decorator\n@other(x=1)\ndef f():\n    return 1\nx = 1\n",
        "class A:\n\n",
        "    def g(self):\n        pass\n",
        "async def h():\n    pass\n",
    ]


def test_code_blocks_in_other_languages():
    assert split("function a() {}\nfunction b() {}\n", "code") == ["function a() {}\n", "function b() {}\n"]
    go = "package main\nfunc main() {\n}\nfunc (r *R) M() {\n}\n"
    assert split(go, "code") == ["package main\n", "func main() {\n}\n", "func (r *R) M() {\n}\n"]
    rust = "use x;\n#[derive(Debug)]\npub struct S;\n/// doc\nimpl<T> S {}\n"
    assert split(rust, "code") == ["use x;\n", "#[derive(Debug)]\npub struct S;\n", "/// doc\nimpl<T> S {}\n"]
    java = "}\n/**\n * Doc.\n */\n@Override\npublic void run() {}\n"
    assert split(java, "code") == ["}\n", "/**\n * Doc.\n */\n@Override\npublic void run() {}\n"]


def test_code_comment_block_at_the_top_and_non_definitions():
    text = "# license\n# more\ndef f():\n    type = 1\nclassify = 2\n# note\nx = 3\n"
    assert split(text, "code") == [text]


def test_code_crlf_gives_the_same_blocks():
    lf = split(PYTHON, "code")
    crlf = split(PYTHON.replace("\n", "\r\n"), "code")
    assert crlf == [p.replace("\n", "\r\n") for p in lf]


def test_line_ends():
    data = b"a\nb\r\n\r\nc\n  \nd  \n"
    assert pieces_of(data, line_ends(data)) == [b"a\n", b"b\r\n\r\n", b"c\n  \n", b"d  \n"]
    data = b"x = 1\n    y = 2\n\n\nz"
    assert pieces_of(data, line_ends(data)) == [b"x = 1\n", b"    y = 2\n\n\n", b"z"]


def test_long_code_block_falls_back_to_lines():
    text = "def long():\n" + "".join(f"    v{i} = {i}\n" for i in range(50))
    data = text.encode()
    assert sentence_ends(data, "code").tolist() == [len(data)]
    assert len(line_ends(data)) == text.count("\n")


# ---------------------------------------------------------------------------------------------
# API


@pytest.mark.parametrize("lang", LANGS)
def test_empty_input(lang):
    ends = sentence_ends(b"", lang)
    assert ends.dtype == np.int64 and ends.size == 0
    assert line_ends(b"").size == 0
    assert split("", lang) == []


@pytest.mark.parametrize("lang", LANGS)
def test_whitespace_only_input_is_one_piece(lang):
    assert split(" \n\n \t\r\n", lang) == [" \n\n \t\r\n"]


def test_unknown_lang_names_it_and_the_known_ones():
    with pytest.raises(ValueError, match=r"'fr'.*\('zh', 'en', 'code'\)"):
        sentence_ends(b"x", "fr")


def test_accepts_bytes_like():
    data = "你好。再见".encode()
    expected = sentence_ends(data, "zh").tolist()
    assert sentence_ends(bytearray(data), "zh").tolist() == expected == [9, 15]
    assert sentence_ends(memoryview(data), "zh").tolist() == expected


def test_large_documents_take_the_numpy_path_with_the_same_result():
    rng = np.random.default_rng(0)
    parts = ["我们今天去公园。", "他说：“好！”", "Dr. Smith left. ", "It costs 3.5M!", "Next one? ",
             "真的吗？！", "\n", "\n\n", "……", "word. Then", "好的，", "a; b", " 你好!", "e.g. Foo"]
    text = "".join(rng.choice(parts, size=3000)).encode()
    assert len(text) > S._SMALL_TEXT
    for lang in TEXT_LANGS:
        expected = S._reference_ends(text, lang)
        assert np.array_equal(sentence_ends(text, lang), expected)
        assert np.array_equal(S._finish(S._text_ends(text, lang, small=True), text), expected)


# ---------------------------------------------------------------------------------------------
# properties

SPECIALS = list("。！？；．.!?;”’」』）)】》〕〉］]｝}\"'“「（，、：,:…")
SPECIALS += ["\n", "\r\n", "\r", " ", "\t", "\u3000", "\u00a0", "３", "1", "a", "A", "Mr", "e.g.",
             "你", "好", "😀", "é", "def ", "class ", "@d\n", "# c\n", "x = 1\n", "    "]
texts = st.lists(
    st.one_of(st.sampled_from(SPECIALS), st.characters(blacklist_categories=("Cs",))), max_size=40
).map("".join)


def check_ends(data: bytes, ends: np.ndarray) -> None:
    assert ends.dtype == np.int64
    if not data:
        assert ends.size == 0
        return
    assert ends[-1] == len(data)
    assert np.all(np.diff(ends) > 0) and ends[0] > 0
    assert all((data[e] & 0xC0) != 0x80 for e in ends.tolist()[:-1])  # on a character start


@settings(max_examples=250, deadline=None)
@given(text=texts)
def test_sentence_ends_properties(text):
    data = text.encode()
    for lang in LANGS:
        ends = sentence_ends(data, lang)
        check_ends(data, ends)
        pieces = pieces_of(data, ends)
        assert b"".join(pieces) == data
        if len(pieces) > 1:
            assert not any(set(p.decode()) <= SPLITTER_WS for p in pieces)
        assert np.array_equal(ends, S._reference_ends(data, lang))
    lines = line_ends(data)
    check_ends(data, lines)
    assert np.array_equal(lines, S._reference_line_ends(data))
    # Code blocks are made of whole lines.
    assert set(sentence_ends(data, "code").tolist()) <= set(lines.tolist())


@settings(max_examples=150, deadline=None)
@given(text=texts)
def test_both_candidate_finders_agree(text):
    data = text.encode()
    for lang in TEXT_LANGS:
        small = S._finish(S._text_ends(data, lang, small=True), data)
        large = S._finish(S._text_ends(data, lang, small=False), data)
        assert np.array_equal(small, large)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=())))
def test_split_is_lossless_for_any_str(text):
    for lang in LANGS:
        assert "".join(split(text, lang)) == text
