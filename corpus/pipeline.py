"""The corpus build over raw sources: read → clean → filter → dedup → pack/tokenize → mix.

A config with a ``sources:`` list (see ``configs/tiny/sources.yaml``) runs, per source:

1. **prepare** — the source's reader streams Documents; each is cleaned, checked by the quality and
   harmful-content rules (the first failing rule is counted, a few rejected documents are kept for
   audit), then exact and MinHash near-duplicates are removed (the first of each cluster stays).
   Survivors go to ``OUT/<source>/docs.jsonl``; ``prepare.json`` (counts) is the completion marker.
2. **build** — ``corpus build`` on those documents → ``OUT/<source>/<source>_text_document.{bin,idx}``.

then **mix** (``OUT/blend.mix.*``, per-source targets or weights) and the JSON report ``OUT/report.json``.

Every output is written under a temporary name and renamed when complete, and each stage's marker
is written last with a fingerprint of what it was made from: a rerun (after a crash, a ``kill -9``,
or a requeue) redoes only the stages without a valid marker, and since every stage is a
deterministic function of its inputs, the result is byte-identical to an uninterrupted run.

Dedup holds one 1 KiB signature per surviving document of a source in memory; for sources larger
than a node's memory, ``corpus.dedup`` documents the array-task flow (signature shards, band ranges).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from corpus import sentences
from corpus.build import BuildConfig, build, file_sha256
from corpus.clean import clean
from corpus.config import ConfigError, load_config_with_list, load_yaml
from corpus.dedup import DedupConfig, exact_unique, near_representatives
from corpus.mix import MixConfig, MixSource, build_mix
from corpus.quality import QualityConfig, check, load_quality_config
from corpus.sources import READERS, expand, make_options, read_source

@dataclass
class SourceSpec:
    name: str
    layout: str                      # a reader: baike, wudao, wiki, wiki_json, english, github, leetcode
    paths: list[str]
    lang: str                        # zh | en | code: cleaning, filters, dedup shingles, sentence rules
    options: dict[str, Any] = field(default_factory=dict)   # the reader's options
    samples: int | None = None       # mix: a target sample count …
    weight: float | None = None      # … or a weight (with total_samples)

    def __post_init__(self) -> None:
        if self.layout not in READERS:
            raise ConfigError(f"source {self.name!r}: unknown layout {self.layout!r} (known: {', '.join(sorted(READERS))})")
        if self.lang not in sentences.LANGS:
            raise ConfigError(f"source {self.name!r}: lang {self.lang!r} is not one of {', '.join(sentences.LANGS)}")
        try:
            make_options(self.layout, **self.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"source {self.name!r}: options: {exc}") from None


@dataclass
class PipelineConfig:
    output_dir: str
    tokenizer: str
    sources: list[SourceSpec] = field(default_factory=list)
    filters: str | None = None       # QualityConfig YAML; None: the defaults
    dedup: dict[str, Any] = field(default_factory=dict)   # DedupConfig keys
    audit_samples: int = 5           # rejected documents kept per rule and source, for audit
    seq_length: int = 1024
    min_tokens: int = 20
    overlap: bool = False
    workers: int = 1
    mix_seed: int = 1234
    total_samples: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("key 'sources': at least one source is needed")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"key 'sources': duplicate source names in {names}")
        try:
            DedupConfig.from_dict(self.dedup, "key 'dedup'")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def load_pipeline_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    return load_config_with_list(PipelineConfig, path, "sources", SourceSpec, overrides,
                                 "name, layout, paths, lang, …")


def is_pipeline_config(path: str | os.PathLike) -> bool:
    return "sources" in load_yaml(path)


# --------------------------------------------------------------------------- helpers


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _inputs(spec: SourceSpec) -> list[tuple[str, int, int]]:
    files = []
    for unit in expand(spec.layout, spec.paths):
        paths = [p for p in sorted(Path(unit).rglob("*")) if p.is_file()] if Path(unit).is_dir() else [Path(unit)]
        files += [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    return files


def _read_marker(path: Path, fingerprint: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if data.get("fingerprint") == fingerprint else None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_temps(folder: Path) -> None:
    # Left by a killed run: never trusted, never reused.
    for tmp in folder.glob("*.tmp.*"):
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- stages


def prepare_source(cfg: PipelineConfig, spec: SourceSpec, quality: QualityConfig, dedup_cfg: DedupConfig) -> dict[str, Any]:
    """Read, clean, filter and deduplicate one source into ``docs.jsonl``; return its counts."""
    folder = Path(cfg.output_dir) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(folder)
    fingerprint = _fingerprint("prepare", asdict(spec), asdict(quality), asdict(dedup_cfg), cfg.audit_samples,
                               _inputs(spec))
    marker = folder / "prepare.json"
    done = _read_marker(marker, fingerprint)
    if done and (folder / "docs.jsonl").is_file():
        return done

    skips: Counter = Counter()
    rejected: Counter = Counter()
    audit: list[dict[str, Any]] = []
    kept: list[tuple[str, str]] = []  # (id, cleaned text) of documents that passed the filters
    read = 0
    for doc in read_source(spec.layout, spec.paths, skips, **spec.options):
        read += 1
        text = clean(doc.text, spec.lang)
        rule = "empty_after_cleaning" if not text.strip() else check(text, spec.lang, quality)
        if rule is not None:
            rejected[rule] += 1
            if rejected[rule] <= cfg.audit_samples:
                audit.append({"id": doc.id, "rule": rule, "text": text[:500]})
            continue
        kept.append((doc.id, text))

    keep, exact_dups, near_dups = _dedup([t for _, t in kept], spec.lang, dedup_cfg)
    out = folder / "docs.jsonl"
    tmp = out.with_name(f"{out.name}.tmp.{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        for i in keep:
            doc_id, text = kept[i]
            f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    _write_atomic(folder / "rejected.jsonl", "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in audit))
    counts = {
        "source": spec.name, "fingerprint": fingerprint,
        "read": read, "skipped_by_reader": dict(sorted(skips.items())),
        "rejected": dict(sorted(rejected.items())), "passed_filters": len(kept),
        "exact_duplicates": exact_dups, "near_duplicates": near_dups, "kept": len(keep),
        "docs": str(out), "audit": str(folder / "rejected.jsonl"),
    }
    _write_atomic(marker, json.dumps(counts, indent=2, ensure_ascii=False) + "\n")
    return counts


def _dedup(texts: list[str], lang: str, cfg: DedupConfig) -> tuple[list[int], int, int]:
    """Indices kept (ascending) after exact then near dedup, and how many of each kind were dropped."""
    uniq = exact_unique(texts, lang)[0] if cfg.exact else list(range(len(texts)))
    rep = near_representatives([texts[i] for i in uniq], lang, cfg)
    keep = [uniq[i] for i in np.flatnonzero(rep == np.arange(len(uniq))).tolist()]
    return keep, len(texts) - len(uniq), len(uniq) - len(keep)


def build_source(cfg: PipelineConfig, spec: SourceSpec) -> dict[str, Any]:
    folder = Path(cfg.output_dir) / spec.name
    bcfg = BuildConfig(
        input=[str(folder / "docs.jsonl")], output=str(folder / f"{spec.name}_text_document"),
        tokenizer=cfg.tokenizer, text_field="text", lang=spec.lang, lang_field=None,
        seq_length=cfg.seq_length, min_tokens=cfg.min_tokens, overlap=cfg.overlap, workers=cfg.workers,
        progress=cfg.progress,
    )
    return build(bcfg)


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """All stages for every source, then the mix; returns (and writes) ``OUT/report.json``."""
    quality = load_quality_config(cfg.filters)
    dedup_cfg = DedupConfig.from_dict(cfg.dedup, "key 'dedup'")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out)
    per_source = []
    for spec in cfg.sources:
        prepared = prepare_source(cfg, spec, quality, dedup_cfg)
        built = build_source(cfg, spec) if prepared["kept"] else None
        per_source.append({"name": spec.name, "layout": spec.layout, "lang": spec.lang, "prepare": prepared,
                           "build": built and {"prefix": built["output"]["prefix"], "counts": built["counts"]}})
    mixable = [(spec, s) for spec, s in zip(cfg.sources, per_source) if s["build"] and s["build"]["counts"]["sequences"]]
    mix_report = None
    if mixable:
        sources = []
        for spec, s in mixable:
            # A source with neither target nor weight takes its own size: every sample once.
            samples = spec.samples if spec.samples is not None or spec.weight is not None \
                else s["build"]["counts"]["sequences"]
            sources.append(MixSource(spec.name, s["build"]["prefix"], samples=samples, weight=spec.weight))
        mix_report = build_mix(MixConfig(output=str(out / "blend"), sources=sources, seed=cfg.mix_seed,
                                         total_samples=cfg.total_samples))
    report = {
        "sources": per_source,
        "mix": mix_report,
        "tokenizer": {"path": cfg.tokenizer, "sha256": file_sha256(cfg.tokenizer)},
        "config": dataclasses.asdict(cfg),
    }
    _write_atomic(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


def format_pipeline_report(report: dict[str, Any]) -> str:
    lines = [f"{'source':<12} {'read':>8} {'rejected':>9} {'exact dup':>9} {'near dup':>9} {'kept':>8} "
             f"{'sequences':>10} {'tokens':>12}"]
    for s in report["sources"]:
        p, b = s["prepare"], (s["build"] or {}).get("counts", {})
        lines.append(f"{s['name']:<12} {p['read']:>8,} {sum(p['rejected'].values()):>9,} {p['exact_duplicates']:>9,} "
                     f"{p['near_duplicates']:>9,} {p['kept']:>8,} {b.get('sequences', 0):>10,} {b.get('tokens', 0):>12,}")
        for rule, n in p["rejected"].items():
            lines.append(f"    rejected by {rule}: {n}")
        for reason, n in p["skipped_by_reader"].items():
            lines.append(f"    skipped by the reader ({reason}): {n}")
    if report["mix"]:
        m = report["mix"]
        lines.append(f"mix: {m['samples']:,} samples, {m['tokens']:,} tokens, seed {m['seed']}: "
                     + ", ".join(f"{s['name']} {s['token_share']:.1%}" for s in m["sources"]))
    return "\n".join(lines)
