"""The raw-source build: read → clean → filter → dedup → pack → mix, resumable and deterministic."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from corpus.config import ConfigError
from corpus.indexed import validate
from corpus.pipeline import load_pipeline_config, run_pipeline

TINY = ROOT / "configs" / "tiny" / "sources.yaml"


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
    # The web sample: spam pages fail the harmful-density rule, a navigation page the word rules, and
    # the same article with a one-word edit is a near duplicate of the first (which stays).
    web = by_name["web"]["prepare"]
    assert web["rejected"] == {"alpha_words": 1, "harmful": 2}
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
    (out / "wudao" / "docs.jsonl.tmp.99999").write_text('{"id": "half')
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
    with pytest.raises(ConfigError, match="unknown layout 'myspace'"):
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


@pytest.mark.slurm
def test_raw_source_build_on_slurm_equals_a_local_run(slurm_cluster, tokenizer_path, tmp_path):
    """hpc.submit corpus with a sources: config: one array task per source, then mix + report."""
    import os
    import subprocess
    import sys

    import yaml

    from hpc.status import read_registry

    local = tmp_path / "local"
    run_pipeline(_config(tokenizer_path, local))
    spec = yaml.safe_load(TINY.read_text())
    spec.update(tokenizer=str(tokenizer_path), output_dir=str(tmp_path / "slurm"), filters=str(ROOT / spec["filters"]))
    for source in spec["sources"]:
        source["paths"] = [str(ROOT / p) for p in source["paths"]]
    job = tmp_path / "sources job.yaml"
    job.write_text(yaml.safe_dump(spec, allow_unicode=True))
    logs = tmp_path / "logs"
    r = subprocess.run([sys.executable, "-m", "hpc.submit", "corpus", "--config", str(job), "--log-folder", str(logs),
                        "--follow"], capture_output=True, text=True, timeout=240,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr + r.stdout
    sources, mix = read_registry(logs)
    assert (sources.step, sources.array, mix.step, mix.after) == ("sources", 8, "mix", sources.job_id)
    assert "report" in r.stdout
    assert _outputs(tmp_path / "slurm") == _outputs(local)
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
