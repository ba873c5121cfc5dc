"""train.ie: NER / relation / event samples → instruction records whose answers parse back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from train.ie import (
    Event,
    IEError,
    OutputFormatError,
    Schema,
    build,
    join_tokens,
    load_ie_templates,
    load_schema,
    parse_ee,
    parse_ner,
    parse_re,
    read_bio,
    render_ee,
    render_ner,
    render_re,
)
from train.cli import ie_main as main
from train.prompts import read_instructions

ROOT = Path(__file__).resolve().parent.parent
IE = ROOT / "examples" / "data" / "ie"


def _schema(name: str) -> Schema:
    return load_schema(IE / f"{name}.json")


# --- the bundled samples -------------------------------------------------------------------


def test_ner_zh_sample():
    schema = _schema("ner_schema_zh")
    records, skipped, _ = build("ner", IE / "ner_zh.bio", "zh", schema)
    assert not skipped and len(records) == 6
    first = records[0]
    assert first["input"] == "李明毕业于浙江大学，现在在杭州工作。"
    assert first["output"] == "(人物, 李明)\n(组织机构, 浙江大学)\n(地点, 杭州)"
    assert "人物、地点、组织机构" in first["instruction"] and "(实体类型, 实体)" in first["instruction"]
    assert records[4]["output"] == "无"  # a sentence without entities
    for r in records:
        assert all(entity in r["input"] for _, entity in parse_ner(r["output"], ["人物", "地点", "组织机构"]))


def test_ner_en_sample_joins_words_like_text():
    records, skipped, schema = build("ner", IE / "ner_en.bio", "en", _schema("ner_schema_en"))
    assert not skipped and len(records) == 4  # -DOCSTART- is not a sentence
    assert records[0]["input"] == "Marie Curie was born in Warsaw and later taught at the University of Paris."
    assert parse_ner(records[0]["output"], list(schema.entity_types.values())) == [
        ("person", "Marie Curie"), ("location", "Warsaw"), ("organization", "University of Paris")]
    assert records[2]["output"] == "None"
    assert "(miscellaneous, Gothenburg Film Festival)" in records[3]["output"]


def test_re_samples_including_a_tail_with_a_comma():
    records, skipped, schema = build("re", IE / "re_en.jsonl", "en", _schema("re_schema_en"))
    assert not skipped and len(records) == 4
    assert parse_re(records[1]["output"], schema.relation_types) == [
        ("Northwind Labs", "founded by", "Anna Lindqvist"),
        ("Northwind Labs", "headquarters location", "Gothenburg, Sweden")]
    assert records[3]["output"] == "None"
    zh, skipped, _ = build("re", IE / "re_zh.jsonl", "zh", _schema("re_schema_zh"))
    assert not skipped and zh[0]["output"] == "(李明, 出生地, 浙江宁波)\n(李明, 毕业院校, 浙江大学)"
    assert zh[3]["output"] == "无"


def test_ee_samples_in_duee_and_ace_layouts():
    zh, skipped, schema = build("ee", IE / "ee_zh.jsonl", "zh", _schema("ee_schema_zh"))
    assert not skipped and len(zh) == 3
    assert zh[0]["output"] == "财经/交易-收购: 收购; 收购方=青禾科技公司, 时间=3日, 收购金额=两亿元, 被收购方=一家芯片设计企业"
    assert parse_ee(zh[1]["output"], schema.event_types) == [
        Event("竞赛行为-胜负", "击败", (("时间", "昨晚"), ("胜者", "浙江队"), ("败者", "江苏队"))),
        Event("竞赛行为-夺冠", "获得冠军", (("冠军", "浙江队"),))]
    assert "财经/交易-收购（收购方、被收购方、收购金额、时间）；竞赛行为-胜负" in zh[0]["instruction"]
    en, skipped, schema = build("ee", IE / "ee_en.jsonl", "en", _schema("ee_schema_en"))
    assert not skipped and len(en) == 4
    assert en[0]["input"].startswith("Rebels attacked")
    assert parse_ee(en[2]["output"], schema.event_types)[0].arguments[-1] == ("Price", "$40 million")
    assert "Conflict:Attack (Attacker, Target, Place, Time); Personnel:Elect" in en[0]["instruction"]


def test_records_are_instruction_data(tmp_path):
    out = tmp_path / "ner.jsonl"
    assert main(["--task", "ner", "--input", str(IE / "ner_zh.bio"), "--lang", "zh", "--out", str(out),
                 "--schema", str(IE / "ner_schema_zh.json")]) == 0
    records, skipped = read_instructions(out)
    assert len(records) == 6 and not skipped
    assert "\\u" not in out.read_text(encoding="utf-8")  # unescaped UTF-8


# --- determinism ---------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_phrasings(tmp_path):
    def run(seed: int, name: str) -> bytes:
        out = tmp_path / name
        assert main(["--task", "re", "--input", str(IE / "re_en.jsonl"), "--lang", "en", "--out", str(out),
                     "--seed", str(seed)]) == 0
        return out.read_bytes()

    assert run(1, "a.jsonl") == run(1, "b.jsonl")
    outputs = {run(seed, f"s{seed}.jsonl") for seed in range(6)}
    assert len(outputs) > 1  # the phrasing choice depends on the seed
    phrasings = {json.loads(line)["instruction"] for o in outputs for line in o.decode().splitlines()}
    assert len(phrasings) == 3  # every phrasing of the template is used


def test_phrasing_of_a_record_does_not_depend_on_other_records(tmp_path):
    src = (IE / "re_en.jsonl").read_text().splitlines()
    full = tmp_path / "full.jsonl"
    full.write_text("\n".join(src) + "\n")
    gap = tmp_path / "gap.jsonl"
    gap.write_text("\n".join(["{bad json", *src[1:]]) + "\n")
    schema = _schema("re_schema_en")
    a, _, _ = build("re", full, "en", schema, seed=3)
    b, skipped, _ = build("re", gap, "en", schema, seed=3)
    assert skipped == {"not JSON": 1}
    assert [r["instruction"] for r in a[1:]] == [r["instruction"] for r in b]


# --- bad input -----------------------------------------------------------------------------


def test_bad_bio_sentences_are_skipped_with_file_and_line(tmp_path):
    path = tmp_path / "bad.bio"
    path.write_text(
        "北 B-LOC\n京 I-LOC\n\n"          # lines 1-2: fine
        "上 B-LOC\n海 X-LOC\n\n"          # line 5: bad tag
        "杭 I-LOC\n州 I-LOC\n\n"          # line 7: I- without B-
        "李 B-PER\n明 I-LOC\n\n"          # line 11: I-LOC after B-PER
        "只有一列\n\n"                     # line 13: one column
        "王 B-PER\n芳 I-PER\n",           # lines 15-16: fine, no trailing blank line
        encoding="utf-8")
    samples, skipped = read_bio(path, "zh")
    assert [s.text for s in samples] == ["北京", "王芳"]
    assert samples[1].items == (("PER", "王芳"),)
    assert skipped == {"bad BIO tag": 1, "I- without B-": 2, "bad BIO line": 1}
    assert skipped.examples == [f"{path}:5: bad BIO tag: 'X-LOC'", f"{path}:7: I- without B-: I-LOC after O",
                                f"{path}:11: I- without B-: I-LOC after B/I-PER",
                                f"{path}:13: bad BIO line: expected 'token tag', got '只有一列'"]


def test_bad_relation_and_event_records_are_counted(tmp_path):
    path = tmp_path / "re.jsonl"
    path.write_text("\n".join([
        json.dumps({"text": "A founded B.", "relations": [{"head": "A", "relation": "founded", "tail": "B"}]}),
        json.dumps({"relations": []}),
        json.dumps({"text": "A founded B.", "relations": [{"head": "A", "relation": "founded"}]}),
        json.dumps({"text": "A founded B.", "relations": [{"head": "C", "relation": "founded", "tail": "B"}]}),
        json.dumps({"text": "A led B.", "relations": [{"head": "A", "relation": "led", "tail": "B"}]}),
        "[1, 2]",
        json.dumps({"text": "A founded B.", "relations": "A-B"}),
    ]) + "\n")
    records, skipped, _ = build("re", path, "en", Schema(relation_types=["founded"]))
    assert len(records) == 1
    assert skipped == {"record without text": 1, "bad relation": 1, "entity not in text": 1,
                       "not in the schema": 1, "not a JSON object": 1, "'relations' is not a list": 1}
    assert f"{path}:2: record without text" in skipped.examples
    assert f"{path}:4: entity not in text: 'C'" in skipped.examples

    ev = tmp_path / "ee.jsonl"
    ev.write_text("\n".join([
        json.dumps({"text": "X bought Y.", "event_list": [
            {"event_type": "Buy", "trigger": "bought", "arguments": [{"role": "Buyer", "argument": "X"}]}]}),
        json.dumps({"text": "X bought Y.", "event_list": [
            {"event_type": "Buy", "trigger": "sold", "arguments": []}]}),
        json.dumps({"text": "X bought Y.", "event_list": [
            {"event_type": "Buy", "trigger": "bought", "arguments": [{"role": "Seller", "argument": "Y"}]}]}),
        json.dumps({"text": "X bought Y.", "event_list": [
            {"event_type": "Buy", "trigger": "bought", "arguments": [{"role": "Buyer", "argument": "Z"}]}]}),
        json.dumps({"text": "X bought Y."}),
    ]) + "\n")
    records, skipped, _ = build("ee", ev, "en", Schema(event_types={"Buy": ["Buyer"]}))
    assert len(records) == 1 and records[0]["output"] == "Buy: bought; Buyer=X"
    assert skipped == {"trigger not in text": 1, "not in the schema": 1, "argument not in text": 1, "no event list": 1}
    assert f"{ev}:3: not in the schema: role 'Seller' of 'Buy'" in skipped.examples


def test_items_that_would_not_parse_back_are_skipped(tmp_path):
    path = tmp_path / "re.jsonl"
    text = "Acme, founded by, Bo, founded by, Cy."
    path.write_text("\n".join([
        # "(Acme, founded by, Bo, founded by, Cy)" splits two ways.
        json.dumps({"text": text, "relations": [{"head": "Acme, founded by, Bo", "relation": "founded by", "tail": "Cy"}]}),
        json.dumps({"text": text, "relations": [{"head": "Acme", "relation": "founded by", "tail": "Bo"}]}),
    ]) + "\n")
    records, skipped, _ = build("re", path, "en", Schema(relation_types=["founded by"]))
    assert len(records) == 1 and skipped == {"not representable in the output format": 1}
    ev = tmp_path / "ee.jsonl"
    ev.write_text(json.dumps({"text": "X met Y, Place=Z.", "event_list": [
        {"event_type": "Meet", "trigger": "met", "arguments": [{"role": "Who", "argument": "Y, Place=Z"}]}]}) + "\n")
    with pytest.raises(IEError, match=r"no usable ee sample \(not representable in the output format: 1\)"):
        build("ee", ev, "en", Schema(event_types={"Meet": ["Who", "Place"]}))


def test_cli_errors(tmp_path, capsys):
    """One line ``train.ie: error: …`` and exit status 2, as every command of the suite; no output file."""
    empty = tmp_path / "empty.bio"
    empty.write_text("\n\n")
    assert main(["--task", "ner", "--input", str(empty), "--lang", "en", "--out", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train.ie: error: ") and "no usable ner sample" in err
    assert not (tmp_path / "o.jsonl").exists()
    assert main(["--task", "ner", "--input", str(tmp_path / "nope.bio"), "--lang", "en",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert main(["--task", "re", "--input", str(IE / "re_en.jsonl"), "--lang", "en", "--out", str(tmp_path / "o.jsonl"),
                 "--schema", str(IE / "ner_schema_en.json")]) == 2
    assert "the schema has no 'relation_types', which task 're' needs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--task", "pos", "--input", "x", "--lang", "en", "--out", "y"])
    with pytest.raises(SystemExit):  # no abbreviations: --inp is not --input
        main(["--task", "ner", "--inp", str(empty), "--lang", "en", "--out", "y"])


# --- schema and templates ------------------------------------------------------------------


def test_schema_derived_from_the_data_when_not_given():
    _, _, schema = build("ee", IE / "ee_zh.jsonl", "zh")
    assert schema.event_types == {"竞赛行为-夺冠": ["冠军"], "竞赛行为-胜负": ["时间", "胜者", "败者"],
                                  "财经/交易-收购": ["收购方", "收购金额", "时间", "被收购方"]}
    _, _, schema = build("ner", IE / "ner_en.bio", "en")
    assert schema.entity_types == {"LOC": "LOC", "MISC": "MISC", "ORG": "ORG", "PER": "PER"}


@pytest.mark.parametrize("content, message", [
    ({"relation_types": ["a, b"]}, r"relation_types: 'a, b' contains ', '"),
    ({"event_types": {"Buy": ["Buyer=x"]}}, r"event_types\['Buy'\]: 'Buyer=x' contains '='"),
    ({"event_types": {"Buy: now": []}}, r"event_types: 'Buy: now' contains ': '"),
    ({"entity_types": {"PER": "(person)"}}, r"entity_types: '\(person\)' contains '\('"),
    ({"entity_type": ["PER"]}, r"unknown key 'entity_type'"),
    ({"relation_types": "founded"}, r"'relation_types' must be a list"),
])
def test_schema_errors_name_file_and_key(tmp_path, content, message):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(content))
    with pytest.raises(IEError, match=rf"schema\.json: .*{message}|schema\.json: {message}"):
        load_schema(path)


def test_ie_templates_are_checked(tmp_path):
    for lang in ("zh", "en"):
        t = load_ie_templates(lang)
        assert all(len(t.instructions[task]) >= 2 for task in ("ner", "re", "ee"))
    data = json.loads((ROOT / "train" / "templates" / "ie_en.json").read_text())
    data["re"]["instructions"][1] = "Find relations: {schema}."
    path = tmp_path / "ie_x.json"
    path.write_text(json.dumps(data))
    with pytest.raises(IEError, match=r"ie_x\.json: re\.instructions\[1\] lacks the slot \{format\}"):
        load_ie_templates(str(path))


# --- render / parse ------------------------------------------------------------------------


def test_parse_handles_none_and_bad_lines():
    assert parse_ner("None") == [] and parse_ner("无\n") == [] and parse_re(" None ") == [] and parse_ee("无") == []
    assert parse_ner("(PER, None)") == [("PER", "None")]
    with pytest.raises(OutputFormatError, match="not '\\(entity type, entity\\)'"):
        parse_ner("(PER, A)\nPER: A")
    assert parse_ner("(PER, A)\nPER: A\n(LOC, B)", strict=False) == [("PER", "A"), ("LOC", "B")]
    assert parse_ner("(ORG, X)", types=["PER"], strict=False) == []
    assert parse_re("(a, b, c, d)", strict=False) == []  # without the schema a comma is ambiguous
    assert parse_re("(a, b, c, d)", relations=["b"]) == [("a", "b", "c, d")]
    with pytest.raises(OutputFormatError, match="bad arguments"):
        parse_ee("Attack: hit; Attacker=A, Target=B, C")  # without the schema "C" is no role=argument
    assert parse_ee("Attack: hit; Attacker=A, Target=B, C", {"Attack": ["Attacker", "Target"]}) == [
        Event("Attack", "hit", (("Attacker", "A"), ("Target", "B, C")))]
    assert parse_ee("Attack: hit") == [Event("Attack", "hit")]
    with pytest.raises(OutputFormatError, match="bad arguments"):
        parse_ee("Attack: hit; nonsense", {"Attack": ["Attacker"]})


def test_join_tokens():
    assert join_tokens(["He", "said", "(", "twice", ")", ",", "it", "'s", "$", "5", "."], "en") == \
        "He said (twice), it's $5."
    assert join_tokens(["北", "京", "，", "A"], "zh") == "北京，A"


# Names as a model might write them: any printable text on one line, no surrounding spaces.
_name = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Zl", "Zp", "Cs")),
                min_size=1, max_size=12).map(str.strip).filter(bool)


@settings(max_examples=150, deadline=None)
@given(types=st.lists(_name.filter(lambda s: ", " not in s and "(" not in s and ")" not in s), min_size=1,
                      max_size=4, unique=True),
       data=st.data())
def test_ner_answers_always_parse_back(types, data):
    items = data.draw(st.lists(st.tuples(st.sampled_from(types), _name), max_size=5))
    assert parse_ner(render_ner(items), types) == items


@settings(max_examples=150, deadline=None)
@given(rels=st.lists(st.sampled_from(["born in", "founded by", "of", "出生地"]), min_size=1, unique=True),
       data=st.data())
def test_re_and_ee_answers_parse_back_or_are_detected(rels, data):
    """Answers round-trip unless a head/tail contains ", " (then build() checks each record)."""
    triples = data.draw(st.lists(st.tuples(_name, st.sampled_from(rels), _name), min_size=1, max_size=3))
    try:
        parsed = parse_re(render_re(triples), rels)
    except OutputFormatError:
        parsed = None  # refused as ambiguous: build() skips such a record
    if not any(", " in x for h, _, t in triples for x in (h, t)):
        assert parsed == triples  # a split can only move at a ", " inside a head or tail
    events = [Event("T", trig, tuple(args)) for trig, args in
              data.draw(st.lists(st.tuples(_name.filter(lambda s: "; " not in s),
                                           st.lists(st.tuples(st.sampled_from(["A", "B"]),
                                                              _name.filter(lambda s: ", " not in s)), max_size=3)),
                                 max_size=3))]
    assert parse_ee(render_ee(events), {"T": ["A", "B"]}) == events
