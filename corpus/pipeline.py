"""The corpus build over raw sources: read → clean → filter → dedup → pack/tokenize → mix.

A config with a ``sources:`` list (see ``configs/tiny/sources.yaml``) runs, per source:

1. **prepare shard k of N** (N = the source's ``shards``, else ``shards_per_source``) — the source's
   reader streams Documents; each is cleaned, checked by the quality and harmful-content rules (the
   first failing rule is counted, a few rejected documents are kept for audit); survivors go to
   ``OUT/<source>/shards/K-of-N.docs.jsonl`` with their dedup rows (MinHash signature, exact key,
   read position: ``corpus.dedup.ShardWriter``). ``K-of-N.json`` (counts) is the shard's marker.
   A source with at least N input units (files; repositories for ``github``) is split into N
   contiguous unit ranges of about equal bytes; one with fewer (one big dump) is dealt out by records:
   every shard reads the whole source and keeps blocks of ``shard_records`` documents, block b going
   to shard b mod N. Either way a document's position is (unit, record in unit), so the order of
   documents never depends on N.
2. **bands j of T** (T = ``band_tasks``) — the candidate pairs of LSH bands ``split_bands(b, T)[j]``
   over the group's exact-unique rows (``OUT/<group>/bands/J-of-T.npy`` + marker).
3. **dedup** of a group — a source (``dedup: {scope: source}``, the default) or every source at once
   (``scope: global``: documents in config order, so the earliest source keeps a document that several
   hold): exact keys first (the first copy stays), then the pairs of every band task are verified and
   clustered; each cluster keeps its first document in global order. Kept documents go to
   ``OUT/<source>/docs.jsonl`` in read order, the audit sample to ``rejected.jsonl``; ``prepare.json``
   (counts) is the marker.
4. **build** — ``corpus build`` on those documents → ``OUT/<source>/<source>_text_document.{bin,idx}``.

then **mix** (``OUT/blend.mix.*``, per-source targets or weights) and the JSON report ``OUT/report.json``.
Since every step is a deterministic function of its inputs and rows are always taken in global order,
the final files are byte-identical whatever N and T (tests check this). ``run_pipeline`` runs all of
it in one process; ``hpc.submit corpus`` runs prepare shards, band tasks and sources as array tasks.

Every output is written under a temporary name and renamed when complete, and each step's marker
is written last with a fingerprint of what it was made from: a rerun (after a crash, a ``kill -9``,
or a requeue) redoes only the steps without a valid marker, and the result is byte-identical to an
uninterrupted run.

Memory: a prepare shard holds one batch of documents; dedup reads 24 bytes a row (positions, exact
keys) plus, per band task, its bands' columns of the signatures (8 bytes × rows per band row); the
clustering step reads verified pairs' signatures from the memory-mapped shards.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from common.atomic import atomic_open, remove_stale_temps, write_json, write_text
from common.config import load_config, load_yaml
from common.errors import ConfigError
from common.jsonl import parse_json
from common.markers import file_sha256, fingerprint, read_marker, write_marker
from corpus import sentences
from corpus.build import BuildConfig, build
from corpus.clean import clean
from corpus.dedup import (DedupConfig, ShardGroup, ShardWriter, band_params, exact_key, group_band_pairs,
                          group_representatives, signature_params, split_bands)
from corpus.minhash import signatures
from corpus.mix import MixConfig, MixSource, build_mix
from corpus.quality import QualityConfig, check, load_quality_config
from corpus.sources import READERS, expand, make_options, read_source

GLOBAL_GROUP = "_global_dedup"   # the folder of a global dedup's band tasks
_POS_BITS = 40                   # position = unit << 40 | record within the unit
_BATCH_DOCS = 4096               # documents per signature batch
_BATCH_CHARS = 4_000_000


@dataclass
class SourceSpec:
    name: str
    layout: str                      # a reader: baike, wudao, wiki, wiki_json, english, github, leetcode
    paths: list[str]
    lang: str                        # zh | en | code: cleaning, filters, dedup shingles, sentence rules
    options: dict[str, Any] = field(default_factory=dict)   # the reader's options
    samples: int | None = None       # mix: a target sample count …
    weight: float | None = None      # … or a weight (with total_samples)
    shards: int | None = None        # prepare tasks for this source (None: the config's shards_per_source)

    def __post_init__(self) -> None:
        if self.layout not in READERS:
            raise ConfigError(f"source {self.name!r}: unknown layout {self.layout!r} (known: {', '.join(sorted(READERS))})")
        if self.lang not in sentences.LANGS:
            raise ConfigError(f"source {self.name!r}: lang {self.lang!r} is not one of {', '.join(sentences.LANGS)}")
        if self.name == GLOBAL_GROUP or not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"source {self.name!r}: not usable as a folder name (and {GLOBAL_GROUP!r} is reserved)")
        if self.shards is not None and self.shards < 1:
            raise ConfigError(f"source {self.name!r}: shards: must be >= 1, got {self.shards}")
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
    dedup: dict[str, Any] = field(default_factory=dict)   # DedupConfig keys (scope: source | global)
    audit_samples: int = 5           # rejected documents kept per rule and source, for audit
    seq_length: int = 1024
    min_tokens: int = 20
    overlap: bool = False
    workers: int = 1
    mix_seed: int = 1234
    total_samples: int | None = None
    shards_per_source: int = 1       # prepare shards (array tasks) per source
    shard_records: int = 10_000      # a source with fewer units than shards is dealt out in blocks of this many documents
    band_tasks: int = 1              # LSH band ranges (array tasks) per dedup group
    progress: bool | None = None     # tqdm bars; None: when stderr is a terminal

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("key 'sources': at least one source is needed")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"key 'sources': duplicate source names in {names}")
        for key in ("shards_per_source", "shard_records", "band_tasks"):
            if getattr(self, key) < 1:
                raise ConfigError(f"key {key!r}: must be >= 1, got {getattr(self, key)}")
        try:
            DedupConfig.from_dict(self.dedup, "key 'dedup'")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def load_pipeline_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                         sets: Iterable[str] = ()) -> PipelineConfig:
    return load_config(PipelineConfig, path, overrides, sets)


def is_pipeline_config(path: str | os.PathLike) -> bool:
    return "sources" in load_yaml(path)


def num_shards(cfg: PipelineConfig, spec: SourceSpec) -> int:
    return spec.shards or cfg.shards_per_source


def dedup_groups(cfg: PipelineConfig, dedup_cfg: DedupConfig | None = None) -> list[list[int]]:
    """Source indices clustered together: one group per source, or one for all (scope global)."""
    dedup_cfg = dedup_cfg or DedupConfig.from_dict(cfg.dedup, "key 'dedup'")
    if dedup_cfg.scope == "global":
        return [list(range(len(cfg.sources)))]
    return [[i] for i in range(len(cfg.sources))]


# --------------------------------------------------------------------------- helpers


def _progress_on(cfg: PipelineConfig) -> bool:
    return cfg.progress if cfg.progress is not None else sys.stderr.isatty()


def _unit_files(unit: Path) -> list[tuple[str, int, int]]:
    paths = [p for p in sorted(unit.rglob("*")) if p.is_file()] if unit.is_dir() else [unit]
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


def _split_units(sizes: list[int], n: int) -> list[tuple[int, int]]:
    """n contiguous, non-empty ranges of units (len(sizes) >= n) holding about equal bytes."""
    cum = np.cumsum([0] + [max(1, s) for s in sizes])
    edges = [0]
    for k in range(1, n):
        e = int(np.searchsorted(cum, cum[-1] * k / n))
        edges.append(min(max(e, edges[-1] + 1), len(sizes) - (n - k)))
    edges.append(len(sizes))
    return [(edges[k], edges[k + 1]) for k in range(n)]


@dataclass(frozen=True)
class _ShardInput:
    units: list[Path]                # every unit of the source, in read order
    mine: range                      # the unit indices this shard reads
    by_records: bool                 # True: read every unit, keep this shard's record blocks
    files: list[tuple[str, int, int]]  # what the shard is made from (fingerprint)


def _shard_input(cfg: PipelineConfig, spec: SourceSpec, k: int) -> _ShardInput:
    units = expand(spec.layout, spec.paths)
    n = num_shards(cfg, spec)
    per_unit = [_unit_files(Path(u)) for u in units]
    if n == 1 or len(units) < n:
        return _ShardInput(units, range(len(units)), n > 1, [f for fs in per_unit for f in fs])
    a, b = _split_units([sum(f[1] for f in fs) for fs in per_unit], n)[k]
    return _ShardInput(units, range(a, b), False, [f for fs in per_unit[a:b] for f in fs])


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# A killed run's temporaries are never trusted, never reused: each step removes those of dead
# writers under its own names (``prefix``) only — other array tasks, maybe on other nodes whose
# pids mean nothing here, may be writing theirs in the same folder right now.


# --------------------------------------------------------------------------- stage 1: prepare shards


def _shard_prefix(cfg: PipelineConfig, spec: SourceSpec, k: int) -> Path:
    return Path(cfg.output_dir) / spec.name / "shards" / f"{k:05d}-of-{num_shards(cfg, spec):05d}"


def _shard_fingerprint(cfg: PipelineConfig, spec: SourceSpec, k: int, quality: QualityConfig,
                       dedup_cfg: DedupConfig, shard_input: _ShardInput | None = None) -> str:
    si = shard_input or _shard_input(cfg, spec, k)
    what = {f: getattr(spec, f) for f in ("name", "layout", "paths", "lang", "options")}
    return fingerprint("prepare-shard", what, asdict(quality), signature_params(dedup_cfg), cfg.audit_samples,
                        k, num_shards(cfg, spec), cfg.shard_records if si.by_records else None, si.files)


_SHARD_FILES = (".docs.jsonl", ".audit.jsonl", ".npy", ".keys.npy", ".pos.npy")


def prepare_shard(cfg: PipelineConfig, spec: SourceSpec, k: int, quality: QualityConfig,
                  dedup_cfg: DedupConfig) -> dict[str, Any]:
    """Read, clean and filter shard ``k`` of a source; write its documents and dedup rows; return its counts."""
    n = num_shards(cfg, spec)
    if not 0 <= k < n:
        raise ValueError(f"source {spec.name!r}: shard {k} outside 0..{n - 1}")
    prefix = _shard_prefix(cfg, spec, k)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(prefix.parent, prefix.name)
    si = _shard_input(cfg, spec, k)
    fp = _shard_fingerprint(cfg, spec, k, quality, dedup_cfg, si)
    marker = prefix.with_name(prefix.name + ".json")
    done = read_marker(marker, fp)
    if done and all(prefix.with_name(prefix.name + s).is_file() for s in _SHARD_FILES):
        return done

    skips: Counter = Counter()
    rejected: Counter = Counter()
    audit: list[dict[str, Any]] = []
    read = passed = 0
    docs_path = prefix.with_name(prefix.name + ".docs.jsonl")
    writer = ShardWriter(prefix, dedup_cfg.num_perm)
    batch: list[tuple[str, int]] = []
    batch_chars = 0

    def flush() -> None:
        nonlocal batch_chars
        if batch:
            texts = [t for t, _ in batch]
            writer.add(signatures(texts, spec.lang, dedup_cfg), [exact_key(t, spec.lang) for t in texts],
                       [p for _, p in batch])
            batch.clear()
            batch_chars = 0

    bar = None
    if _progress_on(cfg):
        from tqdm import tqdm

        bar = tqdm(desc=f"prepare {spec.name} {k + 1}/{n}", unit=" docs", unit_scale=True, file=sys.stderr,
                   dynamic_ncols=True, mininterval=1.0)
    try:
        with atomic_open(docs_path, "w") as out:
            record = 0   # documents the reader yielded so far, over all units (records mode)
            for u in si.mine:
                unit_skips: Counter = Counter()
                for r, doc in enumerate(read_source(spec.layout, [str(si.units[u])], unit_skips, **spec.options)):
                    if si.by_records:
                        mine = (record // cfg.shard_records) % n == k
                        record += 1
                        if not mine:
                            continue
                    read += 1
                    pos = (u << _POS_BITS) | r
                    text = clean(doc.text, spec.lang)
                    rule = "empty_after_cleaning" if not text.strip() else check(text, spec.lang, quality)
                    if bar is not None:
                        bar.update(1)
                        if read % 1000 == 0:
                            bar.set_postfix(passed=passed, refresh=False)
                    if rule is not None:
                        rejected[rule] += 1
                        if rejected[rule] <= cfg.audit_samples:
                            audit.append({"pos": pos, "id": doc.id, "rule": rule, "text": text[:500]})
                        continue
                    passed += 1
                    out.write(json.dumps({"id": doc.id, "text": text}, ensure_ascii=False) + "\n")
                    batch.append((text, pos))
                    batch_chars += len(text)
                    if len(batch) >= _BATCH_DOCS or batch_chars >= _BATCH_CHARS:
                        flush()
                # Every shard of a source dealt out by records reads all of it: shard 0 alone counts
                # what the reader skipped, so the sum over shards is the source's count.
                if not si.by_records or k == 0:
                    skips.update(unit_skips)
            flush()
            # The dedup rows before the documents: a shard's .docs.jsonl on disk means its rows are complete.
            writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    write_text(prefix.with_name(prefix.name + ".audit.jsonl"), _jsonl(audit))
    counts = {
        "source": spec.name, "shard": k, "shards": n, "fingerprint": fp,
        "read": read, "skipped_by_reader": dict(sorted(skips.items())),
        "rejected": dict(sorted(rejected.items())), "passed_filters": passed,
    }
    write_json(marker, counts)   # the shard's counts are its marker (read back by read_marker)
    return counts


def _ensure_shards(cfg: PipelineConfig, specs: list[SourceSpec], quality: QualityConfig,
                   dedup_cfg: DedupConfig) -> tuple[list[list[Path]], list[list[str]]]:
    """Every prepare shard of ``specs`` (run here if its marker is missing): prefixes and fingerprints."""
    prefixes, fps = [], []
    for spec in specs:
        done = [prepare_shard(cfg, spec, k, quality, dedup_cfg) for k in range(num_shards(cfg, spec))]
        prefixes.append([_shard_prefix(cfg, spec, k) for k in range(num_shards(cfg, spec))])
        fps.append([d["fingerprint"] for d in done])
    return prefixes, fps


def _shard_fingerprints(cfg: PipelineConfig, specs: list[SourceSpec], quality: QualityConfig,
                        dedup_cfg: DedupConfig) -> list[list[str]]:
    return [[_shard_fingerprint(cfg, spec, k, quality, dedup_cfg) for k in range(num_shards(cfg, spec))]
            for spec in specs]


# --------------------------------------------------------------------------- stage 2: band tasks


def _group_dir(cfg: PipelineConfig, specs: list[SourceSpec], dedup_cfg: DedupConfig) -> Path:
    out = Path(cfg.output_dir)
    return out / GLOBAL_GROUP if dedup_cfg.scope == "global" else out / specs[0].name / "dedup"


def _band_settings(dedup_cfg: DedupConfig) -> dict[str, Any]:
    return {"bands": band_params(dedup_cfg), "span": dedup_cfg.max_bucket_span, "exact": dedup_cfg.exact,
            **signature_params(dedup_cfg)}


def band_task(cfg: PipelineConfig, group: int, task: int, quality: QualityConfig,
              dedup_cfg: DedupConfig) -> np.ndarray:
    """Candidate pairs of band range ``task`` of ``band_tasks`` in dedup group ``group`` (cached on disk)."""
    specs = [cfg.sources[i] for i in dedup_groups(cfg, dedup_cfg)[group]]
    t = cfg.band_tasks
    if not 0 <= task < t:
        raise ValueError(f"band task {task} outside 0..{t - 1}")
    folder = _group_dir(cfg, specs, dedup_cfg) / "bands"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{task:03d}-of-{t:03d}"
    remove_stale_temps(folder, name)
    band_range = split_bands(band_params(dedup_cfg)[0], t)[task]
    prefixes, fps = _ensure_shards(cfg, specs, quality, dedup_cfg)
    fp = fingerprint("bands", fps, band_range, _band_settings(dedup_cfg))
    path, marker = folder / f"{name}.npy", folder / f"{name}.json"
    if read_marker(marker, fp) and path.is_file():
        return np.load(path, allow_pickle=False)
    shards = ShardGroup(prefixes)
    uniq = shards.exact_unique() if dedup_cfg.exact else np.arange(shards.n, dtype=np.int64)
    pairs = group_band_pairs(shards, uniq, band_range, dedup_cfg)
    _save_npy_atomic(path, pairs)
    write_marker(marker, fp, bands=list(band_range), pairs=int(len(pairs)))
    return pairs


# --------------------------------------------------------------------------- stage 3: dedup a group


def _group_fingerprint(cfg: PipelineConfig, fps: list[list[str]], dedup_cfg: DedupConfig) -> str:
    return fingerprint("dedup", fps, asdict(dedup_cfg), cfg.audit_samples)


def _kept_lines(prefix: Path, keep: np.ndarray) -> Iterator[tuple[int, str]]:
    pos = np.load(prefix.with_name(prefix.name + ".pos.npy"), allow_pickle=False)
    with prefix.with_name(prefix.name + ".docs.jsonl").open(encoding="utf-8") as f:
        for p, line, k in zip(pos.tolist(), f, keep.tolist()):
            if k:
                yield p, line


def _audit_entries(prefix: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with prefix.with_name(prefix.name + ".audit.jsonl").open(encoding="utf-8") as f:
        for line in f:
            a = parse_json(line)
            yield a.pop("pos"), a


def dedup_group(cfg: PipelineConfig, group: int, quality: QualityConfig, dedup_cfg: DedupConfig) -> list[dict[str, Any]]:
    """Exact + near dedup of a group's shards → each source's ``docs.jsonl``, ``rejected.jsonl`` and
    ``prepare.json`` (its counts, returned in group order)."""
    members = dedup_groups(cfg, dedup_cfg)[group]
    specs = [cfg.sources[i] for i in members]
    folders = [Path(cfg.output_dir) / s.name for s in specs]
    fp = _group_fingerprint(cfg, _shard_fingerprints(cfg, specs, quality, dedup_cfg), dedup_cfg)
    done = [read_marker(f / "prepare.json", fp) for f in folders]
    if all(done) and all((f / "docs.jsonl").is_file() and (f / "rejected.jsonl").is_file() for f in folders):
        return done  # type: ignore[return-value]
    # Only now, with the group's outputs to be (re)written here: with a global dedup, a finished
    # group is checked by every source task while others may be writing their builds' temps.
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(folder)

    prefixes, fps = _ensure_shards(cfg, specs, quality, dedup_cfg)
    fp = _group_fingerprint(cfg, fps, dedup_cfg)
    shards = ShardGroup(prefixes)
    uniq = shards.exact_unique() if dedup_cfg.exact else np.arange(shards.n, dtype=np.int64)
    parts = [band_task(cfg, group, j, quality, dedup_cfg) for j in range(cfg.band_tasks)]
    rep = group_representatives(shards, uniq, parts, dedup_cfg)
    kept_rows = uniq[rep == np.arange(len(uniq))]
    in_uniq = np.zeros(shards.n, dtype=bool)
    in_uniq[shards.concat_index(uniq)] = True
    kept = np.zeros(shards.n, dtype=bool)
    kept[shards.concat_index(kept_rows)] = True

    results = []
    first_shard = 0
    for spec, folder, source_prefixes in zip(specs, folders, prefixes):
        shard_counts = [read_marker(p.with_name(p.name + ".json")) for p in source_prefixes]
        slices = [slice(int(shards.starts[first_shard + i]), int(shards.starts[first_shard + i + 1]))
                  for i in range(len(source_prefixes))]
        first_shard += len(source_prefixes)
        whole = slice(slices[0].start, slices[-1].stop)
        out = folder / "docs.jsonl"
        with atomic_open(out, "w") as f:
            # Shards of a source dealt out by records interleave: merge them back by position.
            for _, line in heapq.merge(*(_kept_lines(p, kept[sl]) for p, sl in zip(source_prefixes, slices))):
                f.write(line)
        audit: list[dict[str, Any]] = []
        per_rule: Counter = Counter()
        for _, a in heapq.merge(*(_audit_entries(p) for p in source_prefixes), key=lambda e: e[0]):
            per_rule[a["rule"]] += 1
            if per_rule[a["rule"]] <= cfg.audit_samples:
                audit.append(a)
        write_text(folder / "rejected.jsonl", _jsonl(audit))
        skips: Counter = Counter()
        rejected: Counter = Counter()
        for c in shard_counts:
            skips.update(c["skipped_by_reader"])
            rejected.update(c["rejected"])
        passed = sum(c["passed_filters"] for c in shard_counts)
        n_uniq, n_kept = int(in_uniq[whole].sum()), int(kept[whole].sum())
        counts = {
            "source": spec.name, "fingerprint": fp, "shards": len(source_prefixes),
            "dedup_scope": dedup_cfg.scope,
            "read": sum(c["read"] for c in shard_counts), "skipped_by_reader": dict(sorted(skips.items())),
            "rejected": dict(sorted(rejected.items())), "passed_filters": passed,
            "exact_duplicates": passed - n_uniq, "near_duplicates": n_uniq - n_kept, "kept": n_kept,
            "docs": str(out), "audit": str(folder / "rejected.jsonl"),
        }
        results.append(counts)
    # Markers last, once every source of the group is written.
    for folder, counts in zip(folders, results):
        write_json(folder / "prepare.json", counts)
    return results


def prepare_source(cfg: PipelineConfig, spec: SourceSpec, quality: QualityConfig, dedup_cfg: DedupConfig) -> dict[str, Any]:
    """Stages 1–3 for one source (and, for a global dedup, for every source): its counts."""
    index = [s.name for s in cfg.sources].index(spec.name)
    for g, members in enumerate(dedup_groups(cfg, dedup_cfg)):
        if index in members:
            return dedup_group(cfg, g, quality, dedup_cfg)[members.index(index)]
    raise AssertionError("every source is in a dedup group")


def build_source(cfg: PipelineConfig, spec: SourceSpec) -> dict[str, Any]:
    folder = Path(cfg.output_dir) / spec.name
    bcfg = BuildConfig(
        input=[str(folder / "docs.jsonl")], output=str(folder / f"{spec.name}_text_document"),
        tokenizer=cfg.tokenizer, text_field="text", lang=spec.lang, lang_field=None,
        seq_length=cfg.seq_length, min_tokens=cfg.min_tokens, overlap=cfg.overlap, workers=cfg.workers,
        progress=_progress_on(cfg),
    )
    return build(bcfg)


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """All stages for every source, then the mix; returns (and writes) ``OUT/report.json``."""
    quality = load_quality_config(cfg.filters)
    dedup_cfg = DedupConfig.from_dict(cfg.dedup, "key 'dedup'")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
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
    write_json(out / "report.json", report)
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
