"""The raw-source build: read → clean → filter → dedup → pack → mix, resumable and deterministic."""

from __future__ import annotations

import bz2
import dataclasses
import json
import random
import shutil
from pathlib import Path

import pytest

import wiki_dumps
from conftest import ROOT
from common.config import ConfigError
from corpus.indexed import validate
from corpus.partition import contiguous_ranges
from corpus.plan import run_plan as run_pipeline
from corpus.spec import GLOBAL_GROUP, load_corpus_config as load_pipeline_config

TINY = ROOT / "configs" / "tiny" / "sources.yaml"
# The pid of a killed writer in its temporaries' names: above Linux's largest pid_max, so no process has it
# (a rerun removes temporaries of dead writers only, never a live task's).
DEAD_PID = 2**22 + 1


def _config(tokenizer_path, out: Path, **overrides):
    cfg = load_pipeline_config(TINY, {"tokenizer": str(tokenizer_path), "output_dir": str(out)})
    # Paths in the tiny config are relative to the repository root.
    for spec in cfg.sources:
        spec.paths = [str(ROOT / p) for p in spec.paths]
    cfg.filters = str(ROOT / cfg.filters)
    return dataclasses.replace(cfg, **overrides)


def _outputs(out: Path) -> dict[str, bytes]:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.suffix in (".bin", ".idx", ".npy", ".jsonl"))
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def _final(out: Path) -> dict[str, bytes]:
    """The build's deliverables, which must not depend on shards or band tasks (the .json side files
    name their own paths, and shards/, dedup/ hold the intermediate steps)."""
    def deliverable(p: Path) -> bool:
        if {"shards", "dedup", GLOBAL_GROUP} & set(p.relative_to(out).parts):
            return False
        # docs.jsonl: a source's prepared documents; PREFIX.docs.jsonl: its build's sidecar.
        return p.name.endswith("docs.jsonl") or p.name == "rejected.jsonl" or p.suffix in (".bin", ".idx") or \
            (p.name.startswith("blend.") and p.suffix == ".npy")
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and deliverable(p)}


# Generated English pages, different enough from each other not to be near duplicates.
_WORDS = ("river valley harbour city village mountain forest market bridge museum farmer teacher engineer "
          "library garden railway station castle church school festival winter summer autumn spring island "
          "lake coast road tower factory mill orchard field meadow canal ferry lighthouse palace theatre").split()
_VERBS = "built crossed visited described painted repaired opened closed measured mapped".split()
_ADJ = "old new small large quiet busy northern southern eastern western famous ancient".split()


def _page_text(i: int) -> str:
    rng = random.Random(i)
    sentences = []
    for _ in range(rng.randint(6, 14)):
        a, b = rng.sample(_WORDS, 2)
        sentences.append(f"The {rng.choice(_ADJ)} {a} near the {rng.choice(_ADJ)} {b} was {rng.choice(_VERBS)} "
                         f"in {1700 + rng.randint(0, 300)} by the people who lived in the {rng.choice(_WORDS)} "
                         f"of {rng.choice(_WORDS).title()}ford, and it is still there today.")
    return " ".join(sentences)


def _make_multistream(folder: Path, pages: int, per_stream: int,
                      name: str = "enwiki-20240101-pages-articles-multistream") -> Path:
    """An en dump (tests/wiki_dumps.py) of prose pages; every ninth repeats the one before it."""
    return wiki_dumps.make_multistream(
        folder, name, pages, per_stream, lambda i: (f"Page {i}", 0, _page_text(i if i % 9 != 4 else i - 1)),
        "en", "Wikipedia", "enwiki")


def _counts(report) -> dict[str, dict]:
    drop = {"fingerprint", "shards", "docs", "audit"}
    return {s["name"]: {k: v for k, v in s["prepare"].items() if k not in drop} for s in report["sources"]}


_BASE = ("The river rises in the northern hills and flows south through a wide valley of farms and "
         "small towns before it reaches the sea near the old harbour city, where ships once loaded grain "
         "and timber for the long voyage across the ocean to distant markets in the west. In spring the "
         "melting snow swells the current, and the lower fields are flooded for a few weeks, which leaves "
         "a layer of fine silt that the farmers value for their wheat and barley. A stone bridge built "
         "three centuries ago still carries the main road over the narrows, and a small museum beside it "
         "tells the story of the ferrymen who worked the crossing before the bridge was finished.")
_OTHER = ("A completely different page about mountains, glaciers and the weather that shapes the high "
          "ridges of the range through the long winters and the short, bright summers of the north, where "
          "the few villages of the upper valleys have kept their old stone houses and their narrow paths.")


def _dups_source(folder: Path) -> Path:
    """Duplicates spread over two files: the first copy of each is in a.jsonl, later ones in b.jsonl."""
    folder.mkdir(parents=True)
    a = [{"text": _BASE}, {"text": _OTHER}, {"text": _BASE}]
    b = [{"text": _BASE.replace("old harbour", "old  harbour") + "\n"},     # exact after normalisation
         {"text": _BASE.replace("distant markets", "faraway markets")},      # near duplicate
         {"text": _OTHER.replace("narrow paths", "narrow lanes")},         # near duplicate of the other
         {"text": _OTHER.upper()}]                                           # exact (en is case-folded)
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in a))
    (folder / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in b))
    return folder


def test_every_layout_goes_through(tokenizer_path, tmp_path):
    report = run_pipeline(_config(tokenizer_path, tmp_path / "out"))
    by_name = {s["name"]: s for s in report["sources"]}
    assert set(by_name) == {"baike", "wudao", "wiki_zh", "wiki_en", "english", "web", "github", "leetcode"}
    for name, s in by_name.items():
        assert s["prepare"]["kept"] > 0, name
        validate(s["build"]["prefix"])
    # Reader skips and filter rejections are counted per source and reason/rule.
    assert by_name["wiki_zh"]["prepare"]["skipped_by_reader"]["redirect"] == 2
    assert by_name["github"]["prepare"]["skipped_by_reader"]["vendored"] == 3
    assert by_name["english"]["prepare"]["rejected"] == {"length": 1}
    # The web sample: spam pages fail the harmful-density rule, a navigation page the word rules (no
    # stop words; its "|" separators are layout, not non-alphabetic words, since issue 13), and
    # the same article with a one-word edit is a near duplicate of the first (which stays).
    web = by_name["web"]["prepare"]
    assert web["rejected"] == {"stop_words": 1, "harmful": 2}
    assert (web["exact_duplicates"], web["near_duplicates"], web["kept"]) == (0, 1, 2)
    audit = [json.loads(line) for line in (tmp_path / "out" / "english" / "rejected.jsonl").open()]
    assert [a["rule"] for a in audit] == ["length"]
    # Traditional → Simplified went through the wiki reader option, cleaning kept it.
    docs = (tmp_path / "out" / "wiki_zh" / "docs.jsonl").read_text(encoding="utf-8")
    assert "{{" not in docs
    mix = report["mix"]
    assert [s["name"] for s in mix["sources"]] == list(by_name)
    assert mix["samples"] == sum(s["build"]["counts"]["sequences"] for s in by_name.values())
    assert json.loads((tmp_path / "out" / "report.json").read_text())["mix"]["samples"] == mix["samples"]


def test_a_sample_traces_to_its_source_record_through_the_sidecar(tokenizer_path, tmp_path):
    """A raw-source build: sample → document → sidecar {source, id, bytes} → the reader's record with
    that id, whose cleaned text is what was tokenized (its UTF-8 length is ``bytes``)."""
    from collections import Counter

    from corpus.clean import clean
    from corpus.plan import source_prefix
    from corpus.sources import read_source
    from corpus.tokenizer import Tokenizer
    from test_build import _contains, trace_samples

    cfg = _config(tokenizer_path, tmp_path / "out", seq_length=64)
    cfg.sources = [s for s in cfg.sources if s.name in ("baike", "wiki_en", "github")]   # xml.bz2, json, repos
    run_pipeline(cfg)
    tok = Tokenizer(tokenizer_path)
    ids = set()
    for spec in cfg.sources:
        raw = {d.id: d for d in read_source(spec.layout, spec.paths, Counter(), **spec.options)}
        traced = trace_samples(source_prefix(cfg, spec), tok, step=1)   # every sample
        assert traced, spec.name
        ids |= {line["id"] for _, line in traced}
        for body, line in traced:
            assert line["source"] == spec.name, line
            text = clean(raw[line["id"]].text, spec.lang)
            assert line["bytes"] == len(text.encode("utf-8")), line
            assert _contains(tok.encode(text), body), line
    assert len(ids) >= 5


def test_duplicates_are_removed_keeping_the_first(tokenizer_path, tmp_path):
    src = tmp_path / "dups"
    src.mkdir()
    base = ("The river rises in the northern hills and flows south through a wide valley of farms and "
            "small towns before it reaches the sea near the old harbour city, where ships once loaded grain "
            "and timber for the long voyage across the ocean to distant markets in the west. In spring the "
            "melting snow swells the current, and the lower fields are flooded for a few weeks, which leaves "
            "a layer of fine silt that the farmers value for their wheat and barley. A stone bridge built "
            "three centuries ago still carries the main road over the narrows, and a small museum beside it "
            "tells the story of the ferrymen who worked the crossing before the bridge was finished.")
    records = [
        {"text": base},
        {"text": "A completely different page about mountains, glaciers and the weather that shapes the high "
                 "ridges of the range through the long winters and the short, bright summers of the north."},
        {"text": base},                                   # exact duplicate
        {"text": base.replace("old harbour", "old  harbour") + "\n"},  # exact after normalisation
        {"text": base.replace("distant markets", "faraway markets")},   # near duplicate
    ]
    (src / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = _config(tokenizer_path, tmp_path / "out")
    cfg.sources = [dataclasses.replace(cfg.sources[4], name="dups", paths=[str(src)])]
    prepared = run_pipeline(cfg)["sources"][0]["prepare"]
    assert (prepared["exact_duplicates"], prepared["near_duplicates"], prepared["kept"]) == (2, 1, 2)
    kept = [json.loads(line)["id"] for line in (tmp_path / "out" / "dups" / "docs.jsonl").open()]
    assert len(kept) == 2
    texts = [json.loads(line)["text"] for line in (tmp_path / "out" / "dups" / "docs.jsonl").open()]
    assert texts[0].startswith("The river") and texts[1].startswith("A completely")


def test_rerun_skips_and_a_crashed_run_resumes_to_the_same_bytes(tokenizer_path, tmp_path):
    out = tmp_path / "out"
    cfg = _config(tokenizer_path, out)
    run_pipeline(cfg)
    reference = _outputs(out)
    marker = out / "baike" / "prepare.json"
    mtime = marker.stat().st_mtime_ns
    run_pipeline(cfg)
    assert marker.stat().st_mtime_ns == mtime  # nothing redone
    # A run killed mid-way: a half-written temporary file, a stage without its marker, a missing index.
    (out / "wudao" / f"docs.jsonl.tmp.{DEAD_PID}").write_text('{"id": "half')
    (out / "wudao" / "prepare.json").unlink()
    (out / "github" / "github_text_document.idx").unlink()
    (out / "blend.mix.dataset_index.npy").unlink()
    run_pipeline(cfg)
    assert _outputs(out) == reference
    assert not list(out.rglob("*.tmp.*"))
    # A deleted source folder is rebuilt alone.
    shutil.rmtree(out / "english")
    assert run_pipeline(cfg)["sources"][4]["prepare"]["kept"] == 2
    assert _outputs(out) == reference
    # A changed setting redoes the stage: the marker's fingerprint no longer matches.
    run_pipeline(dataclasses.replace(cfg, audit_samples=1))
    assert marker.stat().st_mtime_ns != mtime


def test_bad_pipeline_configs_are_named(tokenizer_path, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: o\ntokenizer: t\nsources:\n  - {name: a, layout: myspace, lang: zh, paths: [x]}\n")
    with pytest.raises(ConfigError, match="key 'layout': unknown source layout 'myspace'; known: .*wiki"):
        load_pipeline_config(bad)
    bad.write_text("output_dir: o\ntokenizer: t\nsources:\n  - {name: a, layout: wiki, lang: zh, paths: [x], "
                   "options: {to_simplfied: true}}\n")
    with pytest.raises(ConfigError, match="to_simplfied"):
        load_pipeline_config(bad)
    bad.write_text("output_dir: o\ntokenizer: t\ndedup: {treshold: 0.8}\nsources:\n"
                   "  - {name: a, layout: wiki, lang: zh, paths: [x]}\n")
    with pytest.raises(ConfigError, match="treshold"):
        load_pipeline_config(bad)
    bad.write_text("output_dir: o\ntokenizer: t\nsources:\n  - {name: a, layout: wiki, lang: fr, paths: [x]}\n")
    with pytest.raises(ConfigError, match="lang 'fr'"):
        load_pipeline_config(bad)
    # A step name that is not one: named with the known ones, before any work.
    bad.write_text("output_dir: o\ntokenizer: t\nsources:\n  - {name: a, layout: wiki, lang: zh, paths: [x], "
                   "steps: [clean, dedupe]}\n")
    with pytest.raises(ConfigError, match=r"steps\[1\]: unknown step 'dedupe' \(known: clean, filter"):
        load_pipeline_config(bad)
    # The old JSON-lines config form is named as such.
    bad.write_text("input: [x.jsonl]\noutput: o\ntokenizer: t\n")
    with pytest.raises(ConfigError, match="key 'input': a JSON-lines build is now a source.*layout: jsonl"):
        load_pipeline_config(bad)


def test_report_page_with_plots(tokenizer_path, tmp_path):
    from corpus.report import write_report

    out = tmp_path / "out"
    run_pipeline(_config(tokenizer_path, out))
    md = write_report(out)
    text = md.read_text(encoding="utf-8")
    for name in ("baike", "wudao", "wiki_zh", "wiki_en", "english", "web", "github", "leetcode"):
        assert f"| {name} |" in text
    for png in ("documents.png", "rejections.png", "sample_lengths.png", "token_share.png"):
        assert f"({png})" in text
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="no pipeline report"):
        write_report(tmp_path / "empty")


def test_report_states_the_fill_ratio_of_the_samples(tokenizer_path, tmp_path):
    """Tokens ÷ (samples × seq_length), computed here from the indexes themselves."""
    import re

    from corpus.indexed import IndexedReader
    from corpus.report import fill_ratio, write_report

    out = tmp_path / "out"
    cfg = _config(tokenizer_path, out)
    report = run_pipeline(cfg)
    lengths = []
    for s in report["sources"]:
        if s["build"]:
            with IndexedReader(s["build"]["prefix"]) as r:
                lengths.extend(int(n) for n in r.sequence_lengths)
    expected = sum(lengths) / (len(lengths) * cfg.seq_length)
    assert 0 < expected < 1
    text = write_report(out).read_text(encoding="utf-8")
    m = re.search(r"Fill ratio (\d+\.\d)%: ([\d,]+) tokens in ([\d,]+) samples of at most (\d+) tokens", text)
    assert m, text
    assert float(m.group(1)) == round(100 * expected, 1)
    assert int(m.group(2).replace(",", "")) == sum(lengths) and int(m.group(3).replace(",", "")) == len(lengths)
    assert int(m.group(4)) == cfg.seq_length
    assert fill_ratio(__import__("numpy").array([512, 1024]), 1024) == 0.75


@pytest.mark.slurm
def test_raw_source_build_on_slurm_equals_a_local_run(slurm_cluster, tokenizer_path, tmp_path):
    """hpc.submit corpus with a raw-source config, sharded: each stage of the plan (prepare shards →
    band tasks → a dedup task per source → a build task per source → mix + report) an array job after
    the previous one; the result equals a one-process run."""
    import os
    import subprocess
    import sys

    import yaml

    from hpc.status import read_registry

    local = tmp_path / "local"
    run_pipeline(_config(tokenizer_path, local))
    spec = yaml.safe_load(TINY.read_text())
    spec.update(tokenizer=str(tokenizer_path), output_dir=str(tmp_path / "slurm"), filters=str(ROOT / spec["filters"]),
                shards_per_source=2, shard_records=1, band_tasks=2)
    for source in spec["sources"]:
        source["paths"] = [str(ROOT / p) for p in source["paths"]]
    job = tmp_path / "sources job.yaml"
    job.write_text(yaml.safe_dump(spec, allow_unicode=True))
    logs = tmp_path / "logs"
    r = subprocess.run([sys.executable, "-m", "hpc.submit", "corpus", "--config", str(job), "--log-folder", str(logs),
                        "--follow"], capture_output=True, text=True, timeout=420,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr + r.stdout
    prepare, bands, dedup, build, mix = read_registry(logs)
    assert [(s.step, s.array) for s in (prepare, bands, dedup, build, mix)] == [
        ("prepare", 16), ("bands", 16), ("dedup", 8), ("build", 8), ("mix", None)]
    assert (bands.after, dedup.after, build.after, mix.after) == (prepare.job_id, bands.job_id, dedup.job_id,
                                                                  build.job_id)
    assert "report" in r.stdout
    assert _final(tmp_path / "slurm") == _final(local)
    assert (tmp_path / "slurm" / "report.md").is_file()


def test_kill_9_at_any_moment_then_rerun_gives_the_same_bytes(tokenizer_path, tmp_path):
    """A real SIGKILL at several points of a run: the rerun never trusts what the killed run left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    reference = tmp_path / "reference"
    run_pipeline(_config(tokenizer_path, reference))
    expected = _outputs(reference)
    spec = yaml.safe_load(TINY.read_text())
    spec.update(tokenizer=str(tokenizer_path), filters=str(ROOT / spec["filters"]))
    for source in spec["sources"]:
        source["paths"] = [str(ROOT / p) for p in source["paths"]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for delay in (0.4, 0.8, 1.2, 1.6):
        out = tmp_path / f"killed-{delay}"
        spec["output_dir"] = str(out)
        job = tmp_path / f"job-{delay}.yaml"
        job.write_text(yaml.safe_dump(spec, allow_unicode=True))
        cmd = [sys.executable, "-m", "corpus", "build", "--config", str(job)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert _outputs(out) == expected, delay
        assert not list(out.rglob("*.tmp.*"))


def _sharded_config(tokenizer_path, tmp_path, out: Path, **overrides):
    cfg = _config(tokenizer_path, out, **overrides)
    dups = tmp_path / "dups"
    if not dups.exists():
        _dups_source(dups)
    cfg.sources = [*cfg.sources, dataclasses.replace(cfg.sources[4], name="dups", paths=[str(dups)])]
    return cfg


@pytest.mark.parametrize("shards, records, band_tasks, per_source", [
    (2, 1, 1, {}),            # dups: a file per shard; one-file sources dealt out record by record
    (3, 1, 4, {}),            # every source with fewer files than shards: records dealt out
    (1, 2, 20, {"github": 3, "dups": 2, "wudao": 2}),   # per-source shards; more band tasks than bands
])
def test_shards_and_band_tasks_do_not_change_a_byte(tokenizer_path, tmp_path, shards, records, band_tasks, per_source):
    reference = run_pipeline(_sharded_config(tokenizer_path, tmp_path, tmp_path / "one"))
    cfg = _sharded_config(tokenizer_path, tmp_path, tmp_path / "many", shards_per_source=shards,
                          shard_records=records, band_tasks=band_tasks)
    for spec in cfg.sources:
        spec.shards = per_source.get(spec.name)
    report = run_pipeline(cfg)
    assert _counts(report) == _counts(reference)
    dups = _counts(report)["dups"]
    # Across shards the first copy still wins: 2 exact and 2 near duplicates of the 2 originals.
    assert (dups["read"], dups["exact_duplicates"], dups["near_duplicates"], dups["kept"]) == (7, 3, 2, 2)
    texts = [json.loads(line)["text"] for line in (tmp_path / "many" / "dups" / "docs.jsonl").open()]
    assert texts == [_BASE, _OTHER]
    assert _final(tmp_path / "many") == _final(tmp_path / "one")
    expected = {s.name: s.shards or shards for s in cfg.sources}
    for name, n in expected.items():
        assert len(list((tmp_path / "many" / name / "shards").glob("*.docs.jsonl"))) == n, name
    assert len(list((tmp_path / "many" / "dups" / "dedup" / "bands").glob("*.npy"))) == band_tasks


def test_units_split_into_contiguous_ranges_of_about_equal_bytes():
    import random

    rng = random.Random(3)
    for _ in range(200):
        sizes = [rng.choice([0, 1, 10, 1000, 10**6]) for _ in range(rng.randint(0, 30))]
        n = rng.randint(1, 40)
        ranges = contiguous_ranges(sizes, n)
        assert len(ranges) == n and ranges[0][0] == 0 and ranges[-1][1] == len(sizes)
        assert all(ranges[i][1] == ranges[i + 1][0] for i in range(n - 1))
        # Enough items: none empty. Fewer: empty ranges, but no item is split.
        assert all(a < b for a, b in ranges) if len(sizes) >= n else all(a <= b for a, b in ranges)
    assert contiguous_ranges([100] * 8, 4) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert contiguous_ranges([700, 100, 100, 100], 2) == [(0, 1), (1, 4)]
    assert contiguous_ranges([10, 10], 4) == [(0, 1), (1, 1), (1, 2), (2, 2)]


def test_global_dedup_keeps_the_earliest_source(tokenizer_path, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    (first / "f.jsonl").write_text(json.dumps({"text": _BASE}) + "\n" + json.dumps({"text": _OTHER}) + "\n")
    third = ("Bees visit the orchard every morning in early summer, moving from blossom to blossom along "
             "the rows of apple and pear trees, while the keeper watches the hives at the edge of the field "
             "and writes down how heavy each one has become since the last time that he opened them.")
    (second / "s.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in
                                            (_BASE, _OTHER.replace("narrow paths", "narrow lanes"), third)))
    cfg = _config(tokenizer_path, tmp_path / "per-source")
    cfg.sources = [dataclasses.replace(cfg.sources[4], name="first", paths=[str(first)]),
                   dataclasses.replace(cfg.sources[4], name="second", paths=[str(second)])]
    per_source = _counts(run_pipeline(cfg))
    assert per_source["second"]["kept"] == 3
    glob_cfg = dataclasses.replace(cfg, output_dir=str(tmp_path / "global"), dedup={**cfg.dedup, "scope": "global"})
    counts = _counts(run_pipeline(glob_cfg))
    assert counts["first"] == {**per_source["first"], "dedup_scope": "global"}
    assert (counts["second"]["exact_duplicates"], counts["second"]["near_duplicates"], counts["second"]["kept"]) == (1, 1, 1)
    kept = [json.loads(line)["text"] for line in (tmp_path / "global" / "second" / "docs.jsonl").open()]
    assert kept == [third]
    # The same with sharded sources and band tasks, and in the other source order the other source wins.
    sharded = dataclasses.replace(glob_cfg, output_dir=str(tmp_path / "global-sharded"), shards_per_source=2,
                                  shard_records=1, band_tasks=3)
    assert _counts(run_pipeline(sharded)) == counts
    assert _final(tmp_path / "global-sharded") == _final(tmp_path / "global")
    swapped = dataclasses.replace(glob_cfg, output_dir=str(tmp_path / "swapped"), sources=glob_cfg.sources[::-1])
    counts = _counts(run_pipeline(swapped))
    assert (counts["second"]["kept"], counts["first"]["kept"]) == (3, 0)


def test_sharded_rerun_redoes_only_what_is_missing(tokenizer_path, tmp_path):
    out = tmp_path / "out"
    cfg = _sharded_config(tokenizer_path, tmp_path, out, shards_per_source=2, shard_records=1, band_tasks=3)
    run_pipeline(cfg)
    reference = _final(out)
    markers = {p: p.stat().st_mtime_ns for p in out.rglob("shards/*.json")}
    # A killed run's leftovers: a half-written shard (so its source was never deduplicated), a lost band
    # file, a lost source marker.
    (out / "dups" / "prepare.json").unlink()
    (out / "dups" / "shards" / f"00001-of-00002.npy.raw.tmp.{DEAD_PID}").write_bytes(b"\x00" * 100)
    (out / "dups" / "shards" / f"00001-of-00002.docs.jsonl.tmp.{DEAD_PID}").write_text('{"id": "ha')
    (out / "dups" / "shards" / "00001-of-00002.json").unlink()
    (out / "wudao" / "dedup" / "bands" / "001-of-003.npy").unlink()
    (out / "english" / "prepare.json").unlink()
    run_pipeline(cfg)
    assert _final(out) == reference
    assert not list(out.rglob("*.tmp.*"))
    redone = {p for p, t in markers.items() if p.stat().st_mtime_ns != t}
    assert redone == {out / "dups" / "shards" / "00001-of-00002.json"}
    # Fewer band tasks: the shards stay, the result does not change.
    run_pipeline(dataclasses.replace(cfg, band_tasks=1))
    assert _final(out) == reference
    assert all(p.stat().st_mtime_ns == t for p, t in markers.items() if p not in redone)


def test_progress_bars_with_rates(tokenizer_path, tmp_path, capsys):
    run_pipeline(_config(tokenizer_path, tmp_path / "out", progress=True))
    err = capsys.readouterr().err
    assert "prepare baike 1/1" in err and "docs/s" in err
    run_pipeline(_config(tokenizer_path, tmp_path / "quiet"))   # None: only on a terminal
    assert "prepare" not in capsys.readouterr().err


def test_bad_scale_out_settings_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    head = "output_dir: o\ntokenizer: t\n"
    one = "sources:\n  - {name: a, layout: wiki, lang: zh, paths: [x]}\n"
    for text, message in [
        (head + "shards_per_source: 0\n" + one, "shards_per_source"),
        (head + "band_tasks: -1\n" + one, "band_tasks"),
        (head + "dedup: {scope: world}\n" + one, "scope"),
        (head + "sources:\n  - {name: a, layout: wiki, lang: zh, paths: [x], shards: 0}\n", "shards"),
        (head + f"sources:\n  - {{name: {GLOBAL_GROUP}, layout: wiki, lang: zh, paths: [x]}}\n", "reserved"),
    ]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_pipeline_config(bad)


def test_shipped_production_config_loads():
    cfg = load_pipeline_config(ROOT / "configs" / "corpus" / "cama_sources.yaml")
    assert cfg.dedup["scope"] == "global" and cfg.band_tasks > 1
    assert {s.name: s.shards or cfg.shards_per_source for s in cfg.sources}["wudao"] == 64


@pytest.mark.slow
def test_kill_9_of_a_sharded_run_then_rerun_gives_the_same_bytes(tokenizer_path, tmp_path):
    """The same with prepare shards and band tasks: the rerun equals an unsharded run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    reference = tmp_path / "reference"
    run_pipeline(_config(tokenizer_path, reference))
    expected = _final(reference)
    spec = yaml.safe_load(TINY.read_text())
    spec.update(tokenizer=str(tokenizer_path), filters=str(ROOT / spec["filters"]), shards_per_source=3,
                shard_records=1, band_tasks=4)
    for source in spec["sources"]:
        source["paths"] = [str(ROOT / p) for p in source["paths"]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for delay in (1.0, 1.4):
        out = tmp_path / f"killed-{delay}"
        spec["output_dir"] = str(out)
        job = tmp_path / f"job-{delay}.yaml"
        job.write_text(yaml.safe_dump(spec, allow_unicode=True))
        cmd = [sys.executable, "-m", "corpus", "build", "--config", str(job)]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert _final(out) == expected, delay
        assert not list(out.rglob("*.tmp.*"))


def test_a_typo_in_a_source_names_the_file_and_the_item(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("output_dir: o\ntokenizer: t\nsources:\n  - {name: a, layout: wiki, lang: zh, paths: [x]}\n"
                   "  - {name: b, layout: wiki, lang: zh, paths: [x], shrads: 2}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: sources\[1\]: unknown key 'shrads' \(did you mean 'shards'"):
        load_pipeline_config(bad)
    bad.write_text("output_dir: o\ntokenizer: t\nsources: [a, b]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: key 'sources\[0\]': expected a mapping"):
        load_pipeline_config(bad)


def test_cli_raw_source_build_set_and_print_config(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "corpus", "build", "--config", str(TINY), "--output", str(tmp_path / "o"),
                        "--set", "band_tasks=3", "--set", "sources[0].shards=2", "--print-config"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"output_dir: {tmp_path / 'o'}" in r.stdout and "band_tasks: 3  # default: 1" in r.stdout
    assert "shards: 2  # default: null" in r.stdout
    assert not (tmp_path / "o").exists()


def test_one_big_file_splits_into_byte_ranges_and_1_or_4_tasks_give_the_same_bytes(tokenizer_path, tmp_path):
    """A multistream wiki dump (cut at bz2 stream starts from its index) and one uncompressed JSON-lines
    file (cut at line starts), each read by 4 prepare tasks that each read only their byte range."""
    from corpus.plan import make_plan
    from corpus.spec import CorpusConfig, SourceSpec

    data = tmp_path / "data"
    data.mkdir()
    dump = _make_multistream(data, pages=120, per_stream=10)
    big = data / "big.jsonl"
    big.write_text("".join(json.dumps({"id": f"j{i}", "text": _page_text(10_000 + i - (i % 7 == 3))}) + "\n"
                           for i in range(150)))

    def config(out: Path, tasks: int) -> CorpusConfig:
        return CorpusConfig(output_dir=str(out), tokenizer=str(tokenizer_path), seq_length=64, min_tokens=8,
                            shards_per_source=tasks, progress=False, dedup={"threshold": 0.8, "scope": "global"},
                            sources=[SourceSpec("wiki", "wiki", [str(dump)], "en", steps=["clean"]),
                                     SourceSpec("big", "jsonl", [str(big)], "en", steps=["clean"])])

    one, four = config(tmp_path / "one", 1), config(tmp_path / "four", 4)
    assert [(s.name, s.tasks) for s in make_plan(four)][:1] == [("prepare", 8)]
    reference, report = run_pipeline(one), run_pipeline(four)
    assert _counts(report) == _counts(reference)
    counts = _counts(report)
    assert counts["wiki"]["read"] == 120 and counts["wiki"]["exact_duplicates"] == 13
    assert counts["big"]["read"] == 150 and counts["big"]["exact_duplicates"] > 0
    for name, total in (("wiki", 120), ("big", 150)):
        shards = [json.loads(p.read_text()) for p in sorted((tmp_path / "four" / name / "shards").glob("*-of-00004.json"))]
        reads = [s["read"] for s in shards]
        # Each task read its own part (not the whole file, dealt out by records): the parts add up.
        assert len(reads) == 4 and sum(reads) == total and max(reads) < total / 2, (name, reads)
    final = _final(tmp_path / "four")
    assert final == _final(tmp_path / "one")
    assert {"wiki/wiki_text_document.docs.jsonl", "big/big_text_document.bin", "wiki/docs.jsonl"} <= set(final)
    # An index of another dump fails before any work, naming the source and the index.
    index = data / "enwiki-20240101-pages-articles-multistream-index.txt.bz2"
    index.write_bytes(bz2.compress(b"5:1:A\n7:2:B\n9:3:C\n"))
    with pytest.raises(ConfigError, match=r"sources\[0\] \(wiki\): .*index.txt.bz2: offset \d+ does not start a bz2 stream"):
        run_pipeline(config(tmp_path / "bad", 4))
    assert not (tmp_path / "bad").exists()
