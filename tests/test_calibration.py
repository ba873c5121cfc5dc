"""The quality rules on real text nobody here wrote (tests/data/real/calibration.jsonl, issue 13),
``corpus calibrate``'s input checks and figures, and the build report's per-rule samples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import InputDataError
from corpus.calibrate import evaluate, format_figures, load_labelled, old_rules
from corpus.quality import load_quality_config

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "data" / "real" / "calibration.jsonl"
SHIPPED = REPO / "configs" / "corpus" / "filters.yaml"


@pytest.fixture(scope="module")
def records():
    return load_labelled(REAL)


@pytest.fixture(scope="module")
def figures(records):
    return evaluate(records, load_quality_config(SHIPPED))


def test_calibration_set_has_every_kind_of_text(records) -> None:
    kinds = {(r.lang, r.label, r.genre) for r in records}
    for genre in ("news", "news-harmful-topic", "technical", "literary"):
        assert ("zh", "clean", genre) in kinds
    for genre in ("technical", "email", "legal", "literary"):
        assert ("en", "clean", genre) in kinds
    assert {g for lang, label, g in kinds if label == "junk"} >= {"keyword-list", "navigation", "spam",
                                                                     "annotated-corpus"}
    # Traditional Chinese handbook sections are there (one of the two failing sources)
    assert any("zh-tw" in r.source and r.label == "clean" for r in records)
    assert sum(r.label == "harmful" for r in records) >= 40


def test_real_clean_chinese_is_kept(figures) -> None:
    o = figures["overall"]
    assert o["clean_dropped_zh"] <= 0.02           # target ≤ 2 % (measured 0.4 %: 1 of 256)
    by = {(g["lang"], g["label"], g["genre"]): g for g in figures["groups"]}
    # the two cases: long news articles and technical handbook sections (Simplified and
    # Traditional); before, 9 of 110 articles and 82 of 90 sections were dropped
    for genre in ("news", "news-harmful-topic", "literary"):
        assert by[("zh", "clean", genre)]["dropped"] == 0, genre
    tech = by[("zh", "clean", "technical")]
    assert tech["documents"] >= 80 and tech["dropped"] <= 1


def test_real_clean_english_is_kept(figures) -> None:
    # target ≤ 2 %; measured 1.4 % (2 of 143: a mail of pasted benchmark output, a newsletter whose
    # four sections repeat the same paragraphs); old rules 15.4 %
    assert figures["overall"]["clean_dropped_en"] <= 0.02
    by = {(g["lang"], g["label"], g["genre"]): g for g in figures["groups"]}
    for genre in ("legal", "literary", "technical"):
        assert by[("en", "clean", genre)]["dropped"] == 0, genre
    rules = {r["rule"]: r for r in figures["rules"]}
    # layout lines: no clean en document is a "bullet list" of quoted lines or lacks sentence ends
    for rule in ("bullet_lines", "terminal_lines"):
        assert rules[rule]["false_positive_by_genre"].get("en/email", 0) == 0, rule
        assert rules[rule]["false_positive_by_genre"].get("en/technical", 0) == 0, rule


def test_spam_rule_spares_clean_mail_and_prose(records) -> None:
    from corpus.clean import clean
    from corpus.quality import failing_rules

    cfg = load_quality_config(SHIPPED)
    flagged = [r.where for r in records if r.lang == "en" and r.label == "clean"
               and "spam" in failing_rules(clean(r.text, r.lang), r.lang, cfg)]
    # measured: 0 of 143 (60 mails, 15 of them hard-ham commercial newsletters; handbooks, licences)
    assert len(flagged) <= 1, flagged


def _junk_by_form(figures) -> float:
    groups = [g for g in figures["groups"] if g["label"] == "junk" and g["genre"] != "spam"]
    return sum(g["dropped"] for g in groups) / sum(g["documents"] for g in groups)


def test_real_junk_is_dropped(figures) -> None:
    o = figures["overall"]
    assert o["junk_recall_zh"] >= 0.95              # target ≥ 95 % (measured 100 %)
    assert o["junk_recall"] >= 0.95                 # target ≥ 95 % (measured 97.2 %; old rules 43.8 %)
    # navigation pages, keyword lists, tagged corpora in both languages (measured 95.9 %)
    assert _junk_by_form(figures) >= 0.95
    by = {(g["lang"], g["label"], g["genre"]): g for g in figures["groups"]}
    for key in (("zh", "junk", "keyword-list"), ("zh", "junk", "annotated-corpus"), ("zh", "junk", "navigation"),
                ("en", "junk", "keyword-list")):
        assert by[key]["dropped"] == by[key]["documents"], key
    # prose spam mail, which no density rule sees: the spam classifier (corpus/data/spam_en_model.tsv,
    # trained on no document of this set) with the other rules takes 69 of 70 (77 % with the phrase
    # score before it, 56 % before that) and 29 of 30 harmful spam mails
    spam = by[("en", "junk", "spam")]
    assert spam["dropped"] / spam["documents"] >= 0.95
    harmful_spam = by[("en", "harmful", "spam")]
    assert harmful_spam["dropped"] / harmful_spam["documents"] >= 0.9


def test_text_repeated_whole_is_dropped(records) -> None:
    """The repetition limits are calibrated above Gopher's for en (its clean technical pages and
    mails repeat commands and log lines); text a machine repeated must still go: every clean
    document that passes is dropped once doubled, whole or line by line."""
    from corpus.clean import clean
    from corpus.quality import check

    cfg = load_quality_config(SHIPPED)
    kept = doubled = 0
    for r in records:
        if r.label != "clean":
            continue
        text = clean(r.text, r.lang)
        if check(text, r.lang, cfg) is not None:
            continue
        kept += 1
        by_line = "\n".join(line for line in text.split("\n") for line in (line, line))
        doubled += check(text + "\n\n" + text, r.lang, cfg) is not None and check(by_line, r.lang, cfg) is not None
    assert kept >= 390 and doubled == kept


def test_harmful_rule_precision_on_news_about_harmful_topics(figures) -> None:
    o = figures["overall"]
    assert o["harmful_precision"] >= 0.9            # flagged documents that deserved dropping
    assert o["harmful_clean_flagged"] == 0          # no news report on 扫黄 / 禁毒 / 赌博 flagged
    assert o["harmful_recall"] >= 0.6


@pytest.mark.slow
def test_new_rules_beat_the_old_ones_on_the_same_set(records, figures, tmp_path) -> None:
    # the rules before issue 13 (corpus.calibrate.old_rules; bench/quality.py prints both side by side)
    old = evaluate(records, old_rules(tmp_path))["overall"]
    new = figures["overall"]
    assert old["clean_dropped_zh"] >= 0.25 and new["clean_dropped_zh"] < old["clean_dropped_zh"] / 10
    assert new["junk_recall_zh"] > old["junk_recall_zh"]
    assert old["harmful_clean_flagged"] >= 1 and new["harmful_clean_flagged"] == 0


def test_first_failing_rule_is_what_check_returns(records) -> None:
    from corpus.clean import clean
    from corpus.quality import check, failing_rules

    cfg = load_quality_config(SHIPPED)
    for r in records[::7]:
        text = clean(r.text, r.lang)
        fails = failing_rules(text, r.lang, cfg)
        assert check(text, r.lang, cfg) == (fails[0] if fails else None), r.where


def test_figures_per_rule_name_every_rule_and_print(figures) -> None:
    names = [r["rule"] for r in figures["rules"]]
    assert names[:3] == ["length", "harmful", "spam"] and "punct_per_cjk" in names and "terminal_lines" in names
    text = format_figures(figures)
    assert "clean zh dropped" in text and "per rule" in text and "dup_5gram" in text


# --- bad input names the file and line ---------------------------------------------------------------------

@pytest.mark.parametrize("line, match", [
    ('{"text": "x", "lang": "zh"}', r":2: missing key\(s\) label"),
    ('{"text": "x", "lang": "zh", "label": "spam"}', r":2: label 'spam' is not one of clean, junk, harmful"),
    ('{"text": "x", "lang": "fr", "label": "clean"}', r":2: lang 'fr'"),
    ('{"text": 3, "lang": "zh", "label": "clean"}', r":2: text is a JSON int"),
    ('{"text": "x", ', r":2:"),
])
def test_bad_labelled_line_names_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    path = tmp_path / "labelled.jsonl"
    path.write_text('{"text": "好", "lang": "zh", "label": "clean"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputDataError, match="labelled.jsonl" + match):
        load_labelled(path)


def test_cli_prints_figures_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    prose = ("长江是亚洲第一长河，也是世界第三长河。它发源于青藏高原，干流流经青海、西藏、四川、云南、重庆、"
             "湖北、湖南、江西、安徽、江苏和上海，最后注入东海。长江流域气候温暖湿润，自古以来就是重要的农业区。")
    rows = [{"text": prose, "lang": "zh", "label": "clean", "genre": "g"},
            {"text": "\n".join(f"词{i} {i}" for i in range(80)), "lang": "zh", "label": "junk", "genre": "list"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "corpus", "calibrate", "--labelled", str(path), "--json"],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    o = json.loads(run.stdout)["overall"]
    assert o["clean_dropped_zh"] == 0.0 and o["junk_recall_zh"] == 1.0
    path.write_text('{"text": "x", "lang": "zh"}\n', encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "corpus", "calibrate", "--labelled", str(path)],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and f"{path}:1: missing key(s) label" in run.stderr


# --- the build report: per rule, how many it dropped and a few of them ------------------------------------

def _fake_build(out: Path) -> None:
    """A report.json as the pipeline writes it, with each source's audit sample beside it."""
    sources = []
    audits = {"news": [("dup_5gram", "长沙市着手整治所谓美容美发店\n本报长沙１月１０日电"), ("dup_5gram", "第二篇"),
                       ("dup_5gram", "第三篇"), ("dup_5gram", "第四篇"), ("length", "短")],
              "web": [("harmful", "Best *online* casino | free spins " + "x" * 400)]}
    rejected = {"news": {"dup_5gram": 7, "length": 1}, "web": {"harmful": 2, "dup_5gram": 1}}
    for name, audit in audits.items():
        folder = out / name
        folder.mkdir(parents=True)
        (folder / "rejected.jsonl").write_text(
            "".join(json.dumps({"id": f"{name}-{i}", "rule": r, "text": t}, ensure_ascii=False) + "\n"
                    for i, (r, t) in enumerate(audit)), encoding="utf-8")
        sources.append({"name": name, "build": None, "prepare": {
            "kept": 10, "rejected": rejected[name], "exact_duplicates": 0, "near_duplicates": 0,
            "skipped_by_reader": {}, "audit": str(folder / "rejected.jsonl")}})
    (out / "report.json").write_text(json.dumps({"sources": sources, "config": {}}), encoding="utf-8")


def test_report_lists_each_rule_with_counts_and_three_snippets(tmp_path: Path) -> None:
    from corpus.report import rule_samples, write_report

    out = tmp_path / "out"
    _fake_build(out)
    rules = rule_samples(json.loads((out / "report.json").read_text()), out)
    assert [r for r, _, _ in rules] == ["dup_5gram", "harmful", "length"]     # most documents first
    rule, per_source, snippets = rules[0]
    assert per_source == {"news": 7, "web": 1}
    assert [s for _, s in snippets] == ["长沙市着手整治所谓美容美发店 本报长沙１月１０日电", "第二篇", "第三篇"]
    md = write_report(out).read_text(encoding="utf-8")
    assert "### `dup_5gram`: 8 documents" in md and "news 7, web 1" in md
    assert "> news: 长沙市着手整治所谓美容美发店 本报长沙１月１０日电" in md
    # snippets are one line, Markdown-escaped, and short
    line = next(l for l in md.splitlines() if l.startswith("> web:"))
    assert "\\*online\\*" in line and "\\|" in line and line.rstrip().endswith("…") and len(line) < 200


def test_report_without_audit_file_still_counts(tmp_path: Path) -> None:
    from corpus.report import write_report

    out = tmp_path / "out"
    _fake_build(out)
    (out / "web" / "rejected.jsonl").unlink()
    md = write_report(out).read_text(encoding="utf-8")
    assert "### `harmful`: 2 documents" in md and "> web:" not in md
