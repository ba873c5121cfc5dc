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

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from corpus import sentences
from corpus.config import ConfigError
from corpus.indexed import IndexedWriter, dtype_for_vocab
from corpus.pack import PackConfig, materialize, pack_ends
from corpus.reader import Line, StreamError, expand_inputs, input_size, read_lines
from corpus.tokenizer import Tokenizer

EXAMPLES_PER_REASON = 5


@dataclass
class BuildConfig:
    input: list[str]
    output: str
    tokenizer: str
    text_field: str = "text"
    lang: str = "zh"
    lang_field: str | None = "lang"
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

    def __post_init__(self) -> None:
        if not self.input:
            raise ConfigError("key 'input': at least one input file, directory or glob is needed")
        if self.lang not in sentences.LANGS:
            raise ConfigError(f"key 'lang': {self.lang!r} is not one of {', '.join(sentences.LANGS)}")
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
        keys = ("text_field", "lang", "lang_field", "seq_length", "min_tokens", "overlap", "add_bos", "add_eos",
                "max_record_bytes")
        return {k: getattr(self, k) for k in keys}


@dataclass
class BatchResult:
    tokens: np.ndarray
    seq_lengths: np.ndarray
    doc_seq_counts: np.ndarray
    counts: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)


class DocumentError(Exception):
    """A record that cannot become a document; ``reason`` is the counter's name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


# --------------------------------------------------------------------------- per-document work


def parse_record(data: bytes, text_field: str, lang_field: str | None, default_lang: str) -> tuple[str, str]:
    """(text, lang) of one JSON line, or DocumentError naming why not."""
    try:
        line = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError("invalid_utf8", str(exc)) from None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
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
    return text, lang


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

    def __init__(self, cfg: BuildConfig) -> None:
        self.cfg = cfg
        self.pack_cfg = cfg.pack_config()
        self.tok = Tokenizer(cfg.tokenizer)
        self.dtype = dtype_for_vocab(self.tok.vocab_size)
        self.sentence_limit = cfg.seq_length - int(cfg.add_bos) - int(cfg.add_eos)

    def process(self, lines: list[Line]) -> BatchResult:
        result = BatchResult(np.empty(0, self.dtype), np.empty(0, np.int64), np.empty(0, np.int64))
        docs: list[tuple[Line, str, str, bytes]] = []
        for line in lines:
            result.counts["records"] += 1
            try:
                if line.data is None:
                    raise DocumentError("record_too_large", f"over {self.cfg.max_record_bytes} bytes")
                text, lang = parse_record(line.data, self.cfg.text_field, self.cfg.lang_field, self.cfg.lang)
                # Lone surrogates from JSON escapes cannot be encoded: caught here, before the tokenizer.
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                self._skip(result, line, "invalid_unicode")
                continue
            except DocumentError as exc:
                self._skip(result, line, exc.reason)
                continue
            docs.append((line, text, lang, data))
        if not docs:
            return result
        encoded = self.tok.encode_with_ends([d[1] for d in docs], [d[3] for d in docs])
        cfg, limit = self.pack_cfg, self.pack_cfg.seq_length
        reserved = int(cfg.add_bos) + int(cfg.add_eos)
        head = np.array([self.tok.bos_id] if cfg.add_bos else [], dtype=np.int32)
        tail = np.array([self.tok.eos_id] if cfg.add_eos else [], dtype=np.int32)
        pieces: list[np.ndarray] = []
        seq_lengths: list[int] = []
        doc_counts: list[int] = []
        c = result.counts
        for (line, _, lang, data), (ids, tok_ends) in zip(docs, encoded):
            n = len(ids)
            c["text_bytes"] += len(data)
            c["document_tokens"] += n
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
            c["documents"] += 1
            c[f"documents_{lang}"] += 1
        if pieces:
            result.tokens = np.concatenate(pieces).astype(self.dtype, copy=False)
            result.seq_lengths = np.asarray(seq_lengths, dtype=np.int64)
            result.doc_seq_counts = np.asarray(doc_counts, dtype=np.int64)
        return result

    @staticmethod
    def _skip(result: BatchResult, line: Line, reason: str) -> None:
        result.skipped[reason] += 1
        examples = result.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(f"{line.path}:{line.lineno}")


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


def run_ordered(work: Iterable[tuple[list[Line], int]], cfg: BuildConfig) -> Iterator[tuple[BatchResult, int]]:
    """Results in input order, with at most ``2 × workers`` batches in flight."""
    if cfg.workers == 1:
        processor = Processor(cfg)
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


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def report_path(prefix: str | os.PathLike) -> Path:
    return Path(str(prefix) + ".json")


def _fingerprint(cfg: BuildConfig, files: list[Path], tokenizer_sha: str) -> str:
    ident = {
        "config": cfg.output_identity(),
        "tokenizer_sha256": tokenizer_sha,
        "inputs": [(str(p), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in files],
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def build(cfg: BuildConfig) -> dict[str, Any]:
    """Run the build; return the report (also written next to the output as ``PREFIX.json``)."""
    files = expand_inputs(cfg.input)
    tok = Tokenizer(cfg.tokenizer)  # fail on a bad tokenizer before any worker starts
    tokenizer_sha = file_sha256(cfg.tokenizer)
    fingerprint = _fingerprint(cfg, files, tokenizer_sha)
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = _read_report(out)
    if not cfg.force and existing and existing.get("fingerprint") == fingerprint and _outputs_exist(out):
        existing["skipped_rebuild"] = True
        return existing

    started = time.time()
    counts: Counter = Counter()
    skipped: Counter = Counter()
    examples: dict[str, list[str]] = {}
    stream_errors: list[StreamError] = []
    bar = _progress(cfg, input_size(files))
    with IndexedWriter(out, dtype_for_vocab(tok.vocab_size)) as writer:
        for result, size in run_ordered(batches(files, cfg, stream_errors), cfg):
            pos = 0
            lengths = result.seq_lengths
            seq = 0
            for n in result.doc_seq_counts.tolist():
                doc_lengths = lengths[seq:seq + n]
                n_tok = int(doc_lengths.sum())
                writer.add_document(result.tokens[pos:pos + n_tok], doc_lengths)
                pos += n_tok
                seq += n
            counts.update(result.counts)
            skipped.update(result.skipped)
            for reason, ex in result.examples.items():
                examples.setdefault(reason, []).extend(ex[:EXAMPLES_PER_REASON - len(examples.get(reason, []))])
            if bar is not None:
                bar.update(size)
                elapsed = max(time.time() - started, 1e-9)
                bar.set_postfix_str(f"{counts['records'] / elapsed:,.0f} docs/s, {counts['documents']:,} written, "
                                    f"{sum(skipped.values()):,} skipped", refresh=False)
        if counts["documents"] == 0:
            raise ValueError(
                f"no document survived from {len(files)} input file(s); skipped: {dict(skipped) or 'none'}"
            )
        stats = writer.finalize()
    if bar is not None:
        bar.close()
    for err in stream_errors:
        skipped[err.reason] += 1
        examples.setdefault(err.reason, []).append(f"{err.path}:{err.lineno}: {err.detail}")
    seconds = time.time() - started
    report = {
        "output": {"prefix": str(out), "bin": str(out) + ".bin", "idx": str(out) + ".idx",
                   "dtype": np.dtype(dtype_for_vocab(tok.vocab_size)).name},
        "counts": {
            "input_files": len(files),
            "records": counts["records"],
            "documents": stats.documents,
            "documents_by_lang": {lang: counts[f"documents_{lang}"] for lang in sentences.LANGS
                                  if counts[f"documents_{lang}"]},
            "sequences": stats.sequences,
            "tokens": stats.tokens,
            "document_tokens": counts["document_tokens"],
            "text_bytes": counts["text_bytes"],
            # Sentences are only looked for in documents longer than one sample.
            "split_documents": counts["split_documents"],
            "sentences": counts["sentences"],
            "sentences_cut": counts["sentences_cut"],
            "skipped": dict(sorted(skipped.items())),
        },
        "skipped_examples": {k: v for k, v in sorted(examples.items())},
        "tokenizer": {"path": str(cfg.tokenizer), "sha256": tokenizer_sha, "vocab_size": tok.vocab_size},
        "config": asdict(cfg),
        "fingerprint": fingerprint,
        "run": {"seconds": round(seconds, 3), "workers": cfg.workers,
                "docs_per_s": round(counts["records"] / seconds, 1) if seconds else None,
                "mb_per_s": round(counts["text_bytes"] / seconds / 1e6, 2) if seconds else None},
    }
    _write_json(report_path(out), report)
    return report


def _outputs_exist(prefix: Path) -> bool:
    return Path(str(prefix) + ".bin").is_file() and Path(str(prefix) + ".idx").is_file()


def _read_report(prefix: Path) -> dict[str, Any] | None:
    try:
        return json.loads(report_path(prefix).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".tmp.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _progress(cfg: BuildConfig, total: int | None):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="corpus build",
                file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
