"""`corpus build` end to end: whole-document tokens, sentence-aligned samples, determinism across
worker counts, bad input skipped and counted, bad config rejected by name."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SAMPLES
from corpus import sentences
from corpus.build import BuildConfig, build, merge_shards, sentence_token_ends
from common.config import ConfigError, load_config
from corpus.indexed import IndexedReader, validate
from corpus.reader import InputError
from corpus.tokenizer import Tokenizer


def _cfg(tokenizer_path, out: Path, **kw) -> BuildConfig:
    base = dict(input=[str(SAMPLES)], output=str(out / "corpus"), tokenizer=str(tokenizer_path), progress=False)
    base.update(kw)
    return BuildConfig(**base)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(path.glob("*.jsonl")) for line in p.open(encoding="utf-8")]


@pytest.fixture(scope="module")
def built(tokenizer_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    cfg = _cfg(tokenizer_path, out, seq_length=128, min_tokens=0, batch_bytes=8192)
    return cfg, build(cfg)


def test_documents_are_whole_document_encodings(built, tokenizer_path):
    """Each document's sequences, BOS/EOS removed, are exactly the encoding of the whole document."""
    cfg, report = built
    tok = Tokenizer(tokenizer_path)
    records = _records(SAMPLES)
    with IndexedReader(cfg.output) as reader:
        assert reader.num_documents == len(records) == report["counts"]["documents"]
        for d, record in enumerate(records):
            seqs = reader.document(d)
            assert all(len(s) <= cfg.seq_length for s in seqs)
            assert seqs[0][0] == tok.bos_id and seqs[-1][-1] == tok.eos_id
            body = np.concatenate(seqs)[1:-1]
            assert body.tolist() == tok.encode(record["text"]), record["id"]
            assert tok.bos_id not in body.tolist() and tok.eos_id not in body.tolist()


def _contains(haystack: list[int], needle: list[int]) -> bool:
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def trace_samples(prefix: str | Path, tok: Tokenizer, step: int = 7) -> list[tuple[int, dict]]:
    """Every ``step``-th sample of PREFIX.bin/.idx with the sidecar line of its document, and the
    sample's tokens without BOS/EOS."""
    sidecar = [json.loads(line) for line in Path(f"{prefix}.docs.jsonl").open(encoding="utf-8")]
    out = []
    with IndexedReader(prefix) as reader:
        assert len(sidecar) == reader.num_documents
        starts = np.asarray(reader.document_indices)
        for k in range(0, len(reader), step):
            d = int(np.searchsorted(starts, k, side="right")) - 1   # the document sample k belongs to
            body = [t for t in reader[k].tolist() if t not in (tok.bos_id, tok.eos_id)]
            out.append((body, sidecar[d]))
    return out


def test_a_sample_traces_to_its_source_record_through_the_sidecar(built, tokenizer_path):
    """PREFIX.docs.jsonl: a sample → its document → {source, id, bytes} → the JSON line it came from."""
    cfg, _ = built
    tok = Tokenizer(tokenizer_path)
    by_id = {r["id"]: r for r in _records(SAMPLES)}
    traced = trace_samples(cfg.output, tok)
    assert len(traced) > 10
    for body, line in traced:
        record = by_id[line["id"]]
        assert line["bytes"] == len(record["text"].encode("utf-8"))
        assert line["source"] == record.get("source", cfg.source)   # the record's own, else the build's
        assert _contains(tok.encode(record["text"]), body), line


def test_samples_start_at_sentence_boundaries(built, tokenizer_path):
    cfg, _ = built
    tok = Tokenizer(tokenizer_path)
    limit = cfg.seq_length - 2
    cut_inside_long_sentences = 0
    with IndexedReader(cfg.output) as reader:
        for d, record in enumerate(_records(SAMPLES)):
            text = record["text"]
            data = text.encode()
            ids = np.asarray(tok.encode(text), dtype=np.int64)
            ends = sentence_token_ends(tok.token_ends(ids, text, data), data, record["lang"], limit)
            counts = np.diff(ends, prepend=0)
            bounds = set(ends.tolist())
            starts = np.cumsum([len(s) for s in reader.document(d)])[:-1] - 1  # minus BOS
            for start in starts.tolist():
                if start not in bounds:
                    # Only allowed inside a sentence longer than a sample.
                    cum = np.cumsum(counts)
                    i = int(np.searchsorted(cum, start, side="right"))
                    assert counts[i] > limit, (record["id"], start)
                    cut_inside_long_sentences += 1
    # The samples include a sentence too long for 128 tokens: the cut path is exercised.
    assert cut_inside_long_sentences > 0


def test_code_is_never_cut_inside_a_line(tokenizer_path):
    tok = Tokenizer(tokenizer_path)
    text = "".join(f"    value_{i} = compute(value_{i - 1}, {i})\n" for i in range(1, 200))
    text = "def long_function():\n" + text
    data = text.encode()
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    counts = np.diff(sentence_token_ends(tok.token_ends(ids, text, data), data, "code", 100), prepend=0)
    # One block (no blank line) far over the limit: split at line ends instead.
    assert len(sentences.sentence_ends(data, "code")) == 1
    assert len(counts) == text.count("\n")
    assert counts.max() <= 100


def test_byte_identical_whatever_the_worker_count(tokenizer_path, tmp_path):
    outputs = []
    for workers, batch in ((1, 1 << 20), (2, 4096), (3, 20000)):
        cfg = _cfg(tokenizer_path, tmp_path / f"w{workers}", workers=workers, batch_bytes=batch, seq_length=256)
        build(cfg)
        outputs.append([Path(cfg.output + ext).read_bytes() for ext in (".bin", ".idx", ".docs.jsonl")])
    assert outputs[0] == outputs[1] == outputs[2]


def test_sharded_build_merges_to_the_unsharded_bytes(tokenizer_path, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, record in enumerate(_records(SAMPLES)):
        with (inputs / f"part-{i // 10:03d}.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    whole = _cfg(tokenizer_path, tmp_path / "whole", input=[str(inputs)], seq_length=256)
    build(whole)
    sharded = _cfg(tokenizer_path, tmp_path / "sharded", input=[str(inputs)], seq_length=256)
    for shard in (2, 0, 1):  # array tasks finish in any order
        build(dataclasses.replace(sharded, shard=shard, num_shards=3))
    report = merge_shards(sharded, 3)
    for ext in (".bin", ".idx", ".docs.jsonl"):
        assert Path(sharded.output + ext).read_bytes() == Path(whole.output + ext).read_bytes(), ext
    assert report["counts"]["documents"] == len(_records(SAMPLES))
    assert report["counts"]["input_files"] == len(list(inputs.iterdir()))
    # A rerun of a finished shard is skipped (its report is the completion marker).
    assert build(dataclasses.replace(sharded, shard=1, num_shards=3)).get("skipped_rebuild")
    # More shards than files: the empty shards are valid and the merge is the same.
    for shard in range(12):
        build(dataclasses.replace(sharded, shard=shard, num_shards=12))
    merge_shards(sharded, 12)
    for ext in (".bin", ".docs.jsonl"):
        assert Path(sharded.output + ext).read_bytes() == Path(whole.output + ext).read_bytes(), ext
    # A missing shard is named.
    Path(f"{sharded.output}.shard-00004-of-00012.json").unlink()
    with pytest.raises(ValueError, match="shard-00004-of-00012"):
        merge_shards(sharded, 12)


def test_overlap_mode_writes_more_tokens(tokenizer_path, tmp_path):
    plain = build(_cfg(tokenizer_path, tmp_path / "plain", seq_length=128))
    overlap = build(_cfg(tokenizer_path, tmp_path / "overlap", seq_length=128, overlap=True))
    assert overlap["counts"]["sequences"] == plain["counts"]["sequences"]
    assert overlap["counts"]["tokens"] > plain["counts"]["tokens"]


def test_whole_document_beats_sentence_by_sentence(tokenizer_path):
    """CaMA encoded sentence by sentence: every sentence start gains a dummy-prefix token."""
    tok = Tokenizer(tokenizer_path)
    zh = [r["text"] for r in _records(SAMPLES) if r["lang"] == "zh"]
    whole = sum(len(tok.encode(t)) for t in zh)
    per_sentence = sum(len(ids) for t in zh for ids in tok.encode_batch(sentences.split(t, "zh")))
    assert per_sentence > whole * 1.01


def _write_bad_inputs(d: Path) -> None:
    good = {"text": "这是一个正常的句子，它足够长，可以通过最小长度的过滤。第二句话也在这里！", "lang": "zh"}
    lines = [
        json.dumps(good, ensure_ascii=False).encode(),
        b'{"text": "unterminated',
        b'\xff\xfe{"text": "bad utf-8"}',
        json.dumps({"content": "no text field"}).encode(),
        json.dumps({"text": "   \n  "}).encode(),
        json.dumps({"text": 42}).encode(),
        b'["a list"]',
        json.dumps({"text": "ok", "lang": "fr"}).encode(),
        b'{"text": "lone surrogate \\ud800 here, long enough to pass the filter easily"}',
        b'{"text": "' + b"x" * (50 << 20) + b'"}',
        json.dumps({"text": "短"}, ensure_ascii=False).encode(),
        json.dumps(good, ensure_ascii=False).encode(),
    ]
    (d / "bad.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    # A gzip member cut in the middle: the good lines before the cut are kept.
    lines = [json.dumps(dict(good, id=i), ensure_ascii=False).encode() for i in range(3000)]
    blob = gzip.compress(b"\n".join(lines) + b"\n")
    (d / "truncated.jsonl.gz").write_bytes(blob[: len(blob) // 2])


def test_bad_input_is_skipped_and_counted(tokenizer_path, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_bad_inputs(inputs)
    cfg = _cfg(tokenizer_path, tmp_path, input=[str(inputs)], max_record_bytes=1 << 20)
    report = build(cfg)
    skipped = report["counts"]["skipped"]
    assert skipped == {
        "bad_field_type": 1,
        "empty_text": 1,
        "invalid_json": 1,
        "invalid_unicode": 1,
        "invalid_utf8": 1,
        "missing_field": 1,
        "not_an_object": 1,
        "record_too_large": 1,
        "too_short": 1,
        "truncated_input": 1,
        "unknown_lang": 1,
    }
    assert report["skipped_examples"]["invalid_json"] == [f"{inputs / 'bad.jsonl'}:2"]
    assert "truncated.jsonl.gz" in report["skipped_examples"]["truncated_input"][0]
    # Two good lines in bad.jsonl plus what was readable of the gzip file before the cut.
    assert 1000 < report["counts"]["documents"] < 3000
    validate(cfg.output, vocab_size=Tokenizer(tokenizer_path).vocab_size)
    on_disk = json.loads(Path(cfg.output + ".json").read_text())
    assert on_disk["counts"] == report["counts"]


def test_nothing_usable_is_an_error_and_leaves_nothing(tokenizer_path, tmp_path):
    (tmp_path / "empty.jsonl").write_text('{"text": ""}\n')
    cfg = _cfg(tokenizer_path, tmp_path / "out", input=[str(tmp_path / "empty.jsonl")])
    with pytest.raises(ValueError, match="no document survived"):
        build(cfg)
    assert not any((tmp_path / "out").iterdir())


def test_rerun_skips_up_to_date_output(tokenizer_path, tmp_path):
    cfg = _cfg(tokenizer_path, tmp_path)
    first = build(cfg)
    idx = Path(cfg.output + ".idx")
    mtime = idx.stat().st_mtime_ns
    again = build(cfg)
    assert again.get("skipped_rebuild") and idx.stat().st_mtime_ns == mtime
    assert again["counts"] == first["counts"]
    cfg.seq_length = 64  # a different config is not up to date
    assert not build(cfg).get("skipped_rebuild")


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [a.jsonl]\noutput: out\ntokenizer: t.model\nseq_lenght: 512\n")
    with pytest.raises(ConfigError, match="seq_lenght"):
        load_config(BuildConfig, bad)
    bad.write_text("input: [a.jsonl]\noutput: out\ntokenizer: t.model\nworkers: two\n")
    with pytest.raises(ConfigError, match="'workers'"):
        load_config(BuildConfig, bad)
    bad.write_text("input: [a.jsonl]\noutput: out\ntokenizer: t.model\nlang: fr\n")
    with pytest.raises(ConfigError, match="'lang'"):
        load_config(BuildConfig, bad)
    bad.write_text("input: [a.jsonl]\ntokenizer: t.model\n")
    with pytest.raises(ConfigError, match="'output'"):
        load_config(BuildConfig, bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(BuildConfig, tmp_path / "missing.yaml")


def test_missing_input_named(tokenizer_path, tmp_path):
    with pytest.raises(InputError, match="nope.jsonl"):
        build(_cfg(tokenizer_path, tmp_path, input=[str(tmp_path / "nope.jsonl")]))


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "corpus", *args], cwd=cwd, env=env, capture_output=True, text=True)


def _jsonl_config(path: Path, out: Path, tokenizer_path, extra: str = "") -> Path:
    """The JSON-lines build in the one corpus config: a jsonl source, no steps, no dedup."""
    path.write_text(f"output_dir: {out}\ntokenizer: {tokenizer_path}\ndedup: null\n{extra}"
                    f"sources:\n  - {{name: corpus, layout: jsonl, lang: zh, paths: [{SAMPLES}]}}\n")
    return path


def test_cli_build_inspect_validate_merge(tokenizer_path, tmp_path):
    cfg_file = _jsonl_config(tmp_path / "c.yaml", tmp_path / "a", tokenizer_path, "seq_length: 256\n")
    r = _run("build", "--config", str(cfg_file), "--no-progress", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "mix:" in r.stdout and "corpus" in r.stdout
    r = _run("build", "--input", str(SAMPLES), "--output", str(tmp_path / "b"), "--tokenizer", str(tokenizer_path),
             "--lang", "en", "--no-progress", "--seq-length", "256")
    assert r.returncode == 0, r.stderr
    a, b = tmp_path / "a" / "corpus" / "corpus_text_document", tmp_path / "b" / "corpus" / "corpus_text_document"
    r = _run("inspect", str(a), "--decode", "0")
    assert r.returncode == 0, r.stderr
    assert "sequence 0" in r.stdout and "sequence length" in r.stdout
    r = _run("merge", str(tmp_path / "ab"), str(a), str(b))
    assert r.returncode == 0, r.stderr
    r = _run("validate", str(tmp_path / "ab"), "--tokenizer", str(tokenizer_path))
    assert r.returncode == 0 and "valid" in r.stdout, r.stderr
    with IndexedReader(a) as ra, IndexedReader(tmp_path / "ab") as ab:
        assert ab.num_documents == 2 * ra.num_documents
    # The sidecars are joined in the same order: document d of the merge is line d of its sidecar.
    sidecar = lambda prefix: Path(f"{prefix}.docs.jsonl").read_bytes()  # noqa: E731
    assert sidecar(tmp_path / "ab") == sidecar(a) + sidecar(b) and sidecar(a)
    assert json.loads(Path(f"{tmp_path / 'ab'}.json").read_text())["output"]["docs"] == f"{tmp_path / 'ab'}.docs.jsonl"
    # A sidecar that does not match its index is refused before anything is written.
    Path(f"{b}.docs.jsonl").write_bytes(sidecar(b) + b'{"source": "x", "id": "y", "bytes": 1}\n')
    r = _run("merge", str(tmp_path / "bad"), str(a), str(b))
    assert r.returncode == 2 and "docs.jsonl" in r.stderr and "line(s) for the" in r.stderr, r.stderr
    assert not Path(f"{tmp_path / 'bad'}.bin").exists()
    # A bad key fails at once, naming it, with exit status 2 and no traceback.
    cfg_file.write_text(cfg_file.read_text() + "wrokers: 3\n")
    r = _run("build", "--config", str(cfg_file))
    assert r.returncode == 2 and "wrokers" in r.stderr and "Traceback" not in r.stderr


def test_corpus_side_never_imports_torch():
    code = ("import sys, corpus, corpus.build, corpus.cli, corpus.indexed, corpus.sentences; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_megatron_reads_the_build_output(built):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    cfg, _ = built
    theirs = IndexedDataset(cfg.output)
    with IndexedReader(cfg.output) as ours:
        assert len(theirs) == len(ours)
        assert np.array_equal(theirs.document_indices, ours.document_indices)
        for i in range(len(ours)):
            assert np.array_equal(theirs[i], ours[i])


def test_zstd_inputs_and_a_truncated_zstd_file(tokenizer_path, tmp_path):
    import zstandard

    from corpus.reader import Line, StreamError, read_lines

    good = {"text": "这是一个正常的句子，它足够长，可以通过最小长度的过滤。第二句话也在这里！", "lang": "zh"}
    lines = [json.dumps(dict(good, id=i), ensure_ascii=False).encode() for i in range(3000)]
    blob = zstandard.ZstdCompressor().compress(b"\n".join(lines) + b"\n")
    whole = tmp_path / "in" / "a.jsonl.zst"
    whole.parent.mkdir()
    whole.write_bytes(blob)
    items = list(read_lines(whole, 1 << 20))
    assert len(items) == 3000 and all(isinstance(i, Line) for i in items)
    cut = tmp_path / "cut.jsonl.zst"
    cut.write_bytes(blob[: len(blob) // 2])
    items = list(read_lines(cut, 1 << 20))
    assert isinstance(items[-1], StreamError) and items[-1].reason == "truncated_input"
    # A directory input picks the .zst file up like any JSON-lines file.
    report = build(_cfg(tokenizer_path, tmp_path / "out", input=[str(whole.parent)]))
    assert report["counts"]["documents"] == 3000


def test_a_deeply_nested_record_is_a_bad_line_not_a_crash(tokenizer_path, tmp_path):
    good = json.dumps({"text": "这是一个正常的句子，它足够长，可以通过最小长度的过滤。第二句话也在这里！"}, ensure_ascii=False)
    (tmp_path / "deep.jsonl").write_text(good + "\n" + "[" * 100_000 + "\n" + good + "\n", encoding="utf-8")
    report = build(_cfg(tokenizer_path, tmp_path / "out", input=[str(tmp_path / "deep.jsonl")], min_tokens=0))
    assert report["counts"]["skipped"] == {"invalid_json": 1} and report["counts"]["documents"] == 2
    assert report["skipped_examples"]["invalid_json"] == [f"{tmp_path / 'deep.jsonl'}:2"]


# --------------------------------------------------------------------------- tokenizer identity


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory) -> Path:
    """A second tokenizer of the same kind and about the same size, trained on other text: token files
    made with it look just as valid, only the recorded sha256 tells them apart."""
    from conftest import sample_texts
    from corpus.tokenizer import train_tokenizer

    texts = [t[::-1] for t in sample_texts()]
    return train_tokenizer(texts, tmp_path_factory.mktemp("other") / "tokenizer.model", vocab_size=3000)


def test_the_build_records_its_tokenizer_and_train_can_read_it(built, tokenizer_path, tmp_path):
    from common.markers import file_sha256
    from corpus.identity import check_tokenizer, recorded_tokenizer_sha256
    from corpus.indexed import IndexedWriter

    cfg, report = built
    assert recorded_tokenizer_sha256(cfg.output) == report["tokenizer"]["sha256"] == file_sha256(tokenizer_path)
    assert check_tokenizer(cfg.output, tokenizer_path) == file_sha256(tokenizer_path)
    # A pair written by hand records nothing: nothing to compare, no error.
    with IndexedWriter(tmp_path / "plain", np.uint16) as w:
        w.add_document(np.arange(3, dtype=np.uint16), [3])
    assert recorded_tokenizer_sha256(tmp_path / "plain") is None
    assert check_tokenizer(tmp_path / "plain", tokenizer_path) is None


def test_validate_with_another_tokenizer_fails_naming_both(built, tokenizer_path, other_tokenizer):
    from common.markers import file_sha256

    cfg, _ = built
    r = _run("validate", cfg.output, "--tokenizer", str(other_tokenizer))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("corpus: error: tokenizer mismatch")
    for name in (str(other_tokenizer), file_sha256(other_tokenizer), str(tokenizer_path), file_sha256(tokenizer_path),
                 cfg.output + ".json"):
        assert name in r.stderr, name
    r = _run("validate", cfg.output, "--tokenizer", str(tokenizer_path))
    assert r.returncode == 0 and "sha256 matches" in r.stdout, r.stderr
    # Decoding with another tokenizer would print nonsense: refused the same way.
    r = _run("inspect", cfg.output, "--decode", "0", "--tokenizer", str(other_tokenizer))
    assert r.returncode == 2 and "tokenizer mismatch" in r.stderr


def test_merge_refuses_datasets_of_different_tokenizers(tokenizer_path, other_tokenizer, tmp_path):
    from common.markers import file_sha256
    from corpus.identity import recorded_tokenizer_sha256

    a = build(_cfg(tokenizer_path, tmp_path / "a"))["output"]["prefix"]
    b = build(_cfg(tokenizer_path, tmp_path / "b", lang="en"))["output"]["prefix"]
    c = build(_cfg(other_tokenizer, tmp_path / "c"))["output"]["prefix"]
    r = _run("merge", str(tmp_path / "ac"), a, c)
    assert r.returncode == 2 and "different tokenizers" in r.stderr, r.stderr
    assert a in r.stderr and c in r.stderr and file_sha256(other_tokenizer) in r.stderr
    assert not list(tmp_path.glob("ac*"))
    r = _run("merge", str(tmp_path / "ab"), a, b)
    assert r.returncode == 0, r.stderr
    # The merged pair records the tokenizer its inputs share, so the check goes on downstream.
    assert recorded_tokenizer_sha256(tmp_path / "ab") == file_sha256(tokenizer_path)
    r = _run("validate", str(tmp_path / "ab"), "--tokenizer", str(other_tokenizer))
    assert r.returncode == 2 and "tokenizer mismatch" in r.stderr
    r = _run("inspect", str(tmp_path / "ab"))
    assert r.returncode == 0, r.stderr


def test_merge_shards_refuses_shards_of_different_tokenizers(tokenizer_path, other_tokenizer, tmp_path):
    from corpus.errors import TokenizerMismatchError

    cfg = _cfg(tokenizer_path, tmp_path, num_shards=2)
    build(dataclasses.replace(cfg, shard=0))
    build(dataclasses.replace(cfg, shard=1, tokenizer=str(other_tokenizer)))
    with pytest.raises(TokenizerMismatchError, match="different tokenizers.*shard-00000-of-00002.*shard-00001-of-00002"):
        merge_shards(cfg, 2)
    assert not Path(cfg.output + ".idx").exists()


def test_a_rerun_removes_what_a_killed_build_left(tokenizer_path, tmp_path):
    """kill -9 leaves NAME.tmp.<pid> files with a dead pid: validate names them, the next build removes them,
    and a live writer's temporaries (or another prefix's) are left alone."""
    cfg = _cfg(tokenizer_path, tmp_path)
    build(cfg)
    dead = 2**22 + 1   # above Linux's largest pid_max: no process has it
    debris = [Path(f"{cfg.output}.bin.tmp.{dead}"), Path(f"{cfg.output}.idx.lengths.tmp.{dead}"),
              Path(f"{cfg.output}.json.tmp.{dead}")]
    for p in debris:
        p.write_bytes(b"half")
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])   # a writer still running
    try:
        live = Path(f"{cfg.output}.bin.tmp.{writer.pid}")
        other = Path(f"{cfg.output}.shard-00000-of-00002.bin.tmp.{dead}")   # another task's output
        live.write_bytes(b"busy")
        other.write_bytes(b"other")
        r = _run("validate", cfg.output)
        assert r.returncode == 0 and "3 temporary file(s)" in r.stderr and str(debris[0]) in r.stderr, r.stderr
        build(dataclasses.replace(cfg, force=True))
        assert not any(p.exists() for p in debris)
        assert live.exists() and other.exists()
    finally:
        writer.kill()
        writer.wait()


def test_cli_prefix_overrides_and_print_config(tokenizer_path, tmp_path):
    cfg_file = _jsonl_config(tmp_path / "c.yaml", tmp_path / "a", tokenizer_path)
    r = _run("build", "--config", str(cfg_file), "--set", "seq_length=256", "--set", "workers=2", "--print-config")
    assert r.returncode == 0, r.stderr
    assert "seq_length: 256  # default: 1024" in r.stdout and "workers: 2  # default: 1" in r.stdout
    assert not (tmp_path / "a").exists()
    r = _run("build", "--config", str(cfg_file), "--set", "seq_lenght=256")
    assert r.returncode == 2 and r.stderr.startswith("corpus: error: --set seq_lenght=256")
    assert "did you mean 'seq_length'" in r.stderr
    # No abbreviations: --out is not --output.
    r = _run("build", "--config", str(cfg_file), "--out", str(tmp_path / "elsewhere"))
    assert r.returncode == 2 and "unrecognized arguments: --out" in r.stderr
    r = _run("plan", "--config", str(cfg_file), "--set", "shards_per_source=3")
    assert r.returncode == 0 and r.stdout.split() [:3] == ["build", "3", "task(s),"], r.stderr
    r = _run("validate", str(tmp_path / "missing"))
    assert r.returncode == 2 and r.stderr.startswith("corpus: error: ") and "Traceback" not in r.stderr


@pytest.mark.parametrize("source, doc_id, nbytes", [
    ("corpus", "zh-0001", 1), ("维基 \"q\" \\ x", "id\n\u2028\x00\u00e9😀", 10**12), ("", "", 0)])
def test_sidecar_lines_are_the_json_of_the_record(source, doc_id, nbytes):
    from corpus.build import sidecar_line

    line = sidecar_line(source, doc_id, nbytes)
    assert line == json.dumps({"source": source, "id": doc_id, "bytes": nbytes}, ensure_ascii=False) + "\n"
    assert json.loads(line) == {"source": source, "id": doc_id, "bytes": nbytes}


@pytest.mark.parametrize("tasks", [1, 3])
def test_a_forced_plan_tokenizes_each_source_once(tokenizer_path, tmp_path, tasks):
    """--force rebuilds in the build stage; the mix stage then uses those outputs, it does not build again."""
    from corpus.plan import make_plan, run_task, source_prefix
    from corpus.spec import load_corpus_config

    cfg_file = _jsonl_config(tmp_path / "c.yaml", tmp_path / "out", tokenizer_path)
    cfg = load_corpus_config(cfg_file, {"force": True, "progress": False}).with_tasks(tasks)
    prefix = source_prefix(cfg, cfg.sources[0])
    built = {}
    for stage in make_plan(cfg):
        for t in range(stage.tasks):
            run_task(cfg, stage.name, t)
        if stage.name == "build":
            outputs = sorted(prefix.parent.glob("*.bin"))
            built = {p: p.stat().st_ino for p in outputs}
    assert built and all(p.stat().st_ino == ino for p, ino in built.items())   # not rewritten by the mix


def test_encode_arrays_are_the_ids_of_encode_with_either_sentencepiece_output(tokenizer_path):
    texts = [r["text"] for r in _records(SAMPLES)][:20] + ["", " ", "x"]
    tok = Tokenizer(tokenizer_path)
    fast = tok.encode_arrays(texts)
    tok._numpy_out = False          # what an older sentencepiece (lists only) takes
    slow = tok.encode_arrays(texts)
    assert [a.tolist() for a in fast] == [b.tolist() for b in slow] == [tok.encode(t) for t in texts]
    assert all(a.dtype == np.int32 for a in fast + slow)
