"""``corpus build``: JSON lines → sentences → whole-document tokens → packed samples → .bin/.idx.

The main process streams lines from the inputs and hands batches of raw lines to workers; workers
decode, validate, split, tokenize and pack, and return the samples' tokens; the main process writes
them in input order. At most ``2 × workers`` batches are in flight, so memory does not grow with the
input, and since a document's samples depend on nothing but the document, the output is
byte-identical whatever the number of workers.

Bad records are skipped and counted by reason (with a few file:line examples in the report); a
truncated compressed file ends that file, counted, and the build goes on.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_open, write_json
from common.errors import ConfigError
from common.jsonl import parse_json
from common.markers import file_sha256, fingerprint, read_marker
from corpus import identity, sentences
from corpus.errors import CorpusError, TokenizerMismatchError
from corpus.indexed import IndexedWriter, IndexStats, dtype_for_vocab, merge, remove_stale_temps
from corpus.pack import PackConfig, materialize, pack_ends
from corpus.partition import contiguous_ranges
from corpus.reader import Line, StreamError, expand_inputs, input_size, read_lines
from corpus.tokenizer import Tokenizer

EXAMPLES_PER_REASON = 5
_json_str = encode_basestring   # a str as a JSON string literal, non-ASCII kept (json.dumps' own, in C)


@dataclass
class BuildConfig:
    input: list[str]
    output: str
    tokenizer: str
    text_field: str = "text"
    lang: str = "zh"
    lang_field: str | None = "lang"
    id_field: str | None = "id"        # the record's id for the sidecar (else FILE_NAME:LINE)
    source_field: str | None = "source"  # the record's source for the sidecar (else `source`)
    source: str = ""                   # the source name of records without one
    seq_length: int = 1024
    min_tokens: int = 20
    overlap: bool = False
    add_bos: bool = True
    add_eos: bool = True
    workers: int = 1
    batch_bytes: int = 1 << 20
    max_record_bytes: int = 16 << 20
    progress: bool = True
    force: bool = False
    # One task of a sharded build (a Slurm array task): input files are split into num_shards
    # contiguous runs; `corpus merge-shards` joins the shard outputs.
    shard: int | None = None
    num_shards: int = 1

    def __post_init__(self) -> None:
        if not self.input:
            raise ConfigError("key 'input': at least one input file, directory or glob is needed")
        if self.lang not in sentences.LANGS:
            raise ConfigError(f"key 'lang': {self.lang!r} is not one of {', '.join(sentences.LANGS)}")
        if self.num_shards < 1:
            raise ConfigError(f"key 'num_shards': must be >= 1, got {self.num_shards}")
        if self.shard is not None and not 0 <= self.shard < self.num_shards:
            raise ConfigError(f"key 'shard': must be in [0, {self.num_shards}) for num_shards {self.num_shards}, "
                              f"got {self.shard}")
        for key in ("workers", "batch_bytes", "max_record_bytes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"key {key!r}: must be >= 1, got {getattr(self, key)}")
        try:
            self.pack_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def pack_config(self) -> PackConfig:
        return PackConfig(self.seq_length, self.min_tokens, self.overlap, self.add_bos, self.add_eos)

    def output_identity(self) -> dict[str, Any]:
        """The settings that decide the output's bytes (not workers, batching or progress)."""
        keys = ("text_field", "lang", "lang_field", "id_field", "source_field", "source", "seq_length", "min_tokens", "overlap", "add_bos", "add_eos",
                "max_record_bytes")
        return {k: getattr(self, k) for k in keys}


class Tally:
    """Counts, skip reasons and a few examples of each: per batch in a worker, then summed."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.skipped: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, other: Tally) -> None:
        self.counts.update(other.counts)
        self.skipped.update(other.skipped)
        for reason, where in other.examples.items():
            kept = self.examples.setdefault(reason, [])
            kept.extend(where[:EXAMPLES_PER_REASON - len(kept)])

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < EXAMPLES_PER_REASON:
            kept.append(where)

    def progress(self, elapsed: float) -> str:
        return (f"{self.counts['records'] / max(elapsed, 1e-9):,.0f} docs/s, {self.counts['documents']:,} written, "
                f"{sum(self.skipped.values()):,} skipped")


@dataclass
class BatchResult:
    tokens: np.ndarray
    seq_lengths: np.ndarray
    doc_seq_counts: np.ndarray
    tally: Tally = field(default_factory=Tally)
    sidecar: list[str] = field(default_factory=list)   # one JSON line per written document


class DocumentError(Exception):
    """A record that cannot become a document; ``reason`` is the counter's name.

    Not a user error: a build counts and skips such records, it never stops for one."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


# --------------------------------------------------------------------------- per-document work


def parse_record(data: bytes, text_field: str, lang_field: str | None, default_lang: str
                 ) -> tuple[str, str, dict[str, Any]]:
    """(text, lang, record) of one JSON line, or DocumentError naming why not."""
    try:
        line = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError("invalid_utf8", str(exc)) from None
    try:
        record = parse_json(line)   # a ValueError for any bad line, a few thousand "[" included
    except ValueError as exc:
        raise DocumentError("invalid_json", str(exc)) from None
    if not isinstance(record, dict):
        raise DocumentError("not_an_object", type(record).__name__)
    if text_field not in record:
        raise DocumentError("missing_field", f"no key {text_field!r}")
    text = record[text_field]
    if not isinstance(text, str):
        raise DocumentError("bad_field_type", f"{text_field!r} is {type(text).__name__}")
    if not text.strip():
        raise DocumentError("empty_text")
    lang = default_lang
    if lang_field and lang_field in record:
        lang = record[lang_field]
        if lang not in sentences.LANGS:
            raise DocumentError("unknown_lang", f"{lang_field!r} is {lang!r}")
    return text, lang, record


def record_id(record: dict[str, Any], id_field: str | None, path: str, lineno: int) -> str:
    """The record's own id when it has one, else FILE_NAME:LINE (the name only: the same input moved
    elsewhere keeps its ids)."""
    value = record.get(id_field) if id_field else None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    return f"{os.path.basename(path)}:{lineno}"


def sidecar_line(source: str, doc_id: str, nbytes: int) -> str:
    """One line of PREFIX.docs.jsonl: the bytes of ``json.dumps({"source", "id", "bytes"},
    ensure_ascii=False)``, built from the two escaped strings (a dict and the generic encoder per
    document cost more than the rest of the line's work)."""
    return f'{{"source": {_json_str(source)}, "id": {_json_str(doc_id)}, "bytes": {nbytes}}}\n'


def sentence_token_ends(tok_ends: np.ndarray, data: bytes, lang: str, limit: int) -> np.ndarray:
    """Cumulative token count at the end of each sentence, given each token's end byte offset.

    A token that straddles a sentence boundary goes to the sentence it ends in. Code is split into
    blocks; a block too long for one sample is split at its line ends instead, never inside a line.
    """
    cuts = np.searchsorted(tok_ends, sentences.sentence_ends(data, lang), side="right")
    if lang == "code" and len(cuts) and cuts[-1] > limit:
        sizes = np.diff(cuts, prepend=0)
        if sizes.max() > limit:
            line_cuts = np.searchsorted(tok_ends, sentences.line_ends(data), side="right")
            block = np.searchsorted(cuts, line_cuts, side="left")
            inside = (block < len(cuts)) & (sizes[np.minimum(block, len(cuts) - 1)] > limit)
            cuts = np.union1d(cuts, line_cuts[inside])
    return cuts


class Processor:
    """Worker-side state: the tokenizer and configs, loaded once per process."""

    def __init__(self, cfg: BuildConfig, tok: Tokenizer | None = None) -> None:
        self.cfg = cfg
        self.pack_cfg = cfg.pack_config()
        self.tok = tok or Tokenizer(cfg.tokenizer)
        self.dtype = dtype_for_vocab(self.tok.vocab_size)
        self.sentence_limit = cfg.seq_length - int(cfg.add_bos) - int(cfg.add_eos)

    def process(self, lines: list[Line]) -> BatchResult:
        result = BatchResult(np.empty(0, self.dtype), np.empty(0, np.int64), np.empty(0, np.int64))
        docs: list[tuple[Line, str, str, bytes, dict[str, Any]]] = []
        for line in lines:
            result.tally.counts["records"] += 1
            try:
                if line.data is None:
                    raise DocumentError("record_too_large", f"over {self.cfg.max_record_bytes} bytes")
                text, lang, record = parse_record(line.data, self.cfg.text_field, self.cfg.lang_field, self.cfg.lang)
                # Lone surrogates from JSON escapes cannot be encoded: caught here, before the tokenizer.
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                self._skip(result, line, "invalid_unicode")
                continue
            except DocumentError as exc:
                self._skip(result, line, exc.reason)
                continue
            docs.append((line, text, lang, data, record))
        if not docs:
            return result
        # Token ends are only needed to cut a document into samples (one longer than a sample).
        encoded = self.tok.encode_with_ends([d[1] for d in docs], [d[3] for d in docs],
                                            max_whole=self.pack_cfg.seq_length - int(self.cfg.add_bos) - int(self.cfg.add_eos))
        cfg, limit = self.pack_cfg, self.pack_cfg.seq_length
        reserved = int(cfg.add_bos) + int(cfg.add_eos)
        head = np.array([self.tok.bos_id] if cfg.add_bos else [], dtype=np.int32)
        tail = np.array([self.tok.eos_id] if cfg.add_eos else [], dtype=np.int32)
        pieces: list[np.ndarray] = []
        seq_lengths: list[int] = []
        doc_counts: list[int] = []
        c = result.tally.counts
        sidecar = result.sidecar
        # Per-document counts in locals, into the Counter once a batch (a Counter update per
        # document and key is a measurable share of a Chinese build).
        text_bytes = document_tokens = 0
        by_lang: Counter = Counter()
        for (line, _, lang, data, record), (ids, tok_ends) in zip(docs, encoded):
            n = len(ids)
            text_bytes += len(data)
            document_tokens += n
            if 0 < n and n + reserved <= limit:
                # One sample holds the whole document: where its sentences end does not matter.
                if n + reserved < max(cfg.min_tokens, 1):
                    self._skip(result, line, "too_short")
                    continue
                pieces += (head, ids, tail)
                seq_lengths.append(n + reserved)
                doc_counts.append(1)
            else:
                ends = sentence_token_ends(tok_ends, data, lang, self.sentence_limit)
                c["split_documents"] += 1
                c["sentences"] += len(ends)
                c["sentences_cut"] += int((np.diff(ends, prepend=0) > self.sentence_limit).sum())
                ranges = pack_ends(ends, cfg)
                if len(ranges) == 0:
                    self._skip(result, line, "too_short")
                    continue
                doc_tokens, lengths = materialize(ids, ranges, cfg, self.tok.bos_id, self.tok.eos_id, np.int32)
                pieces.append(doc_tokens)
                seq_lengths.extend(lengths.tolist())
                doc_counts.append(len(lengths))
            by_lang[lang] += 1
            source = record.get(self.cfg.source_field) if self.cfg.source_field else None
            sidecar.append(sidecar_line(source if isinstance(source, str) else self.cfg.source,
                                        record_id(record, self.cfg.id_field, line.path, line.lineno), len(data)))
        c["text_bytes"] += text_bytes
        c["document_tokens"] += document_tokens
        c["documents"] += sum(by_lang.values())
        for lang, k in by_lang.items():
            c[f"documents_{lang}"] += k
        if pieces:
            # Straight into the file's dtype (ids < vocab_size, which the dtype holds): one copy.
            result.tokens = np.concatenate(pieces, dtype=self.dtype, casting="unsafe")
            result.seq_lengths = np.asarray(seq_lengths, dtype=np.int64)
            result.doc_seq_counts = np.asarray(doc_counts, dtype=np.int64)
        return result

    @staticmethod
    def _skip(result: BatchResult, line: Line, reason: str) -> None:
        result.tally.skip(reason, f"{line.path}:{line.lineno}")


_PROCESSOR: Processor | None = None


def _init_worker(cfg: BuildConfig) -> None:
    global _PROCESSOR
    _PROCESSOR = Processor(cfg)


def _work(lines: list[Line]) -> BatchResult:
    assert _PROCESSOR is not None
    return _PROCESSOR.process(lines)


# --------------------------------------------------------------------------- driver


def batches(files: list[Path], cfg: BuildConfig, errors: list[StreamError]) -> Iterator[tuple[list[Line], int]]:
    """Groups of about ``batch_bytes`` of lines; the grouping depends on the input only."""
    batch: list[Line] = []
    size = 0
    for path in files:
        for item in read_lines(path, cfg.max_record_bytes):
            if isinstance(item, StreamError):
                errors.append(item)
                continue
            batch.append(item)
            size += len(item.data) + 1 if item.data is not None else cfg.max_record_bytes
            if size >= cfg.batch_bytes:
                yield batch, size
                batch, size = [], 0
    if batch:
        yield batch, size


def run_ordered(work: Iterable[tuple[list[Line], int]], cfg: BuildConfig, tok: Tokenizer | None = None
                ) -> Iterator[tuple[BatchResult, int]]:
    """Results in input order, with at most ``2 × workers`` batches in flight (``tok``: the loaded
    tokenizer, used by a single in-process worker)."""
    if cfg.workers == 1:
        processor = Processor(cfg, tok)
        for lines, size in work:
            yield processor.process(lines), size
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(cfg.workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        pending: deque = deque()
        for lines, size in work:
            pending.append((pool.apply_async(_work, (lines,)), size))
            if len(pending) >= 2 * cfg.workers:
                res, sz = pending.popleft()
                yield res.get(), sz
        while pending:
            res, sz = pending.popleft()
            yield res.get(), sz


def report_path(prefix: str | os.PathLike) -> Path:
    return Path(str(prefix) + ".json")


def sidecar_path(prefix: str | os.PathLike) -> Path:
    """PREFIX.docs.jsonl: per document of PREFIX.bin/.idx, in document order (format in corpus.indexed)."""
    return Path(str(prefix) + ".docs.jsonl")


def _fingerprint(cfg: BuildConfig, files: list[Path], tokenizer_sha: str) -> str:
    return fingerprint({
        "config": cfg.output_identity(),
        "tokenizer_sha256": tokenizer_sha,
        "inputs": [(str(p), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in files],
    })


def shard_prefix(output: str | os.PathLike, index: int, num_shards: int) -> Path:
    return Path(f"{output}.shard-{index:05d}-of-{num_shards:05d}")


def partition_files(files: list[Path], num_shards: int) -> list[list[Path]]:
    """Contiguous runs of ``files`` of about equal total size, one per shard (corpus.partition):
    merging the shards in order gives the documents in input order, so the merged output is
    byte-identical to an unsharded build. A shard may be empty when files are few."""
    ranges = contiguous_ranges([os.path.getsize(p) for p in files], num_shards)
    return [files[a:b] for a, b in ranges]


def build(cfg: BuildConfig) -> dict[str, Any]:
    """Run the build (or one shard of it); return the report, also written as ``PREFIX.json``."""
    files = expand_inputs(cfg.input)
    out = Path(cfg.output)
    if cfg.shard is not None:
        files = partition_files(files, cfg.num_shards)[cfg.shard]
        out = shard_prefix(cfg.output, cfg.shard, cfg.num_shards)
    tok = Tokenizer(cfg.tokenizer)  # fail on a bad tokenizer before any worker starts
    tokenizer_sha = file_sha256(cfg.tokenizer)
    fp = _fingerprint(cfg, files, tokenizer_sha)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)   # a killed run's .bin/.idx temporaries: never reused, never left behind
    # The report is the build's completion marker: written last, it vouches for the .bin/.idx.
    existing = read_marker(report_path(out), fp)
    if not cfg.force and existing and _outputs_exist(out):
        existing["skipped_rebuild"] = True
        return existing

    started = time.time()
    tally = Tally()
    stream_errors: list[StreamError] = []
    bar = _progress(cfg, input_size(files))
    try:
        with IndexedWriter(out, dtype_for_vocab(tok.vocab_size)) as writer, \
                atomic_open(sidecar_path(out), "w") as sidecar:
            for result, size in run_ordered(batches(files, cfg, stream_errors), cfg, tok):
                _write_batch(writer, result)
                sidecar.writelines(result.sidecar)
                tally.add(result.tally)
                if bar is not None:
                    bar.update(size)
                    bar.set_postfix_str(tally.progress(time.time() - started), refresh=False)
            if tally.counts["documents"] == 0 and cfg.shard is None:
                raise CorpusError(f"no document survived from {len(files)} input file(s); "
                                 f"skipped: {dict(tally.skipped) or 'none'}")
            stats = writer.finalize()
    finally:
        if bar is not None:
            bar.close()
    for err in stream_errors:
        tally.skip(err.reason, f"{err.path}:{err.lineno}: {err.detail}")
    seconds = time.time() - started
    counts = {
        "input_files": len(files),
        "records": tally.counts["records"],
        "documents": stats.documents,
        "documents_by_lang": {lang: tally.counts[f"documents_{lang}"] for lang in sentences.LANGS
                              if tally.counts[f"documents_{lang}"]},
        "sequences": stats.sequences,
        "tokens": stats.tokens,
        "document_tokens": tally.counts["document_tokens"],
        "text_bytes": tally.counts["text_bytes"],
        # Sentences are only looked for in documents longer than one sample.
        "split_documents": tally.counts["split_documents"],
        "sentences": tally.counts["sentences"],
        "sentences_cut": tally.counts["sentences_cut"],
        "skipped": dict(sorted(tally.skipped.items())),
    }
    report = _report(cfg, out, counts, tally.examples, tok.vocab_size, tokenizer_sha, fp, seconds)
    write_json(report_path(out), report)
    return report


def merge_shards(cfg: BuildConfig, num_shards: int) -> dict[str, Any]:
    """Merge the ``num_shards`` shard outputs of ``cfg`` into ``cfg.output`` with a combined report.

    Every shard must be complete (its report, the completion marker, and both files present); the
    error names the missing ones so the failed array tasks can be rerun.
    """
    started = time.time()
    prefixes = [shard_prefix(cfg.output, i, num_shards) for i in range(num_shards)]
    reports = [read_marker(report_path(p)) for p in prefixes]
    missing = [str(p) for p, r in zip(prefixes, reports) if r is None or not _outputs_exist(p)]
    if missing:
        raise CorpusError(f"{len(missing)} of {num_shards} shards are not complete: {', '.join(missing)}")
    shas = {r["tokenizer"]["sha256"] for r in reports}
    if len(shas) != 1:
        listing = "; ".join(f"{p}: {r['tokenizer']['sha256']} ({r['tokenizer']['path']})" for p, r in zip(prefixes, reports))
        raise TokenizerMismatchError(f"shards of {cfg.output} were built with different tokenizers "
                                     f"(sha256 per shard: {listing})")
    fp = fingerprint(*(r["fingerprint"] for r in reports))
    existing = read_marker(report_path(cfg.output), fp)
    if existing and _outputs_exist(Path(cfg.output)) and not cfg.force:
        return existing
    remove_stale_temps(cfg.output)
    check_sidecars(prefixes)
    merge([str(p) for p in prefixes], cfg.output)
    join_sidecars(prefixes, cfg.output)
    counts = _sum_counts([r["counts"] for r in reports])
    examples: dict[str, list[str]] = {}
    for r in reports:
        for reason, where in r.get("skipped_examples", {}).items():
            kept = examples.setdefault(reason, [])
            kept.extend(where[:EXAMPLES_PER_REASON - len(kept)])
    report = _report(cfg, Path(cfg.output), counts, examples, reports[0]["tokenizer"]["vocab_size"],
                     shas.pop(), fp, time.time() - started)
    report["shards"] = [str(p) for p in prefixes]
    report["run"]["build_seconds"] = round(sum(r["run"]["seconds"] for r in reports), 3)
    write_json(report_path(cfg.output), report)
    return report


def merge_datasets(prefixes: list[str], output: str | os.PathLike) -> IndexStats:
    """``corpus merge``: concatenate built datasets in order, refusing ones built with different
    tokenizers; ``OUTPUT.json`` records the inputs and their tokenizer (None when none records one)."""
    if not prefixes:
        raise CorpusError("merge needs at least one input prefix")
    tokenizer = identity.common_tokenizer(prefixes, "inputs of the merge")
    remove_stale_temps(output)
    with_sidecar = [sidecar_path(p).is_file() for p in prefixes]
    # An earlier output's sidecar must not outlive its .bin/.idx (it would describe other documents).
    sidecar_path(output).unlink(missing_ok=True)
    joined = all(with_sidecar)
    if joined:
        check_sidecars(prefixes)
    stats = merge(prefixes, output)
    if joined:
        join_sidecars(prefixes, output)
    write_json(report_path(output), {
        "output": {"prefix": str(output), "bin": f"{output}.bin", "idx": f"{output}.idx",
                   "docs": str(sidecar_path(output)) if joined else None},
        "merged_from": [str(p) for p in prefixes],
        # Inputs without a PREFIX.docs.jsonl (built before it existed): then the output has none.
        "without_sidecar": [str(p) for p, has in zip(prefixes, with_sidecar) if not has],
        "tokenizer": tokenizer,
        "stats": dataclasses.asdict(stats),
    })
    return stats


def check_sidecars(prefixes: list[str] | list[Path]) -> None:
    """Each input's ``PREFIX.docs.jsonl`` holds one line per document of its .idx (else tracing a sample
    would name the wrong record): checked before anything is written."""
    from corpus.indexed import IndexedReader

    for p in prefixes:
        lines = 0
        with sidecar_path(p).open("rb") as part:
            while chunk := part.read(1 << 20):
                lines += chunk.count(b"\n")
        with IndexedReader(p) as reader:
            expected = reader.num_documents
        if lines != expected:
            raise CorpusError(f"{sidecar_path(p)}: {lines} line(s) for the {expected} document(s) of {p}.idx "
                              f"(a sidecar of another build?): rebuild {p}")


def join_sidecars(prefixes: list[str] | list[Path], output: str | os.PathLike) -> None:
    """``OUTPUT.docs.jsonl``: the inputs' sidecars in order (byte copies), written atomically."""
    with atomic_open(sidecar_path(output), "wb") as f:
        for p in prefixes:
            with sidecar_path(p).open("rb") as part:
                while chunk := part.read(1 << 20):
                    f.write(chunk)


def _write_batch(writer: IndexedWriter, result: BatchResult) -> None:
    writer.add_documents(result.tokens, result.seq_lengths, result.doc_seq_counts)


def _sum_counts(all_counts: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for counts in all_counts:
        for key, value in counts.items():
            if isinstance(value, dict):
                sub = total.setdefault(key, {})
                for k, v in value.items():
                    sub[k] = sub.get(k, 0) + v
            else:
                total[key] = total.get(key, 0) + value
    total["skipped"] = dict(sorted(total.get("skipped", {}).items()))
    return total


def _report(cfg: BuildConfig, out: Path, counts: dict[str, Any], examples: dict[str, list[str]], vocab_size: int,
            tokenizer_sha: str, fp: str, seconds: float) -> dict[str, Any]:
    return {
        "output": {"prefix": str(out), "bin": f"{out}.bin", "idx": f"{out}.idx",
                   "dtype": np.dtype(dtype_for_vocab(vocab_size)).name},
        "counts": counts,
        "skipped_examples": dict(sorted(examples.items())),
        "tokenizer": {"path": str(cfg.tokenizer), "sha256": tokenizer_sha, "vocab_size": vocab_size},
        "config": asdict(cfg),
        "fingerprint": fp,
        "run": {"seconds": round(seconds, 3), "workers": cfg.workers,
                "docs_per_s": round(counts["records"] / seconds, 1) if seconds else None,
                "mb_per_s": round(counts["text_bytes"] / seconds / 1e6, 2) if seconds else None},
    }


def _outputs_exist(prefix: Path) -> bool:
    return all(Path(str(prefix) + ext).is_file() for ext in (".bin", ".idx", ".docs.jsonl"))


def _progress(cfg: BuildConfig, total: int | None):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="corpus build",
                file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
