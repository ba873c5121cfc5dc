"""Traditional → Simplified by OpenCC profile: OpenCC's own test cases for every profile we offer, the
``to_simplified`` values (profile names, true/false/null, a bad name), and the option where it is used:
the wiki readers and any source (``to_simplified:`` of a source in the corpus config)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from common.errors import ConfigError
from corpus.document import Document
from corpus.sources import check_source, read_source
from corpus.sources.simplify import PROFILES, converter, profile
from corpus.spec import SourceSpec
from corpus.steps import chain, check_step_names, make_steps

ROOT = Path(__file__).resolve().parent.parent
CASES = json.loads((ROOT / "tests" / "data" / "opencc" / "testcases.json").read_text(encoding="utf-8"))["cases"]
ZH_XML = ROOT / "examples" / "data" / "sources" / "wiki" / "zhwiki-sample-pages-articles.xml"


def _cases(name: str) -> list[tuple[str, str, str]]:
    return [(c["id"], c["input"], c["expected"][name]) for c in CASES if name in c["expected"]]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_matches_openccs_own_test_cases(name: str) -> None:
    cases = _cases(name)
    assert len(cases) >= 9, name   # the committed file holds 9 (hk2sp) to 55 (t2s) cases per profile
    convert = converter(name)
    wrong = [(cid, src, want, convert(src)) for cid, src, want in cases if convert(src) != want]
    assert wrong == [], wrong


def test_profiles_differ_where_taiwan_and_hong_kong_differ() -> None:
    # the reason for profiles: t2s keeps Taiwan's phrase, tw2sp gives the mainland one
    assert converter("t2s")("滑鼠") == "滑鼠"
    assert converter("tw2sp")("滑鼠") == "鼠标"
    assert converter("tw2sp")("軟體") == "软件" and converter("tw2s")("軟體") == "软体"


def test_to_simplified_values() -> None:
    assert profile(True) == "t2s"
    assert profile(False) is None and profile(None) is None
    assert profile("TW2SP") == "tw2sp"
    with pytest.raises(ConfigError, match=r"key 'to_simplified': 's2t' is not an OpenCC profile to Simplified "
                                          r"Chinese \(known: t2s, tw2s, tw2sp, hk2s, hk2sp; true = t2s, false or null = off\)"):
        profile("s2t")
    with pytest.raises(ConfigError, match=r"did you mean 'hk2s'"):
        profile("hk2")


def test_wiki_reader_takes_a_profile_and_true_still_means_t2s() -> None:
    assert check_source("wiki", {"to_simplified": True}).to_simplified == "t2s"
    assert check_source("wiki", {"to_simplified": "tw2sp"}).to_simplified == "tw2sp"
    assert check_source("wiki", {"to_simplified": None}).to_simplified is None
    assert check_source("wiki_json", {"to_simplified": "hk2s"}).to_simplified == "hk2s"
    with pytest.raises(ConfigError, match=r"key 'options': key 'to_simplified': 'zh-cn' is not an OpenCC profile"):
        check_source("wiki", {"to_simplified": "zh-cn"}, where="source 'wiki_zh'")
    docs = list(read_source("wiki", [ZH_XML], Counter(), to_simplified="tw2s"))
    assert docs[0].text.startswith("台北是一座位于台湾北部的城市") and docs[0].meta["title"] == "台北"


def test_any_source_converts_with_its_own_profile(tmp_path: Path) -> None:
    """``to_simplified: tw2sp`` on a plain JSON-lines source: the step ``simplify:tw2sp`` runs first,
    before clean and filter, on the text and the title."""
    path = tmp_path / "tw.jsonl"
    path.write_text(json.dumps({"text": "我用滑鼠和軟體工作。", "title": "電腦"}, ensure_ascii=False) + "\n", encoding="utf-8")
    spec = SourceSpec(name="tw", layout="json", paths=[str(path)], lang="zh", to_simplified="tw2sp", steps=["clean"])
    assert spec.step_names == ["simplify:tw2sp", "clean"]
    default = SourceSpec(name="tw", layout="json", paths=[str(path)], lang="zh", to_simplified=True)
    assert default.step_names == ["simplify:t2s", "clean", "filter"]
    assert SourceSpec(name="tw", layout="json", paths=[str(path)], lang="zh").step_names == ["clean", "filter"]
    steps = make_steps(spec.step_names, spec.lang, None)
    docs = list(chain(read_source(spec.layout, spec.paths, Counter(), **spec.options), steps))
    assert [d.text for d in docs] == ["我用鼠标和软件工作。"]
    assert steps[0].stats.as_dict() == {"read": 1, "kept": 1, "dropped": {}}
    # a jsonl source without steps is no longer passed straight to tokenizing: it has a step now
    assert SourceSpec(name="j", layout="jsonl", paths=[str(path)], lang="zh", to_simplified="tw2s").step_names == ["simplify:tw2s"]


def test_bad_profile_fails_when_the_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("{}\n")
    with pytest.raises(ConfigError, match=r"source 'tw': key 'to_simplified': 'taiwan' is not an OpenCC profile"):
        SourceSpec(name="tw", layout="json", paths=[str(path)], lang="zh", to_simplified="taiwan")
    with pytest.raises(ConfigError, match=r"steps\[0\]: step 'simplify:xx2s'.*known: t2s"):
        check_step_names(["simplify:xx2s"], "steps")
    with pytest.raises(ConfigError, match=r"steps\[0\]: step 'simplify': write it 'simplify:ARG'"):
        check_step_names(["simplify"], "steps")
    with pytest.raises(ConfigError, match=r"steps\[1\]: step 'clean:x': write it 'clean'"):
        check_step_names(["filter", "clean:x"], "steps")


def test_simplify_step_converts_text_and_title() -> None:
    (step,) = make_steps(["simplify:hk2s"], "zh", None)
    doc = Document("d:1", "d", "潮濕灶台", {"title": "虛偽歎息", "path": "x"})
    assert step.apply(doc) is doc and (doc.text, doc.meta["title"]) == ("潮湿灶台", "虚伪叹息")


@pytest.mark.parametrize("extra,message", [
    ({"lang": "en", "to_simplified": "t2s"}, "to_simplified converts Chinese"),
    ({"to_simplified": "tw2s", "steps": ["simplify:t2s", "clean"]}, "Traditional → Simplified twice"),
    ({"to_simplified": "tw2s", "layout": "wiki", "options": {"to_simplified": True}}, "Traditional → Simplified twice"),
])
def test_simplifying_twice_or_a_non_chinese_source_is_refused(extra, message):
    from common.config import ConfigError, from_dict
    from corpus.spec import SourceSpec

    spec = {"name": "s", "layout": "jsonl", "paths": ["x.jsonl"], "lang": "zh", **extra}
    with pytest.raises(ConfigError, match=message):
        from_dict(SourceSpec, spec)
