"""Blended sample index: exact per-source counts, even interleaving, seeded determinism, bad specs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import ConfigError
from corpus.indexed import IndexedWriter
from corpus.mix import MixConfig, MixSource, build_mix, draw, interleave, load_mix, load_mix_config


def _corpus(path: Path, n_seqs: int, length: int) -> str:
    prefix = str(path)
    with IndexedWriter(prefix, np.uint16) as w:
        for i in range(n_seqs):
            w.add_document(np.full(length, i % 60000, dtype=np.uint16), [length])
    return prefix


@pytest.fixture
def sources(tmp_path):
    return {
        "zh": _corpus(tmp_path / "zh", 50, 10),
        "en": _corpus(tmp_path / "en", 20, 20),
        "code": _corpus(tmp_path / "code", 7, 30),
    }


def test_target_counts_with_up_and_down_sampling(sources, tmp_path):
    cfg = MixConfig(output=str(tmp_path / "mix"), seed=7, sources=[
        MixSource("zh", sources["zh"], samples=30),     # fewer than the 50 available
        MixSource("en", sources["en"], samples=20),     # exactly one epoch
        MixSource("code", sources["code"], samples=18), # 2 epochs + 4
    ])
    report = build_mix(cfg)
    which, sample = load_mix(cfg.output)
    assert len(which) == len(sample) == 68 == report["samples"]
    assert np.bincount(which, minlength=3).tolist() == [30, 20, 18]
    zh = sample[which == 0]
    assert len(set(zh.tolist())) == 30 and zh.max() < 50          # a subset, no repeats
    assert sorted(sample[which == 1].tolist()) == list(range(20))  # every sequence once
    code = np.bincount(sample[which == 2], minlength=7)
    assert sorted(code.tolist()) == [2, 2, 2, 3, 3, 3, 3]          # whole epochs, then part of one
    assert [s["samples"] for s in report["sources"]] == [30, 20, 18]
    assert report["tokens"] == 30 * 10 + 20 * 20 + 18 * 30


def test_weights_share_the_total(sources, tmp_path):
    cfg = MixConfig(output=str(tmp_path / "mix"), total_samples=100, sources=[
        MixSource("zh", sources["zh"], weight=0.6),
        MixSource("en", sources["en"], weight=0.3),
        MixSource("code", sources["code"], weight=0.1),
    ])
    build_mix(cfg)
    which, _ = load_mix(cfg.output)
    assert np.bincount(which).tolist() == [60, 30, 10]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=5))
def test_interleave_keeps_every_prefix_in_proportion(counts):
    order = interleave(counts)
    total = sum(counts)
    assert len(order) == total
    seen = np.zeros(len(counts))
    for pos, src in enumerate(order.tolist(), start=1):
        seen[src] += 1
        expected = np.array(counts) * pos / total
        # Ties between sources cost at most half a sample per other source.
        assert (np.abs(seen - expected) <= 1 + len(counts) / 2 + 1e-9).all()


def test_same_seed_same_bytes_other_seed_other_order(sources, tmp_path):
    def run(name, seed):
        cfg = MixConfig(output=str(tmp_path / name), seed=seed, sources=[
            MixSource("zh", sources["zh"], samples=40), MixSource("code", sources["code"], samples=10)])
        build_mix(cfg)
        return [Path(f"{cfg.output}.mix.{k}.npy").read_bytes() for k in ("dataset_index", "dataset_sample_index")]

    assert run("a", 1) == run("b", 1)
    assert run("a", 1)[1] != run("c", 2)[1]


def test_draw_is_seeded_permutations():
    a = draw(5, 12, np.random.default_rng(0))
    b = draw(5, 12, np.random.default_rng(0))
    assert np.array_equal(a, b)
    assert sorted(a[:5].tolist()) == sorted(a[5:10].tolist()) == list(range(5))


def test_bad_specs_are_named(sources, tmp_path):
    with pytest.raises(ConfigError, match="'zh'.*exactly one"):
        MixSource("zh", sources["zh"], samples=3, weight=1.0)
    with pytest.raises(ConfigError, match="duplicate source name 'zh'"):
        MixConfig(output="x", sources=[MixSource("zh", "a", samples=1), MixSource("zh", "b", samples=1)])
    with pytest.raises(ConfigError, match="'ghost': no index"):
        build_mix(MixConfig(output=str(tmp_path / "m"), sources=[MixSource("ghost", str(tmp_path / "nope"), samples=1)]))
    spec = tmp_path / "mix.yaml"
    spec.write_text(f"output: {tmp_path / 'm'}\nsources:\n  - {{name: zh, prefix: {sources['zh']}, sampels: 3}}\n")
    with pytest.raises(ConfigError, match=r"sources\[0\].*unknown key 'sampels'"):
        load_mix_config(spec)
    spec.write_text(f"output: {tmp_path / 'm'}\nsources:\n  - {{name: zh, prefix: {sources['zh']}, samples: 3}}\n")
    assert build_mix(load_mix_config(spec))["samples"] == 3


def test_cli_mix(sources, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    spec = tmp_path / "mix.yaml"
    spec.write_text(f"output: {tmp_path / 'cli'}\nseed: 3\nsources:\n"
                    f"  - {{name: zh, prefix: {sources['zh']}, weight: 3}}\n"
                    f"  - {{name: en, prefix: {sources['en']}, weight: 1}}\ntotal_samples: 40\n")
    r = subprocess.run([sys.executable, "-m", "corpus", "mix", "--config", str(spec)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "40 samples" in r.stdout
    which, _ = load_mix(tmp_path / "cli")
    assert np.bincount(which).tolist() == [30, 10]


def _record_tokenizer(prefix: str, sha: str) -> None:
    """What `corpus build` writes next to its index: PREFIX.json naming the tokenizer and its sha256."""
    import json

    Path(prefix + ".json").write_text(json.dumps({"tokenizer": {"path": f"/tok/{sha[:4]}.model", "sha256": sha}}))


def test_sources_of_different_tokenizers_are_refused(sources, tmp_path):
    from corpus.errors import TokenizerMismatchError
    from corpus.identity import recorded_tokenizer_sha256

    cfg = MixConfig(output=str(tmp_path / "mix"), sources=[
        MixSource("zh", sources["zh"], samples=5), MixSource("en", sources["en"], samples=5)])
    # Sources with no record (written by hand): nothing to compare, nothing recorded.
    assert build_mix(cfg)["tokenizer_sha256"] is None
    assert recorded_tokenizer_sha256(cfg.output) is None
    _record_tokenizer(sources["zh"], "a" * 64)
    _record_tokenizer(sources["en"], "a" * 64)
    report = build_mix(cfg)
    assert report["tokenizer_sha256"] == "a" * 64 and [s["tokenizer_sha256"] for s in report["sources"]] == ["a" * 64] * 2
    # The mix JSON carries it for the training side.
    assert recorded_tokenizer_sha256(cfg.output) == "a" * 64
    _record_tokenizer(sources["en"], "b" * 64)
    (tmp_path / "mix.mix.json").unlink()
    with pytest.raises(TokenizerMismatchError, match=rf"different tokenizers.*{sources['zh']}: {'a' * 64}.*"
                                                     rf"{sources['en']}: {'b' * 64}"):
        build_mix(cfg)
    assert not (tmp_path / "mix.mix.json").exists()


def test_cli_mix_set_and_print_config(sources, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    spec = tmp_path / "mix.yaml"
    spec.write_text(f"output: {tmp_path / 'cli'}\nsources:\n  - {{name: zh, prefix: {sources['zh']}, samples: 4}}\n")
    r = subprocess.run([sys.executable, "-m", "corpus", "mix", "--config", str(spec), "--set", "sources[0].samples=9",
                        "--set", "seed=5", "--print-config"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "samples: 9" in r.stdout and "seed: 5  # default: 1234" in r.stdout
    r = subprocess.run([sys.executable, "-m", "corpus", "mix", "--config", str(spec), "--set", "sources[0].sampels=9"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("corpus: error: --set sources[0].sampels=9"), r.stderr
