"""The prepare, bands and dedup stages of a corpus plan (:mod:`corpus.plan` orders them and runs
the tasks; this module is what each task does).

For every source that is not a direct jsonl source (:meth:`corpus.spec.CorpusConfig.direct`):

1. **prepare shard k of N** (N = the source's ``shards``, else ``shards_per_source``) — the source's
   reader streams Documents; each is cleaned, checked by the quality and harmful-content rules (the
   first failing rule is counted, a few rejected documents are kept for audit); survivors go to
   ``OUT/<source>/shards/K-of-N.docs.jsonl`` with their dedup rows (MinHash signature, exact key,
   read position: ``corpus.dedup.ShardWriter``). ``K-of-N.json`` (counts) is the shard's marker.
   The reader and the source's ``steps`` (``corpus.steps``: clean, filter) are a chain of steps,
   each counting what it reads, keeps and drops by reason.
   A source with at least N input units (files; repositories for ``github``) is split into N
   contiguous unit ranges of about equal bytes (``corpus.partition``). One with fewer (one big dump)
   is first cut into byte ranges where its reader allows it (``corpus.sources.byte_ranges``: bz2
   stream starts of a multistream wiki dump with its index, line starts of an uncompressed JSON-lines
   file), each task reading only its ranges; a source that still has fewer pieces than N (a
   compressed JSON-lines file) is dealt out by records: every shard reads the whole source and keeps
   blocks of ``shard_records`` documents, block b going to shard b mod N. Either way a document's
   position is (piece, record in piece), ordered as the source is read, so the order of documents
   never depends on N.
2. **bands j of T** (T = ``band_tasks``) — the candidate pairs of LSH bands ``split_bands(b, T)[j]``
   over the group's exact-unique rows (``OUT/<group>/bands/J-of-T.npy`` + marker).
3. **dedup** of a group — a source (``dedup: {scope: source}``, the default) or every source at once
   (``scope: global``: documents in config order, so the earliest source keeps a document that several
   hold): exact keys first (the first copy stays), then the pairs of every band task are verified and
   clustered; each cluster keeps its first document in global order. Kept documents go to
   ``OUT/<source>/docs.jsonl`` in read order, the audit sample to ``rejected.jsonl``; ``prepare.json``
   (counts) is the marker.
   With ``dedup: null`` the stage keeps every document (it only joins the shards back in read order).

then the plan's **build** (tokenize + pack + write, ``corpus.build``) and **mix** stages.
Since every step is a deterministic function of its inputs and rows are always taken in global order,
the final files are byte-identical whatever N and T (tests check this).

Every output is written under a temporary name and renamed when complete, and each step's marker
is written last with a fingerprint of what it was made from: a rerun (after a crash, a ``kill -9``,
or a requeue) redoes only the steps without a valid marker, and the result is byte-identical to an
uninterrupted run.

Memory: a prepare shard holds one batch of documents; dedup reads 24 bytes a row (positions, exact
keys) plus, per band task, its bands' columns of the signatures (8 bytes × rows per band row); the
clustering step reads verified pairs' signatures from the memory-mapped shards.
"""

from __future__ import annotations

import functools
import heapq
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from common.atomic import atomic_open, remove_stale_temps, write_json, write_text
from common.jsonl import parse_json
from common.markers import fingerprint, read_marker, write_marker
from corpus.dedup import (DedupConfig, ShardGroup, ShardWriter, band_params, exact_key, group_band_pairs,
                          group_representatives, signature_params, split_bands)
from corpus.document import Document
from corpus.minhash import signatures
from corpus.quality import QualityConfig
from corpus.partition import contiguous_ranges
from corpus.sources import byte_ranges, expand, read_source, splits
from corpus.spec import GLOBAL_GROUP, CorpusConfig, SourceSpec
from corpus.steps import chain, make_steps

_POS_BITS = 40                   # position = piece << 40 | record within the piece
_BATCH_DOCS = 4096               # documents per signature batch
_BATCH_CHARS = 4_000_000


def num_shards(cfg: CorpusConfig, spec: SourceSpec) -> int:
    return cfg.num_shards(spec)


def prepared_sources(cfg: CorpusConfig) -> list[int]:
    """Indices of the sources that go through the prepare and dedup stages (all but direct jsonl ones)."""
    return [i for i, s in enumerate(cfg.sources) if not cfg.direct(s)]


def dedup_groups(cfg: CorpusConfig, dedup_cfg: DedupConfig | None = None) -> list[list[int]]:
    """Source indices clustered together: one group per prepared source, or one for all (scope global)."""
    dedup_cfg = dedup_cfg or cfg.dedup_config()
    members = prepared_sources(cfg)
    if dedup_cfg.scope == "global" and cfg.dedups:
        return [members] if members else []
    return [[i] for i in members]


def expand_source(spec: SourceSpec) -> list[Path]:
    return expand(spec.layout, spec.paths)


def read_unit(spec: SourceSpec, unit: Path, skips: Counter, byte_range: tuple[int, int] | None = None
              ) -> Iterator[Document]:
    """The reader step of a source: the Documents of one input unit (of its byte range, when given)."""
    options = spec.options if byte_range is None else {**spec.options, "byte_range": list(byte_range)}
    return read_source(spec.layout, [str(unit)], skips, **options)


# --------------------------------------------------------------------------- helpers


def _progress_on(cfg: CorpusConfig) -> bool:
    return cfg.progress if cfg.progress is not None else sys.stderr.isatty()


def _unit_files(unit: Path) -> list[tuple[str, int, int]]:
    paths = [p for p in sorted(unit.rglob("*")) if p.is_file()] if unit.is_dir() else [unit]
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]


@dataclass(frozen=True)
class _Piece:
    """What a prepare task reads at a time: an input unit, or a byte range of one big file."""

    unit: Path
    byte_range: tuple[int, int] | None
    files: list[tuple[str, int, int]]   # (path, size, mtime) of what it is made from

    @property
    def size(self) -> int:
        if self.byte_range is not None:
            return self.byte_range[1] - self.byte_range[0]
        return sum(f[1] for f in self.files)


@dataclass(frozen=True)
class _ShardInput:
    pieces: list[_Piece]             # every piece of the source, in read order
    mine: range                      # the piece indices this shard reads
    by_records: bool                 # True: read every piece, keep this shard's record blocks
    files: list[Any]                 # what the shard is made from (fingerprint)


def source_pieces(spec: SourceSpec, n: int) -> list[_Piece]:
    """The source's input units; with fewer units than ``n`` tasks, each unit the reader can split
    (a multistream wiki dump with its index, an uncompressed JSON-lines file:
    :func:`corpus.sources.byte_ranges`) becomes up to ``n`` byte ranges, cut at stream / line starts.
    A bad index raises here (the plan's :func:`~corpus.plan.check_inputs` calls this before any work)."""
    units = expand_source(spec)
    whole = [_Piece(Path(u), None, _unit_files(Path(u))) for u in units]
    if n == 1 or len(units) >= n:
        return whole
    pieces: list[_Piece] = []
    options = json.dumps(spec.options, sort_keys=True, default=str)
    for piece in whole:
        (_, size, mtime), = piece.files if len(piece.files) == 1 else ((None, None, None),)
        ranges = _byte_ranges(spec.layout, str(piece.unit), n, options, (size, mtime, _index_stamp(spec, piece.unit))) \
            if size is not None else None
        if not ranges or len(ranges) == 1:
            pieces.append(piece)
            continue
        pieces += [_Piece(piece.unit, (a, b), piece.files) for a, b in ranges]
    return pieces


def _index_stamp(spec: SourceSpec, unit: Path) -> tuple[str, int, int] | None:
    """(path, size, mtime) of the multistream index a split reads (the ``index`` option, else the one
    beside the dump), None when there is none."""
    index = spec.options.get("index")
    path = Path(index) if index else splits.default_index(unit)
    if path is None or not path.is_file():
        return None
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _byte_ranges(layout: str, path: str, n: int, options: str, stamp: tuple) -> tuple[tuple[int, int], ...] | None:
    """corpus.sources.byte_ranges, once per process for a file and its index as they are now (``stamp``:
    their sizes and mtimes): an index can be large, and every shard's fingerprint needs the split."""
    ranges = byte_ranges(layout, path, n, json.loads(options))
    return tuple(map(tuple, ranges)) if ranges else None


def _shard_input(cfg: CorpusConfig, spec: SourceSpec, k: int) -> _ShardInput:
    """Shard ``k``'s part of the source: a contiguous run of its pieces (units, or byte ranges of a big
    file) of about equal bytes; with fewer pieces than shards, every shard reads all and keeps its
    blocks of ``shard_records`` documents."""
    n = num_shards(cfg, spec)
    pieces = source_pieces(spec, n)
    if n == 1 or len(pieces) < n:
        return _ShardInput(pieces, range(len(pieces)), n > 1, [f for u in pieces for f in u.files])
    a, b = contiguous_ranges([p.size for p in pieces], n)[k]
    files = [(f, p.byte_range) if p.byte_range else f for p in pieces[a:b] for f in p.files]
    return _ShardInput(pieces, range(a, b), False, files)


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


# A killed run's temporaries are never trusted, never reused: each step removes those of dead
# writers under its own names (``prefix``) only — other array tasks, maybe on other nodes whose
# pids mean nothing here, may be writing theirs in the same folder right now.


# --------------------------------------------------------------------------- stage 1: prepare shards


def _shard_prefix(cfg: CorpusConfig, spec: SourceSpec, k: int) -> Path:
    return Path(cfg.output_dir) / spec.name / "shards" / f"{k:05d}-of-{num_shards(cfg, spec):05d}"


def _shard_fingerprint(cfg: CorpusConfig, spec: SourceSpec, k: int, quality: QualityConfig,
                       dedup_cfg: DedupConfig, shard_input: _ShardInput | None = None) -> str:
    si = shard_input or _shard_input(cfg, spec, k)
    what = {f: getattr(spec, f) for f in ("name", "layout", "paths", "lang", "options")}
    what["steps"] = spec.step_names
    return fingerprint("prepare-shard", what, cfg.dedups, asdict(quality), signature_params(dedup_cfg), cfg.audit_samples,
                        k, num_shards(cfg, spec), cfg.shard_records if si.by_records else None, si.files)


_SHARD_FILES = (".docs.jsonl", ".audit.jsonl", ".npy", ".keys.npy", ".pos.npy")


def prepare_shard(cfg: CorpusConfig, spec: SourceSpec, k: int, quality: QualityConfig,
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
    audit: list[dict[str, Any]] = []
    read = 0
    docs_path = prefix.with_name(prefix.name + ".docs.jsonl")
    writer = ShardWriter(prefix, dedup_cfg.num_perm)
    batch: list[tuple[str, int]] = []
    batch_chars = 0
    near = cfg.dedups
    steps = make_steps(spec.step_names, spec.lang, quality)
    current = {"pos": 0}

    def audit_drop(doc: Document, rule: str) -> None:
        if sum(1 for a in audit if a["rule"] == rule) < cfg.audit_samples:
            audit.append({"pos": current["pos"], "id": doc.id, "rule": rule, "text": doc.text[:500]})

    for step in steps:
        step.on_drop = audit_drop

    def flush() -> None:
        nonlocal batch_chars
        if batch:
            texts = [t for t, _ in batch]
            # Without dedup the rows are still written (the dedup stage then keeps every document),
            # but no signature is computed.
            sigs = signatures(texts, spec.lang, dedup_cfg) if near else \
                np.zeros((len(texts), dedup_cfg.num_perm), dtype=np.uint64)
            writer.add(sigs, [exact_key(t, spec.lang) for t in texts], [p for _, p in batch])
            batch.clear()
            batch_chars = 0

    bar = None
    if _progress_on(cfg):
        from tqdm import tqdm

        bar = tqdm(desc=f"prepare {spec.name} {k + 1}/{n}", unit=" docs", unit_scale=True, file=sys.stderr,
                   dynamic_ncols=True, mininterval=1.0)

    def selected() -> Iterator[Document]:
        """The reader step, restricted to this shard's documents; ``current`` is the last one's position
        (steps pass documents on one at a time, so it is the position of whatever comes out of them)."""
        nonlocal read
        record = 0   # documents the reader yielded so far, over all units (records mode)
        for u in si.mine:
            unit_skips: Counter = Counter()
            piece = si.pieces[u]
            # A position is (piece, record in piece): piece numbers depend on the split, their order
            # (the read order) does not, and positions are only ever compared.
            for r, doc in enumerate(read_unit(spec, piece.unit, unit_skips, piece.byte_range)):
                if si.by_records:
                    mine = (record // cfg.shard_records) % n == k
                    record += 1
                    if not mine:
                        continue
                read += 1
                current["pos"] = (u << _POS_BITS) | r
                if bar is not None:
                    bar.update(1)
                yield doc
            # Every shard of a source dealt out by records reads all of it: shard 0 alone counts
            # what the reader skipped, so the sum over shards is the source's count.
            if not si.by_records or k == 0:
                skips.update(unit_skips)

    passed = 0
    try:
        with atomic_open(docs_path, "w") as out:
            for doc in chain(selected(), steps):
                passed += 1
                out.write(json.dumps({"id": doc.id, "source": doc.source or spec.name, "text": doc.text,
                                      "meta": doc.meta}, ensure_ascii=False, default=str) + "\n")
                batch.append((doc.text, current["pos"]))
                batch_chars += len(doc.text)
                if len(batch) >= _BATCH_DOCS or batch_chars >= _BATCH_CHARS:
                    flush()
            flush()
            # The dedup rows before the documents: a shard's .docs.jsonl on disk means its rows are complete.
            writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    audit.sort(key=lambda a: a["pos"])
    write_text(prefix.with_name(prefix.name + ".audit.jsonl"), _jsonl(audit))
    rejected: Counter = Counter()
    for step in steps:
        rejected.update(step.stats.dropped)
    counts = {
        "source": spec.name, "shard": k, "shards": n, "fingerprint": fp,
        "read": read, "skipped_by_reader": dict(sorted(skips.items())),
        "rejected": dict(sorted(rejected.items())), "passed_filters": passed,
        "steps": {s.name: s.stats.as_dict() for s in steps},
    }
    write_json(marker, counts)   # the shard's counts are its marker (read back by read_marker)
    return counts


def _ensure_shards(cfg: CorpusConfig, specs: list[SourceSpec], quality: QualityConfig,
                   dedup_cfg: DedupConfig) -> tuple[list[list[Path]], list[list[str]]]:
    """Every prepare shard of ``specs`` (run here if its marker is missing): prefixes and fingerprints."""
    prefixes, fps = [], []
    for spec in specs:
        done = [prepare_shard(cfg, spec, k, quality, dedup_cfg) for k in range(num_shards(cfg, spec))]
        prefixes.append([_shard_prefix(cfg, spec, k) for k in range(num_shards(cfg, spec))])
        fps.append([d["fingerprint"] for d in done])
    return prefixes, fps


def _shard_fingerprints(cfg: CorpusConfig, specs: list[SourceSpec], quality: QualityConfig,
                        dedup_cfg: DedupConfig) -> list[list[str]]:
    return [[_shard_fingerprint(cfg, spec, k, quality, dedup_cfg) for k in range(num_shards(cfg, spec))]
            for spec in specs]


# --------------------------------------------------------------------------- stage 2: band tasks


def _group_dir(cfg: CorpusConfig, specs: list[SourceSpec], dedup_cfg: DedupConfig) -> Path:
    out = Path(cfg.output_dir)
    return out / GLOBAL_GROUP if dedup_cfg.scope == "global" else out / specs[0].name / "dedup"


def _band_settings(dedup_cfg: DedupConfig) -> dict[str, Any]:
    return {"bands": band_params(dedup_cfg), "span": dedup_cfg.max_bucket_span, "exact": dedup_cfg.exact,
            **signature_params(dedup_cfg)}


def band_task(cfg: CorpusConfig, group: int, task: int, quality: QualityConfig,
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
    if not cfg.dedups:
        return _NO_PAIRS
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


_NO_PAIRS = np.empty((0, 2), dtype=np.int64)


def _group_fingerprint(cfg: CorpusConfig, fps: list[list[str]], dedup_cfg: DedupConfig) -> str:
    return fingerprint("dedup", fps, asdict(dedup_cfg), cfg.dedups, cfg.audit_samples)


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


def dedup_group(cfg: CorpusConfig, group: int, quality: QualityConfig, dedup_cfg: DedupConfig) -> list[dict[str, Any]]:
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
    exact = cfg.dedups and dedup_cfg.exact
    uniq = shards.exact_unique() if exact else np.arange(shards.n, dtype=np.int64)
    parts = [band_task(cfg, group, j, quality, dedup_cfg) for j in range(cfg.band_tasks)] if cfg.dedups \
        else [_NO_PAIRS]
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
        steps: dict[str, dict[str, Any]] = {}
        for c in shard_counts:
            skips.update(c["skipped_by_reader"])
            rejected.update(c["rejected"])
            for name, st in c.get("steps", {}).items():
                tot = steps.setdefault(name, {"read": 0, "kept": 0, "dropped": Counter()})
                tot["read"] += st["read"]
                tot["kept"] += st["kept"]
                tot["dropped"].update(st["dropped"])
        passed = sum(c["passed_filters"] for c in shard_counts)
        n_uniq, n_kept = int(in_uniq[whole].sum()), int(kept[whole].sum())
        counts = {
            "source": spec.name, "fingerprint": fp, "shards": len(source_prefixes),
            "dedup_scope": dedup_cfg.scope,
            "read": sum(c["read"] for c in shard_counts), "skipped_by_reader": dict(sorted(skips.items())),
            "rejected": dict(sorted(rejected.items())), "passed_filters": passed,
            "steps": {k: {**v, "dropped": dict(sorted(v["dropped"].items()))} for k, v in steps.items()},
            "exact_duplicates": passed - n_uniq, "near_duplicates": n_uniq - n_kept, "kept": n_kept,
            "docs": str(out), "audit": str(folder / "rejected.jsonl"),
        }
        results.append(counts)
    # Markers last, once every source of the group is written.
    for folder, counts in zip(folders, results):
        write_json(folder / "prepare.json", counts)
    return results


