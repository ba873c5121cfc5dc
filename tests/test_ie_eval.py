"""train.ie_eval: reading model output through formatting noise, and P/R/F1 against gold.

Model outputs here are given strings (what a model could write), not generated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.ie import Event, Schema, render_ee, render_ner, render_re
from train.ie_eval import (Counts, IECaseError, aggregate, format_table, main, norm, parse_answer, read_ie_cases,
                           score_case, score_outputs)

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "examples/data/ie_eval/cases.jsonl"
OUTPUTS = ROOT / "examples/data/ie_eval/outputs.jsonl"

NER = Schema(entity_types={"PER": "person", "LOC": "location", "ORG": "organization"})
NER_ZH = Schema(entity_types={"PER": "人物", "LOC": "地点", "ORG": "机构"})
RE = Schema(relation_types=["place of birth", "headquarters location", "founded by"])
EE = Schema(event_types={"Conflict:Attack": ["Attacker", "Target", "Place"], "Life:Die": ["Victim", "Place"]})
EE_ZH = Schema(event_types={"财经/交易-融资": ["融资方", "投资方", "融资金额"]})

NER_ITEMS = [("person", "Marie Curie"), ("location", "Warsaw")]


@pytest.mark.parametrize("text", [
    "(person, Marie Curie)\n(location, Warsaw)",                                  # the trained format
    "  (person ,  Marie Curie )  \n\n( location,Warsaw)",                         # spaces
    "（person，Marie Curie）\n（location，Warsaw）",                               # full-width brackets, comma
    "1. (person, Marie Curie)\n2. (location, Warsaw)",                            # numbering
    "1) (person, Marie Curie)\n2、(location, Warsaw)",
    "- (person, Marie Curie)\n* (location, Warsaw)",                              # bullets
    "• (Person, Marie Curie)\n• (LOCATION, Warsaw)",                              # type case
    "```\n(person, Marie Curie)\n(location, Warsaw)\n```",                        # code fence
    "```text\n(person, Marie Curie)\n(location, Warsaw)\n```\nThese are the entities I found.",
    "(person, Marie Curie)\n(location, Warsaw)\n### Instruction:\nnext prompt (person, X)",  # template junk after
    "(person, \"Marie Curie\")\n(location, 'Warsaw')",                            # quotes
    "(person, Marie Curie), (location, Warsaw)",                                  # two on one line
    "(Marie Curie, person)\n(Warsaw, location)",                                  # order reversed
    "person: Marie Curie\nlocation: Warsaw",                                      # no brackets
    "(person, Marie Curie);\n(location, Warsaw).",                                # trailing punctuation
])
def test_ner_noise_is_tolerated(text):
    parsed = parse_answer("ner", text, NER)
    assert parsed.items == NER_ITEMS


def test_ner_unreadable_lines_are_reported_not_counted():
    parsed = parse_answer("ner", "Entities:\n(person, Marie Curie)\n(animal, cat)\n(location, Warsaw)\nDone.", NER)
    assert parsed.items == NER_ITEMS
    assert parsed.unparsed == ["Entities:", "(animal, cat)", "Done."]


def test_ner_zh_and_brackets_inside_an_entity():
    assert parse_answer("ner", "（人物，李明）\n（机构，《青禾》杂志社）", NER_ZH).items == \
        [("人物", "李明"), ("机构", "《青禾》杂志社")]
    assert parse_answer("ner", "(organization, Acme (Europe) Ltd)", NER).items == [("organization", "Acme (Europe) Ltd")]


@pytest.mark.parametrize("text", ["None", "None.", "无", "无。", "```\nNone\n```", "- none", "", "  \n "])
def test_none_answers(text):
    for task, schema in (("ner", NER), ("re", RE), ("ee", EE)):
        parsed = parse_answer(task, text, schema)
        assert parsed.items == [] and parsed.unparsed == []


def test_re_noise_and_commas_inside_entities():
    text = ("1. (Northwind Labs , headquarters location , Gothenburg, Sweden)\n"
            "2. （Marie Curie，place of birth，Warsaw）\n"
            "- (Acme, Inc., Founded By, Jane Roe)\n"
            "(Marie Curie, born in, Warsaw)\n"
            "The triples above are all the relations.")
    parsed = parse_answer("re", text, RE)
    assert parsed.items == [("Northwind Labs", "headquarters location", "Gothenburg, Sweden"),
                            ("Marie Curie", "place of birth", "Warsaw"),
                            ("Acme, Inc.", "founded by", "Jane Roe")]
    assert parsed.unparsed == ["(Marie Curie, born in, Warsaw)", "The triples above are all the relations."]


def test_ee_noise():
    text = ("```\n"
            "1. conflict:attack : bombed ; Attacker = rebels , Target=the bridge, place=Kallar\n"
            "2. Life:Die: killed; Victim=two guards\n"
            "Sports:Win: won; Winner=Team A\n"
            "```")
    parsed = parse_answer("ee", text, EE)
    assert parsed.items == [
        ("conflict:attack", "bombed", (("attacker", "rebels"), ("target", "the bridge"), ("place", "Kallar"))),
        ("life:die", "killed", (("victim", "two guards"),)),
    ]
    assert parsed.unparsed == ["Sports:Win: won; Winner=Team A"]
    # Full-width punctuation and 、 between arguments; a trigger without arguments.
    zh = parse_answer("ee", "财经/交易-融资：融资；融资方＝星河公司、融资金额=三亿元\n财经/交易-融资: 募资", EE_ZH)
    assert zh.items == [("财经/交易-融资", "融资", (("融资方", "星河公司"), ("融资金额", "三亿元"))),
                        ("财经/交易-融资", "募资", ())]


def test_trained_format_round_trips():
    """What train.ie renders for training is read back to the same items (normalized)."""
    ner = [("person", "Marie Curie"), ("organization", "University of Paris")]
    assert parse_answer("ner", render_ner(ner), NER).items == ner
    rel = [("Northwind Labs", "headquarters location", "Gothenburg, Sweden")]
    assert parse_answer("re", render_re(rel), RE).items == rel
    events = [Event("Conflict:Attack", "attacked", (("Attacker", "Rebels"), ("Place", "Kallar, north"))),
              Event("Life:Die", "died")]
    assert parse_answer("ee", render_ee(events), EE).items == [
        ("conflict:attack", "attacked", (("attacker", "Rebels"), ("place", "Kallar, north"))), ("life:die", "died", ())]


def test_norm():
    assert norm("  《青禾》 ") == "青禾"
    assert norm("Ｇｏｔｈｅｎｂｕｒｇ，Sweden") == "Gothenburg, Sweden"
    assert norm("“Marie   Curie”") == "Marie Curie"


# ---------------------------------------------------------------------------------------------
# Scoring


def test_scores_of_the_sample_outputs():
    """examples/data/ie_eval: 20 gold cases and hand-written noisy answers; the counts below were
    worked out by hand from the two files (see the comments in the case of each miss)."""
    cases, bad = read_ie_cases(GOLD)
    assert not bad and len(cases) == 20
    outputs = {json.loads(line)["id"]: json.loads(line)["output"] for line in OUTPUTS.read_text().splitlines()}
    report = score_outputs(cases, outputs)
    got = {k: (c.cases, c.gold, c.pred, c.correct, c.unparsed) for k, c in report.scores.items()}
    assert got == {
        # misses: "Port Elm, Maine" as one location; 云岭大学 typed 人物; 青石软件公司 not found.
        "ner": (8, 17, 15, 13, 1),
        # the inverse spouse triple is extra; 总部地点 missing.
        "re": (6, 9, 9, 8, 1),
        "ee": (6, 28, 22, 21, 0),
        # trigger 发生 instead of 地震; ee-zh-3 answered 无.
        "ee-trigger": (6, 6, 5, 4, 0),
        "ee-argument": (6, 22, 17, 17, 0),
        "overall": (20, 54, 46, 42, 2),
    }
    overall = report.scores["overall"]
    assert overall.precision == pytest.approx(42 / 46) and overall.recall == pytest.approx(42 / 54)
    assert overall.f1 == pytest.approx(2 * (42 / 46) * (42 / 54) / (42 / 46 + 42 / 54))
    table = format_table(report.scores)
    assert "NER             8    17    15      13   86.7%   76.5%   81.2%         1" in table
    assert "overall        20    54    46      42   91.3%   77.8%   84.0%         2" in table
    by_id = {r["id"]: r for r in report.records}
    assert by_id["ner-en-2"]["parsed"] == [["organization", "Harbor Trust"], ["location", "Port Elm, Maine"]]
    assert by_id["ner-en-4"]["unparsed"] == ["These are all the entities in the text."]


def test_counts_edge_cases():
    assert Counts().f1 == 0.0 and Counts(cases=1, gold=0, pred=3).precision == 0.0
    cases, _ = read_ie_cases(GOLD)
    ner_empty = next(c for c in cases if c.id == "ner-en-3")
    # An empty gold and an empty answer: nothing to count, nothing wrong.
    assert score_case(ner_empty, parse_answer("ner", "None", ner_empty.schema))["ner"].pred == 0
    # A case without an output scores as an empty answer (recall drops, precision undefined → 0).
    report = score_outputs([c for c in cases if c.task == "re"], {})
    assert report.scores["re"].correct == 0 and report.scores["re"].gold == 9
    assert set(aggregate([])) == set()


def test_bad_ie_case_lines(tmp_path):
    good = {"id": "x", "task": "ner", "lang": "en", "text": "Ann met Bob.",
            "schema": {"entity_types": ["person"]}, "gold": [["person", "Ann"], ["person", "Bob"]]}
    bad_lines = [
        {**good, "id": "t", "task": "pos"},
        {**good, "id": "l", "lang": "fr"},
        {**good, "id": "g", "gold": [["animal", "Bob"]]},
        {**good, "id": "s", "schema": {"entity_types": ["person"], "colour": []}},
        {**good, "id": "n", "schema": {"relation_types": ["knows"]}},
        {"id": "e", "task": "ee", "lang": "en", "text": "t", "schema": {"event_types": {"Die": ["Victim"]}},
         "gold": [{"type": "Die", "trigger": "died", "arguments": [["Place", "x"]]}]},
        {**good, "id": "x"},
    ]
    path = tmp_path / "ie.jsonl"
    path.write_text("\n".join([json.dumps(good), "nope"] + [json.dumps(b) for b in bad_lines]) + "\n")
    cases, bad = read_ie_cases(path)
    assert [c.id for c in cases] == ["x"]
    assert bad == [
        f"{path}:2: not JSON (Expecting value)",
        f"{path}:3: 'task' must be one of ner, re, ee, got 'pos'",
        f"{path}:4: 'lang' must be one of zh, en, got 'fr'",
        f"{path}:5: gold[0]: entity type 'animal' is not in the schema",
        f"{path}:6: schema: unknown key 'colour' (known keys: entity_types, relation_types, event_types)",
        f"{path}:7: the schema has no 'entity_types', which task 'ner' needs",
        f"{path}:8: gold[0]: role 'Place' is not a role of 'Die' in the schema",
        f"{path}:9: duplicate id 'x'",
    ]
    path.write_text("nope\n")
    with pytest.raises(IECaseError, match=r"no valid IE case; 1 bad line\(s\)"):
        read_ie_cases(path)


def test_cli_scores_given_outputs(capsys, tmp_path):
    assert main(["--cases", str(GOLD), "--outputs", str(OUTPUTS)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["task", "cases", "gold", "pred", "correct", "P", "R", "F1", "unparsed"]
    assert main(["--cases", str(GOLD), "--outputs", str(OUTPUTS), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["re"]["correct"] == 8 and scores["overall"]["gold"] == 54
    partial = tmp_path / "partial.jsonl"
    partial.write_text(json.dumps({"id": "ner-en-1", "output": "(person, Elena Varga)"}) + "\n")
    assert main(["--cases", str(GOLD), "--outputs", str(partial)]) == 0
    assert "19 case(s) without an output, scored as empty" in capsys.readouterr().err
    partial.write_text('{"id": "ner-en-1"}\n')
    assert main(["--cases", str(GOLD), "--outputs", str(partial)]) == 2
    assert f"{partial}:1: expected" in capsys.readouterr().err
