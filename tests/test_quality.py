"""corpus.quality: each rule passes a hand-written good document and fails a crafted bad one,
the first-failing-rule order, thresholds from YAML, and the harmful-content density rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.config import ConfigError
from corpus.quality import (
    RULE_NAMES,
    QualityConfig,
    check,
    dup_ngram_fraction,
    harmful_density,
    load_quality_config,
    top_ngram_fraction,
)

REPO = Path(__file__).resolve().parents[1]
CFG = QualityConfig()

GOOD_ZH = (
    "长江是亚洲第一长河，也是世界第三长河。它发源于青藏高原唐古拉山脉各拉丹冬峰的西南侧，"
    "干流流经青海、西藏、四川、云南、重庆、湖北、湖南、江西、安徽、江苏和上海，最后在崇明岛以东注入东海。\n\n"
    "长江流域气候温暖湿润，水量丰沛，自古以来就是中国重要的农业区。沿岸分布着许多历史名城，"
    "例如武汉、南京和重庆。三峡工程建成以后，防洪、发电与航运的能力都得到了显著提高。"
)

GOOD_EN = (
    "The river rises on the high plateau and flows east for more than six thousand kilometres before it "
    "reaches the sea near a busy port city. Along the way it drains a basin that is home to hundreds of "
    "millions of people, and its water has supported farming, trade and fishing for thousands of years.\n\n"
    "Engineers have built several large dams on the main stream. They were designed to control floods, "
    "to generate electricity and to make navigation easier for ships that carry grain, coal and steel "
    "between inland towns and the coast."
)


def test_good_documents_pass_every_rule() -> None:
    assert check(GOOD_ZH, "zh", CFG) is None
    assert check(GOOD_EN, "en", CFG) is None


# --- one passing and one failing example per rule -------------------------------------------------------

def test_length_zh_counts_characters() -> None:
    assert check("长江是亚洲第一长河。", "zh", CFG) == "length"
    assert check(GOOD_ZH, "zh", QualityConfig(max_chars_zh=50)) == "length"


def test_length_en_counts_words() -> None:
    assert check("A short note about rivers and the sea.", "en", CFG) == "length"
    assert check(GOOD_EN, "en", QualityConfig(min_words_en=50)) is None
    assert check(GOOD_EN, "en", QualityConfig(min_words_en=200)) == "length"


def test_code_gets_only_length() -> None:
    code = "#!/bin/sh\n# ... ... ...\n" + "echo hi\n" * 50   # would fail symbol and duplicate-line rules as prose
    assert check(code, "code", CFG) is None
    assert check("x=1", "code", CFG) == "length"


def test_cjk_ratio() -> None:
    mostly_latin = "这是" + " ".join(f"item{i} value{i * 7} label{i * 3}" for i in range(20))
    assert check(mostly_latin, "zh", CFG) == "cjk_ratio"
    assert check(GOOD_ZH, "zh", QualityConfig(min_cjk_ratio=0.5)) is None


def test_symbol_ratio() -> None:
    hashtags = GOOD_EN + "\n" + " ".join(f"#tag{i}" for i in range(12))
    assert check(hashtags, "en", CFG) == "symbol_ratio"
    zh = GOOD_ZH + "……" * 30
    assert check(zh, "zh", CFG) == "symbol_ratio"
    assert check(GOOD_ZH.replace("，例如", "……例如"), "zh", CFG) is None


def test_bullet_lines() -> None:
    lines = ["• first item about the river", "• second item on the dams", "• third item on the ports",
             "• fourth item about floods", "• fifth item about fishing and trade in the old towns"]
    doc = "\n".join(lines) + "\n" + "\n".join("- " + w for w in GOOD_EN.replace("\n\n", " ").split(". "))
    assert check(doc, "en", CFG) == "bullet_lines"
    assert check(doc, "en", QualityConfig(max_bullet_lines=1.0)) is None


def test_ellipsis_lines() -> None:
    teasers = "\n".join(s + "..." for s in GOOD_EN.split(". "))
    assert check(teasers, "en", CFG) == "ellipsis_lines"
    assert check("\n".join(GOOD_EN.split(". ")) + "\nRead more...", "en", CFG) is None


def test_alpha_words() -> None:
    figures = " ".join(str(1000 + i * 37) for i in range(40))
    assert check(GOOD_EN + "\nFigures: " + figures, "en", CFG) == "alpha_words"
    # a row of figures with no word in it is layout (a table, a benchmark's output): judged without it
    assert check(GOOD_EN + "\n" + figures, "en", CFG) is None


def test_mean_word_length() -> None:
    long_words = " ".join(f"supercalifragilistic{i}expialidocious" for i in range(60)) + " the and of"
    assert check(long_words, "en", CFG) == "mean_word_length"


def test_stop_words() -> None:
    no_stops = ("River basin drains vast lands. Dams control floods. Ships carry grain, coal, steel. "
                "Farmers grow rice near banks. Cities grew along shores. Fishing remains common. "
                "Tourists visit gorges every summer. Boats sail downstream quickly. Bridges cross wide "
                "channels. Ports handle containers daily. Engineers monitor sediment levels closely. "
                "Wetlands shelter migrating birds. Rains arrive mostly during summer months. ")
    assert check(no_stops, "en", CFG) == "stop_words"
    assert check(no_stops + "the and", "en", CFG) is None


def test_dup_lines() -> None:
    lines = GOOD_EN.split(". ")
    doc = "\n".join(lines + ["Subscribe"] * 12)
    assert check(doc, "en", CFG) == "dup_lines"
    relaxed = QualityConfig(max_dup_lines=0.7, top_ngram_max_en=[1.0] * 3, dup_ngram_max_en=[1.0] * 6)
    assert check(doc, "en", relaxed) is None


def test_dup_line_chars() -> None:
    lines = GOOD_EN.split(". ")
    long_line = "This long footer line about the terms of use of the website is repeated on every single page"
    doc = "\n".join(lines + [long_line] * 5)
    assert check(doc, "en", CFG) == "dup_line_chars"
    relaxed = QualityConfig(max_dup_line_chars=0.5, top_ngram_max_en=[1.0] * 3, dup_ngram_max_en=[1.0] * 6)
    assert check(doc, "en", relaxed) is None


def test_dup_paragraphs() -> None:
    # Many short repeated paragraphs: few characters but many paragraphs.
    doc = GOOD_EN + "\n\n" + "\n\n".join(["Share this.", "Share this.", "Share this.", "Share this."])
    assert check(doc, "en", QualityConfig(max_dup_lines=1.0)) == "dup_paragraphs"


def test_dup_paragraph_chars() -> None:
    p1, p2 = GOOD_ZH.split("\n\n")
    doc = "\n\n".join([p1, p2, p2])
    cfg = QualityConfig(max_dup_lines=1.0, max_dup_line_chars=1.0, max_dup_paragraphs=1.0)
    assert check(doc, "zh", cfg) == "dup_paragraph_chars"
    assert check(GOOD_ZH, "zh", cfg) is None


def test_top_ngram_en() -> None:
    spam = GOOD_EN + " " + " ".join(["cheap flights"] * 40)
    cfg = QualityConfig(max_dup_lines=1.0, max_dup_line_chars=1.0)
    assert check(spam, "en", cfg) == "top_2gram"


def test_top_ngram_zh_uses_characters() -> None:
    spam = GOOD_ZH + "好好" * 80
    assert check(spam, "zh", CFG) == "top_2gram"


def test_dup_ngram() -> None:
    # A sentence repeated inside one line: no duplicate lines, but repeated 5..10-grams.
    sentence = "三峡大坝是世界上最大的水力发电站之一，"
    doc = GOOD_ZH + sentence * 12
    assert check(doc, "zh", QualityConfig(top_ngram_max_zh=[1.0, 1.0, 1.0])) == "dup_5gram"
    cfg = QualityConfig(top_ngram_max_zh=[1.0, 1.0, 1.0], dup_ngram_max_zh=[1.0] * 6)
    assert check(doc, "zh", cfg) is None


def test_ngram_fractions_match_definitions() -> None:
    # ids a b a b c: top 2-gram "a b" occurs twice, 4 of 5 characters (weight 1 each).
    ids = np.array([1, 2, 1, 2, 3], dtype=np.uint64)
    w = np.ones(5, dtype=np.int64)
    assert top_ngram_fraction(ids, w, 2) == pytest.approx(4 / 5)
    # the second "a b" (positions 2..3) is the only repeated 2-gram occurrence
    assert dup_ngram_fraction(ids, w, 2) == pytest.approx(2 / 5)
    assert dup_ngram_fraction(ids, w, 3) == 0.0
    # weights are character counts (en words)
    assert dup_ngram_fraction(ids, np.array([1, 1, 1, 1, 6], dtype=np.int64), 2) == pytest.approx(2 / 10)


# --- order -------------------------------------------------------------------------------------------------

def test_first_failing_rule_is_reported() -> None:
    # Short AND repetitive AND mostly symbols: length comes first.
    assert check("# # # # …… ……", "zh", CFG) == "length"
    # Long enough, Latin-heavy and full of symbols: cjk_ratio precedes symbol_ratio.
    doc = "中文" + " ".join(f"#x{i}…" for i in range(60))
    assert check(doc, "zh", CFG) == "cjk_ratio"
    assert check(doc, "zh", QualityConfig(min_cjk_ratio=0.0)) == "punct_per_cjk"
    assert check(doc, "zh", QualityConfig(min_cjk_ratio=0.0, min_punct_per_cjk=0.0)) == "symbol_ratio"
    assert RULE_NAMES[:4] == ["length", "harmful", "spam", "cjk_ratio"]
    assert RULE_NAMES.index("dup_lines") < RULE_NAMES.index("top_2gram") < RULE_NAMES.index("dup_5gram")


def test_unknown_lang_rejected() -> None:
    with pytest.raises(ValueError, match="fr"):
        check(GOOD_EN, "fr", CFG)


# --- YAML -----------------------------------------------------------------------------------------------------

def test_shipped_yaml_equals_defaults() -> None:
    assert load_quality_config(REPO / "configs/corpus/filters.yaml") == QualityConfig()


def test_thresholds_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("min_words_en: 500\nmin_cjk_ratio: 0.9\n", encoding="utf-8")
    cfg = load_quality_config(path)
    assert cfg.min_words_en == 500 and cfg.min_cjk_ratio == 0.9
    assert check(GOOD_EN, "en", cfg) == "length"


def test_unknown_yaml_key_rejected_by_name(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("min_word_en: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="min_word_en"):
        load_quality_config(path)


def test_wrong_ngram_list_length_rejected(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("top_ngram_max_zh: [0.2, 0.1]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="top_ngram_max_zh"):
        load_quality_config(path)


# --- harmful content -------------------------------------------------------------------------------------

def test_harmful_zh_one_mention_passes_spam_fails() -> None:
    article = GOOD_ZH + "澳门以博彩业闻名，城内有多家赌场。"
    assert check(article, "zh", CFG) is None
    spam = ("真人荷官在线发牌，百家乐、时时彩、六合彩应有尽有，注册即送彩金。\n"
            "娱乐城官方网站，开户送彩金，赌场玩法天天更新，立即下注赢大奖。\n") + GOOD_ZH
    assert check(spam, "zh", CFG) == "harmful"


def test_harmful_en_one_mention_passes_spam_fails() -> None:
    article = GOOD_EN + " The port city also has a famous casino built in the nineteenth century."
    assert check(article, "en", CFG) is None
    spam = ("Best online casino! Free spins and a no deposit bonus for every new player. Play poker, "
            "baccarat and slot machines, win the jackpot. Click here, online gambling made easy.\n") + GOOD_EN
    assert check(spam, "en", CFG) == "harmful"


def test_harmful_density_weights_and_custom_list(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("# comment\n\nfoo\nbar @3\n", encoding="utf-8")
    weighted, density = harmful_density("foo bar foo", "en", str(words))
    assert weighted == 5.0
    assert density == pytest.approx(5.0 * 1000 / 11)


def test_bad_harmful_pattern_names_file_and_line(tmp_path: Path) -> None:
    words = tmp_path / "bad.txt"
    words.write_text("ok\n(unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.txt:2"):
        harmful_density("x", "en", str(words))


# --- the fast paths give exactly what their regex definitions give --------------------------------------

def _random_texts(seed: int, n: int = 400) -> list[str]:
    """Short texts that hit the edge cases: bullets, ellipses in runs, \\r, tabs, spam words glued
    to letters or punctuation, overlapping prefixes (xxxx), numbers and underscores."""
    import random

    rng = random.Random(seed)
    atoms = ["casino", "casinos", "online gambling", "poker", "xxx", "xxxx", "porn", "pornhub", "sex cams",
             "hot singles", "hot milf", "free spins", "sports betting", "sport", "click here", "buy now", "buy",
             "nude photos", "adult content", "cheap rolexes", "viagra", "the", "a", "word", "Casino", "POKER",
             "_poker", "2xxx", "é", "naïve", "½", "…", "……", "...", "....", "#", "•", "-", "–", "*", ">", "·",
             " ", " ", " ", "\t", "\n", "\n", "\r\n", "\n\n", ",", ".", "(", ")", "'", "\"", "-casino", "casino-",
             "赌场", "百家乐", "下注", "日赚100", "加QQ"]
    return ["".join(rng.choice(atoms) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def test_line_and_symbol_counts_equal_their_regexes() -> None:
    from corpus import quality as q

    for text in _random_texts(1, 2000):
        assert q._count_bullet_lines(text) == len(q._BULLET_LINE.findall(text)), repr(text)
        assert q._count_ellipsis_lines(text) == len(q._ELLIPSIS_END.findall(text)), repr(text)
        assert q._count_ellipses(text) == len(q._ELLIPSIS.findall(text)), repr(text)
        for w in text.split():   # the alpha-word shortcut never says "letter" where the regex would not
            assert not w.strip(q._PUNCT).isalpha() or q._HAS_ALPHA.search(w), w


def test_harmful_scan_at_literal_prefixes_equals_a_full_regex_scan(tmp_path: Path) -> None:
    """The en lexicon is matched only where a pattern's literal prefix occurs; the result must be
    the finditer count, for the shipped list and for patterns that start with a class or group
    (those groups fall back to the regex scan)."""
    from corpus import quality as q

    odd = tmp_path / "odd.txt"
    odd.write_text("\\bx+ @2\nxx\\d @2\n[ch]asino\n(?:poker|sex) cams?\nhot \\w+ @3\nporn\\w*\n", encoding="utf-8")
    for path in (None, str(odd)):
        lex = q._lexicon("en", path)
        for text in _random_texts(2, 1500):
            scan = text.lower()
            for (weight, pattern), prefixes in zip(lex.groups, lex.prefixes):
                slow = [m.span() for m in pattern.finditer(scan)]
                fast = [m.span() for m in (pattern.finditer(scan) if prefixes is None
                                           else q._matches_at_prefixes(pattern, scan, prefixes))]
                assert fast == slow, (text, pattern.pattern)
    lex = q._lexicon("en", str(odd))
    # weights 1 ("[ch]asino", a group) and 2 ("x+", a repeat) have no literal start; 3 has "hot "
    assert lex.prefixes == (None, None, ("hot ",))
    assert q._lexicon("en", None).prefixes[0] is not None            # the shipped list takes the fast path


def test_dup_ngram_fraction_equals_a_brute_force_count() -> None:
    # The sort-then-candidates shortcut against the definition, on token sequences with many,
    # few and no repeats: characters covered by an n-gram that already occurred earlier.
    rng = np.random.default_rng(3)
    for trial in range(200):
        size = int(rng.integers(0, 120))
        ids = rng.integers(0, int(rng.choice([2, 3, 8, 1000])), size=size).astype(np.uint64)
        w = rng.integers(1, 9, size=size).astype(np.int64)
        for n in range(2, 11):
            seen: set[tuple[int, ...]] = set()
            covered = np.zeros(size, dtype=bool)
            for i in range(size - n + 1):
                gram = tuple(ids[i:i + n].tolist())
                if gram in seen:
                    covered[i:i + n] = True
                seen.add(gram)
            expect = float(w[covered].sum() / w.sum()) if size >= n else 0.0
            assert dup_ngram_fraction(ids, w, n) == pytest.approx(expect), (trial, n)


# --- CJK-aware n-gram units (issue 13) ---------------------------------------------------------------------

def test_zh_units_cjk_characters_and_latin_words() -> None:
    from corpus.quality import zh_units

    assert zh_units("我用iPhone 15拍照，很清楚。") == ["我", "用", "iPhone", "15", "拍", "照", "很", "清", "楚"]
    assert zh_units("——“”（）《》") == []   # punctuation is not a unit


def test_repeated_product_name_counts_as_words_not_letters() -> None:
    # "ThinkPad" three times: with character units its letters made 5..10-grams repeat (8 characters,
    # each repeat a run of duplicate n-grams); as one word each it is three single units.
    doc = GOOD_ZH + "我的ThinkPad很好用，ThinkPad的键盘舒服，同事也买了ThinkPad。"
    from corpus.quality import _Doc

    d = _Doc(doc, "zh")
    ids, w = d.tokens("mixed")
    assert w.max() == len("ThinkPad") and (w == 1).sum() == w.size - 3
    old = dup_ngram_fraction(*d.tokens("chars"), 5)
    new = dup_ngram_fraction(ids, w, 5)
    assert old > 0 and new == 0.0
    assert check(doc, "zh", CFG) is None


def test_chars_units_keep_the_old_rule_for_comparison() -> None:
    cfg = QualityConfig(ngram_units_zh="chars", dup_ngram_max_zh=[0.15, 0.14, 0.13, 0.12, 0.11, 0.10],
                        top_ngram_max_zh=[0.20, 0.18, 0.16])
    sentence = "三峡大坝是世界上最大的水力发电站之一，"
    assert check(GOOD_ZH + sentence * 3, "zh", cfg) == "dup_5gram"
    with pytest.raises(ValueError, match="ngram_units_zh"):
        QualityConfig(ngram_units_zh="words")


def test_punct_per_cjk_rejects_keyword_lists() -> None:
    words = "\n".join(f"{w} {i} n" for i, w in enumerate(["长江", "黄河", "珠江", "淮河", "海河", "辽河"] * 10))
    assert check(words, "zh", CFG) == "punct_per_cjk"
    assert check(GOOD_ZH, "zh", CFG) is None


def test_terminal_lines_rejects_index_pages() -> None:
    index = "\n".join(f"function_{i}() (in module os{i})" for i in range(60)) + "\nthe and of the"
    assert check(index, "en", CFG) == "terminal_lines"
    assert check(GOOD_EN, "en", CFG) is None


def test_harmful_news_context_cancels_matches() -> None:
    report = ("本报讯记者报道：市公安局治安支队依法查处了一批提供色情服务的美容美发店，取缔色情网站三家。"
              "警方表示，将继续整治色情服务，打击违法犯罪。") + GOOD_ZH
    assert check(report, "zh", CFG) is None
    spam = "色情视频免费看，成人视频、激情视频每日更新，加微信看更多色情内容。\n" + GOOD_ZH
    assert check(spam, "zh", CFG) == "harmful"


def test_negative_weights_never_below_zero(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("foo @2\nnews @-5\n", encoding="utf-8")
    assert harmful_density("news news foo", "en", str(words))[0] == 0.0
    assert harmful_density("foo foo", "en", str(words))[0] == 4.0


def test_zh_unit_ids_at_numpy_speed_equal_the_regex_units() -> None:
    """The numpy unit ids (BMP text) against zh_units: equal ids exactly where the units are equal
    strings, weights = unit lengths; on generated text full of edge cases (digits, Latin words
    glued to CJK, fullwidth letters, underscores, kana, punctuation, an astral character)."""
    import random

    from corpus import quality as q

    rng = random.Random(5)
    atoms = ["长", "江", "单", "US", "us", "iPhone", "15", "ＡＢ", "_", "a_b", "é", "naïve", "カナ", "，", "。",
             "“", "”", " ", "\n", "x", "xx", "3.14", "-", "ThinkPad", "𠀀", "Ⅻ", "²"]
    for _ in range(500):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 60)))
        units = q.zh_units(text)
        ids, w = q._Doc(text, "zh").tokens("mixed")
        assert w.tolist() == [len(u) for u in units], text
        first: dict[str, int] = {}
        by_string = [first.setdefault(u, len(first)) for u in units]
        first_id: dict[int, int] = {}
        by_id = [first_id.setdefault(int(i), len(first_id)) for i in ids]
        assert by_id == by_string, text
    # CPython gives "US" and "单" the same str hash (same raw bytes): they must stay different units
    ids, _ = q._Doc("单US单US", "zh").tokens("mixed")
    assert ids[0] == ids[2] and ids[1] == ids[3] and ids[0] != ids[1]


# --- layout lines, hard-wrapped sentences, bulk-mail spam (issue 13, English) --------------------------------

def _quoted_reply() -> str:
    own = GOOD_EN + "\n\nI agree with the above and will check the figures again tomorrow morning."
    quoted = "\n".join("> " + line for line in "\n".join([GOOD_EN.replace(". ", ".\n")] * 3).split("\n"))
    return own + "\n\nOn Monday someone wrote:\n" + quoted + "\n> _______________\n> list footer http://x.org/l"


def test_quoted_reply_lines_are_not_bullets_or_repetition() -> None:
    from corpus import quality as q

    doc = _quoted_reply()
    assert check(doc, "en", CFG) is None
    # the straightforward reading: the same rules on the text with the quoted lines removed
    own = "\n".join(line for line in doc.split("\n") if not line.startswith(">"))
    assert q.failing_rules(doc, "en", CFG) == q.failing_rules(own, "en", CFG) == []
    # ... and without the layout view the quoted copy fails the bullet and repetition rules
    whole = q._Doc(doc, "en")
    assert q._fails_bullet_lines(whole, CFG) or q._fails_dup_lines(whole, CFG)
    # a mail that is all quote (too little own text to judge) is judged whole, as before
    only_quote = "thanks\n" + "\n".join("> " + w for w in GOOD_EN.replace("\n", " ").split(". ") * 3)
    assert q._own_view(q._Doc(only_quote, "en"), CFG).text == only_quote


def test_layout_lines() -> None:
    from corpus.quality import _LAYOUT_LINE

    for line in ("> quoted", "TP> quoted", ">> deeper", "| a | b |", "+----+----+", "http://example.org/x",
                 "  /usr/share/doc/lame/html/index.html", "<http://www.example.com/info/beta.htm>"):
        assert _LAYOUT_LINE.match(line), line
    for line in ("The river rises.", "a + b is c", "see http://x.org for more", "-h, --help  show help"):
        assert not _LAYOUT_LINE.match(line), line


def test_terminal_lines_counts_sentences_ending_mid_line() -> None:
    # hard-wrapped mail: no line ends with a full stop, sentences end inside them
    wrapped = ("Disney has named a new president of the parks, replacing the exec who did his best to\n"
               "cut spending at the expense of safety. The new president used to be head of the\n"
               "European park and is said to like it there, and so on and so on, with the rest of\n"
               "it left for the reader to find out in the article itself at the usual web place\n") * 4
    assert not _terminal(wrapped)
    assert _terminal(wrapped.replace(". The", ", the"))
    # a title, one sentence and a table: the table's rows are not lines without a sentence
    table = "6.6. Other clients\n\nHere are the other clients.\n\nTable 6.13. List\n\n" + "\n".join(
        f"|pkg{i} |V:{i} |{i} |TCP |the client of the thing |" for i in range(40))
    assert not _terminal(table)


def _terminal(text: str) -> bool:
    from corpus import quality as q

    return q._fails_terminal_lines(q._Doc(text, "en"), CFG)


SPAM = ("Dear Friend, you have been selected for this special offer! CLICK HERE to order now and save $50 "
        "on our amazing product. This is a limited time offer, there is no obligation and it is 100% risk-free. "
        "To be removed from our mailing list reply with remove in the subject. ") * 2


def test_spam_rule_catches_bulk_mail_and_passes_prose() -> None:
    from corpus.quality import failing_rules, spam_score

    assert "spam" in failing_rules(SPAM, "en", CFG)   # (its spam phrases are in the harmful lexicon too)
    assert check(SPAM, "en", QualityConfig(min_harmful_matches=1e9)) == "spam"
    assert "spam" not in failing_rules(SPAM, "en", QualityConfig(max_spam_score=1e9))
    assert spam_score(SPAM) >= CFG.max_spam_score > spam_score(GOOD_EN)
    assert check(GOOD_EN, "en", CFG) is None


def test_spam_rule_reads_the_configured_model(tmp_path: Path) -> None:
    from corpus.classifier import LinearClassifier, save_classifier
    from corpus.quality import spam_score

    model = tmp_path / "model.tsv"
    save_classifier(LinearClassifier({"order now": 3.0, "$": 1.0, "the": -0.5}, -2.0), model)
    cfg = QualityConfig(spam_en_model=str(model), max_spam_score=1.0)
    # each feature counts once, however often it occurs
    assert spam_score("Order now, order now! It is $5 or $10.", cfg) == pytest.approx(2.0)
    assert spam_score("the the the", cfg) == pytest.approx(-2.5)
    assert check(GOOD_EN + " Order now for $5.", "en", cfg) == "spam"
    assert check(GOOD_EN, "en", cfg) is None


@pytest.mark.parametrize("key", ["harmful_zh_file", "harmful_en_file", "spam_en_model"])
def test_a_missing_pattern_file_fails_when_the_config_loads(tmp_path, key):
    # not at the first document of a long build, as a FileNotFoundError
    cfg = tmp_path / "filters.yaml"
    cfg.write_text(f"{key}: {tmp_path / 'nope.txt'}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"{key}: no file .*nope.txt"):
        load_quality_config(cfg)


def test_layout_lines_of_any_length_do_not_backtrack() -> None:
    """A crawled page can hold one enormous line; the layout-line pattern once backtracked
    quadratically on runs of spaces or slashes (a 100,000-character line took ~2 minutes). A hang
    guard, not a speed target: linear matching takes milliseconds, quadratic would take hours."""
    import subprocess
    import sys

    code = ("from corpus.quality import check\n"
            "for bad in (' ' * 300000 + 'x', '/' * 300000 + ' a', '\\t' * 300000 + 'word'):\n"
            "    check('The river rises on the plateau and flows east to the sea. ' * 20 + '\\n' + bad, 'en')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
