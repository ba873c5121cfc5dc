"""Layouts by name or dotted path, and reader options checked before any work (corpus.sources.registry)."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest

from common.errors import ConfigError, UserError
from corpus.reader import InputError
from corpus.sources import (OPTIONS, READERS, LayoutError, OptionsError, check_source, expand, make_options,
                            read_source, resolve_reader)
from corpus.sources.github import GithubOptions
from corpus.sources.wiki import WikiOptions

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "sources"

PLUGIN = textwrap.dedent('''
    """A forum dump reader living outside the package: one Document per '---'-separated post."""
    from collections import Counter
    from dataclasses import dataclass
    from pathlib import Path
    from corpus.document import Document

    @dataclass(frozen=True)
    class ForumOptions:
        board: str = "general"
        min_chars: int = 1

    def read_forum(path: Path, skips: Counter, options: ForumOptions | None = None):
        opts = options or ForumOptions()
        for i, post in enumerate(path.read_text(encoding="utf-8").split("---")):
            if len(post.strip()) < opts.min_chars:
                skips["too_short"] += 1
                continue
            yield Document(f"forum:{path.stem}:{i}", "forum", post.strip(), {"board": opts.board})

    read_forum.suffixes = (".txt",)

    def read_plain(path, skips):
        yield Document(f"plain:{path.name}", "plain", path.read_text(encoding="utf-8"))
''')


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pkg = tmp_path / "plugins"
    pkg.mkdir()
    (pkg / "forumreaders.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(pkg))
    data = tmp_path / "posts"
    data.mkdir()
    (data / "a.txt").write_text("first post---x---a second, longer post", encoding="utf-8")
    (data / "skip.md").write_text("not a .txt file", encoding="utf-8")
    return data


def test_dotted_path_reader_with_typed_options(plugin: Path) -> None:
    spec = resolve_reader("forumreaders:read_forum")
    assert spec.options_type.__name__ == "ForumOptions" and spec.suffixes == (".txt",)
    skips: Counter[str] = Counter()
    docs = list(read_source("forumreaders:read_forum", [plugin], skips, board="tea", min_chars=3))
    assert [(d.id, d.text, d.meta) for d in docs] == [
        ("forum:a:0", "first post", {"board": "tea"}), ("forum:a:2", "a second, longer post", {"board": "tea"})]
    assert skips == Counter(too_short=1)
    assert [p.name for p in expand("forumreaders:read_forum", [plugin])] == ["a.txt"]   # its suffixes
    with pytest.raises(OptionsError, match=r"unknown option 'bord' \(did you mean 'board'\?\); known options: board, min_chars"):
        check_source("forumreaders:read_forum", {"bord": "x"})
    with pytest.raises(OptionsError, match="min_chars.*expected an integer"):
        check_source("forumreaders:read_forum", {"min_chars": "many"})


def test_dotted_path_reader_without_options(plugin: Path) -> None:
    docs = list(read_source("forumreaders:read_plain", [plugin / "a.txt"], Counter()))
    assert [d.id for d in docs] == ["plain:a.txt"]
    with pytest.raises(OptionsError, match="takes no options, got: x"):
        check_source("forumreaders:read_plain", {"x": 1})


def test_registered_name(plugin: Path) -> None:
    from corpus.sources import register_reader
    import forumreaders  # type: ignore[import-not-found]

    register_reader("forum_test", forumreaders.read_forum)
    try:
        assert "forum_test" in READERS and OPTIONS["forum_test"] is forumreaders.ForumOptions
        assert check_source("forum_test", {"board": "b"}, [plugin]) == forumreaders.ForumOptions(board="b")
    finally:   # keep the module-level tables as other tests expect them
        from corpus.sources import registry
        for table in (registry._REGISTRY, READERS, OPTIONS, registry.SUFFIXES):
            table.pop("forum_test", None)


@pytest.mark.parametrize(("layout", "message"), [
    ("wikki", r"sources\[2\]: key 'layout': unknown source layout 'wikki' \(did you mean 'wiki'\?\); known: baike, english, github, json, jsonl, leetcode, wiki, wiki_json, wudao"),
    ("nomodule_here:read", r"cannot import module 'nomodule_here'"),
    ("corpus.sources.baike:nothing", r"module 'corpus.sources.baike' has no 'nothing'"),
    ("corpus.sources.baike:SOURCE", r"is not a function"),
    ("corpus.sources.baike:", r"not a dotted path"),
])
def test_unknown_layout_fails_naming_the_key_and_known_names(layout: str, message: str) -> None:
    with pytest.raises(LayoutError, match=message) as info:
        check_source(layout, {}, where="sources[2]")
    assert isinstance(info.value, UserError) and isinstance(info.value, ConfigError) and isinstance(info.value, InputError)


def test_every_builtin_reader_takes_typed_options() -> None:
    assert set(OPTIONS) == set(READERS)
    for layout in READERS:
        with pytest.raises(OptionsError, match=f"unknown option 'nope'.*known options: "):
            make_options(layout, nope=1)
        assert make_options(layout) == resolve_reader(layout).options_type()


def test_options_are_typed_and_checked_up_front(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match=r"src: key 'options': key 'fields': unknown key 'statment' \(did you mean 'statement'\?; known keys: difficulty, id, slug, solutions, statement, title\)"):
        check_source("leetcode", {"fields": {"statment": "x"}}, where="src")
    with pytest.raises(OptionsError, match=r"key 'format': 'xml' is not one of auto, lines, json"):
        check_source("english", {"format": "xml"})
    with pytest.raises(OptionsError, match=r"key 'to_simplified': 'tw2z' is not an OpenCC profile .*\(did you mean 'tw2s'\?\) \(known: t2s, tw2s, tw2sp, hk2s, hk2sp; true = t2s"):
        check_source("wiki", {"to_simplified": "tw2z"})
    with pytest.raises(OptionsError, match=r"byte_range.*0 <= start <= end"):
        check_source("english", {"byte_range": [10, 2]})
    with pytest.raises(OptionsError, match=r"chunk_bytes.*>= 1"):
        check_source("wudao", {"chunk_bytes": 0})
    with pytest.raises(InputError, match=r"src: key 'paths': input not found"):
        check_source("english", {}, [tmp_path / "missing.jsonl"], where="src")
    with pytest.raises(OptionsError, match="byte_range needs exactly one input file, got 2"):
        check_source("english", {"byte_range": [0, 5]}, [DATA / "english", DATA / "web"])
    # YAML gives lists and strings; the options hold what the readers test against
    opts = check_source("github", {"languages": ["Python", "go"], "deny_licenses": "MIT"})
    assert opts == GithubOptions(languages=frozenset({"python", "go"}), deny_licenses=frozenset({"mit"}))
    assert check_source("wiki", {"byte_range": [0, 10]}) == WikiOptions(byte_range=[0, 10])
    assert check_source("json", {"fields": {"text": "body"}}).keys("text") == ("body",)
