"""Tests for corpus.indexed: MMIDIDX writer, reader, merger and validator."""

from __future__ import annotations

import os
import pickle
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus import indexed
from corpus.indexed import (
    MAGIC,
    VERSION,
    IndexedReader,
    IndexedWriter,
    IndexFormatError,
    IndexStats,
    dtype_for_vocab,
    merge,
    validate,
)

Doc = list[list[int]]  # one document = its sequences, each a list of token ids

HEADER = 34  # magic 9 + version 8 + dtype code 1 + sequence count 8 + document count 8


def write(prefix: Path | str, docs: list[Doc], dtype=np.uint16) -> IndexStats:
    """Write `docs` with one IndexedWriter and return its stats."""
    writer = IndexedWriter(prefix, dtype)
    for doc in docs:
        writer.add_document(np.concatenate([np.asarray(s) for s in doc]), [len(s) for s in doc])
    return writer.finalize()


def random_docs(rng: np.random.Generator, n: int, vocab: int = 32000) -> list[Doc]:
    return [
        [rng.integers(0, vocab, rng.integers(1, 40)).tolist() for _ in range(rng.integers(1, 5))]
        for _ in range(n)
    ]


def flat(docs: list[Doc]) -> list[list[int]]:
    return [s for doc in docs for s in doc]


def patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def truncate(path: Path, drop: int) -> None:
    os.truncate(path, path.stat().st_size - drop)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stream in chunks of 3 items so that every chunk boundary path runs on small data."""
    monkeypatch.setattr(indexed, "_CHUNK_ITEMS", 3)
    monkeypatch.setattr(indexed, "_COPY_BYTES", 5)


# ------------------------------------------------------------------ dtype


@pytest.mark.parametrize(
    ("vocab", "expected"),
    [(1, np.uint16), (32000, np.uint16), (65499, np.uint16), (65500, np.int32), (250_000, np.int32)],
)
def test_dtype_for_vocab(vocab: int, expected: type) -> None:
    assert dtype_for_vocab(vocab) == np.dtype(expected)


@pytest.mark.parametrize("vocab", [0, -5])
def test_dtype_for_vocab_rejects_nonpositive(vocab: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        dtype_for_vocab(vocab)


@pytest.mark.parametrize(("vocab", "code"), [(65499, 8), (65500, 4)])
def test_header_dtype_code_follows_vocab(tmp_path: Path, vocab: int, code: int) -> None:
    write(tmp_path / "d", [[[1, 2, 3]]], dtype_for_vocab(vocab))
    raw = (tmp_path / "d.idx").read_bytes()
    assert raw[:9] == MAGIC
    assert struct.unpack_from("<Q", raw, 9)[0] == VERSION
    assert raw[17] == code
    assert (tmp_path / "d.bin").stat().st_size == 3 * np.dtype(dtype_for_vocab(vocab)).itemsize


def test_writer_rejects_dtype_without_code(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no Megatron code"):
        IndexedWriter(tmp_path / "d", np.uint32)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ layout and round trip


def test_exact_layout(tmp_path: Path) -> None:
    """The bytes of a tiny file, spelled out field by field."""
    write(tmp_path / "d", [[[7, 8, 9], [10]], [[11, 12]]], np.uint16)
    expected = (
        MAGIC
        + struct.pack("<QBQQ", 1, 8, 3, 3)
        + np.array([3, 1, 2], "<i4").tobytes()
        + np.array([0, 6, 8], "<i8").tobytes()
        + np.array([0, 2, 3], "<i8").tobytes()
    )
    assert (tmp_path / "d.idx").read_bytes() == expected
    assert (tmp_path / "d.bin").read_bytes() == np.array([7, 8, 9, 10, 11, 12], "<u2").tobytes()


DTYPES = [(np.uint16, 65535), (np.int32, 2**31 - 1), (np.uint8, 255), (np.int64, 2**40)]


@st.composite
def corpora(draw: st.DrawFn) -> tuple[type, list[Doc]]:
    dtype, top = draw(st.sampled_from(DTYPES))
    token = st.integers(0, top)
    sequence = st.lists(token, min_size=1, max_size=20)
    doc = st.lists(sequence, min_size=1, max_size=5)
    return dtype, draw(st.lists(doc, min_size=0, max_size=8))


@settings(max_examples=60, deadline=None)
@given(corpora())
def test_round_trip(corpus: tuple[type, list[Doc]]) -> None:
    dtype, docs = corpus
    sequences = flat(docs)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "d"
        stats = write(prefix, docs, dtype)
        assert stats == IndexStats(len(sequences), len(docs), sum(map(len, sequences)))
        assert validate(prefix, vocab_size=max([t for s in sequences for t in s], default=0) + 1) == stats
        with IndexedReader(prefix) as reader:
            assert reader.dtype == np.dtype(dtype)
            assert len(reader) == len(sequences)
            assert reader.num_documents == len(docs)
            assert reader.stats == stats
            assert reader.sequence_lengths.tolist() == [len(s) for s in sequences]
            itemsize = np.dtype(dtype).itemsize
            assert reader.sequence_pointers.tolist() == [
                itemsize * sum(map(len, sequences[:i])) for i in range(len(sequences))
            ]
            assert reader.document_indices.tolist() == np.cumsum([0] + [len(d) for d in docs]).tolist()
            for i, s in enumerate(sequences):
                assert reader[i].tolist() == s
                assert reader[i - len(sequences)].tolist() == s
                assert reader.get(i, offset=len(s) // 2).tolist() == s[len(s) // 2 :]
                start = 1 if len(s) > 1 else 0
                assert reader.get(i, start, 1).tolist() == s[start : start + 1]
            for d, doc in enumerate(docs):
                assert [a.tolist() for a in reader.document(d)] == doc
            assert [a.tolist() for a in reader] == sequences
        assert sorted(os.listdir(tmp)) == ["d.bin", "d.idx"]


def test_round_trip_with_tiny_chunks(tmp_path: Path, small_chunks: None) -> None:
    docs = random_docs(np.random.default_rng(0), 50)
    stats = write(tmp_path / "d", docs)
    assert validate(tmp_path / "d", 32000) == stats
    with IndexedReader(tmp_path / "d") as reader:
        assert [a.tolist() for a in reader] == flat(docs)
        ends = 2 * np.cumsum([len(s) for s in flat(docs)])
        assert reader.sequence_pointers.tolist() == [0, *ends[:-1].tolist()]


def test_empty_dataset(tmp_path: Path) -> None:
    assert write(tmp_path / "d", []) == IndexStats(0, 0, 0)
    assert (tmp_path / "d.bin").stat().st_size == 0
    assert validate(tmp_path / "d", 10) == IndexStats(0, 0, 0)
    with IndexedReader(tmp_path / "d") as reader:
        assert len(reader) == 0 and reader.num_documents == 0 and list(reader) == []
        with pytest.raises(IndexError):
            reader[0]


def test_writer_counts_and_accepts_lists_and_arrays(tmp_path: Path) -> None:
    writer = IndexedWriter(tmp_path / "d", np.int32)
    writer.add_document([1, 2, 3], np.array([1, 2], dtype=np.uint8))
    writer.add_document(np.array([70000], dtype=np.int64), (1,))
    assert (writer.sequences, writer.documents, writer.tokens) == (3, 2, 4)
    assert writer.finalize() == IndexStats(3, 2, 4)
    with IndexedReader(tmp_path / "d") as reader:
        assert reader[2].tolist() == [70000]


# ------------------------------------------------------------------ reader access errors


@pytest.fixture
def three(tmp_path: Path) -> Iterator[IndexedReader]:
    write(tmp_path / "d", [[[1, 2, 3], [4]], [[5, 6]]])
    with IndexedReader(tmp_path / "d") as reader:
        yield reader


@pytest.mark.parametrize("i", [3, -4, 100])
def test_getitem_out_of_range(three: IndexedReader, i: int) -> None:
    with pytest.raises(IndexError, match="out of range"):
        three[i]


def test_getitem_rejects_non_integer(three: IndexedReader) -> None:
    with pytest.raises(TypeError):
        three[1.0]  # type: ignore[index]
    assert three[np.int64(2)].tolist() == [5, 6]


@pytest.mark.parametrize(("offset", "length"), [(-1, None), (4, None), (0, 4), (2, 2), (1, -1)])
def test_get_out_of_range(three: IndexedReader, offset: int, length: int | None) -> None:
    with pytest.raises(IndexError):
        three.get(0, offset, length)


def test_get_slices(three: IndexedReader) -> None:
    assert three.get(0, 1).tolist() == [2, 3]
    assert three.get(0, 1, 1).tolist() == [2]
    assert three.get(0, 3).tolist() == []
    assert three.get(-1, 0, 2).tolist() == [5, 6]


def test_document_access(three: IndexedReader) -> None:
    assert [a.tolist() for a in three.document(-1)] == [[5, 6]]
    assert [a.tolist() for a in three.document(0)] == [[1, 2, 3], [4]]
    with pytest.raises(IndexError):
        three.document(2)
    with pytest.raises(IndexError):
        three.document(-3)


def test_views_are_read_only(three: IndexedReader) -> None:
    with pytest.raises(ValueError):
        three[0][0] = 9
    with pytest.raises(ValueError):
        three.sequence_lengths[0] = 9


def test_closed_reader(tmp_path: Path) -> None:
    write(tmp_path / "d", [[[1, 2, 3]]])
    reader = IndexedReader(tmp_path / "d")
    kept = reader[0]
    reader.close()
    assert kept.tolist() == [1, 2, 3]  # arrays handed out outlive the reader
    with pytest.raises(ValueError, match="closed"):
        reader[0]
    with pytest.raises(ValueError, match="closed"):
        len(reader)


# ------------------------------------------------------------------ writer rejects bad input


@pytest.mark.parametrize(
    ("tokens", "lengths", "message"),
    [
        ([1, 2, 3], [1, 1], "sum to 2 but there are 3"),
        ([1, 2, 3], [4], "sum to 4 but there are 3"),
        ([1, 2, 3], [3, 0], r"length 0 at position 1"),
        ([1, 2, 3], [4, -1], r"length -1 at position 1"),
        ([], [], "at least one sequence"),
        ([1, 2], [[1, 1]], "1-D"),
        ([1.0, 2.0], [2], "must be integers"),
        ([1, 2], [1.0, 1.0], "lengths must be integers"),
        ([[1, 2]], [2], "1-D"),
        ([70000], [1], "do not fit"),
        ([-1, 5], [2], "do not fit"),
    ],
)
def test_writer_rejects_bad_documents(tmp_path: Path, tokens: list, lengths: list, message: str) -> None:
    writer = IndexedWriter(tmp_path / "d", np.uint16)
    writer.add_document([9, 9], [2])
    with pytest.raises(ValueError, match=message):
        writer.add_document(np.asarray(tokens), lengths)
    # A rejected document leaves no trace: the file holds only the good documents around it.
    writer.add_document([8], [1])
    assert writer.finalize() == IndexStats(2, 2, 3)
    assert validate(tmp_path / "d") == IndexStats(2, 2, 3)
    assert (tmp_path / "d.bin").read_bytes() == np.array([9, 9, 8], "<u2").tobytes()


def test_writer_refuses_use_after_finalize(tmp_path: Path) -> None:
    writer = IndexedWriter(tmp_path / "d", np.uint16)
    writer.add_document([1], [1])
    writer.finalize()
    with pytest.raises(RuntimeError, match="finalized"):
        writer.add_document([1], [1])
    with pytest.raises(RuntimeError, match="finalized"):
        writer.finalize()


# ------------------------------------------------------------------ temporaries and replacement


def test_context_manager_exception_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with IndexedWriter(tmp_path / "d", np.uint16) as writer:
            for doc in random_docs(np.random.default_rng(1), 20):
                writer.add_document(np.concatenate(doc), [len(s) for s in doc])
            assert any(".tmp." in p.name for p in tmp_path.iterdir())  # temporaries were there
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_exception_keeps_existing_outputs(tmp_path: Path) -> None:
    write(tmp_path / "d", [[[1, 2]]])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(KeyError):
        with IndexedWriter(tmp_path / "d", np.uint16) as writer:
            writer.add_document([5, 6, 7], [3])
            raise KeyError("stop")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_existing_outputs_replaced_only_at_finalize(tmp_path: Path) -> None:
    write(tmp_path / "d", [[[1, 2]]])
    old = (tmp_path / "d.idx").read_bytes(), (tmp_path / "d.bin").read_bytes()
    writer = IndexedWriter(tmp_path / "d", np.uint16)
    writer.add_document([5, 6, 7], [3])
    assert ((tmp_path / "d.idx").read_bytes(), (tmp_path / "d.bin").read_bytes()) == old
    writer.finalize()
    with IndexedReader(tmp_path / "d") as reader:
        assert reader[0].tolist() == [5, 6, 7] and len(reader) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.bin", "d.idx"]


def test_clean_exit_finalizes(tmp_path: Path) -> None:
    with IndexedWriter(tmp_path / "d", np.uint16) as writer:
        writer.add_document([1, 2], [1, 1])
    assert validate(tmp_path / "d") == IndexStats(2, 1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.bin", "d.idx"]


def test_failed_finalize_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = IndexedWriter(tmp_path / "d", np.uint16)
    writer.add_document([1, 2], [2])

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(indexed.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        writer.finalize()
    assert list(tmp_path.iterdir()) == []


def test_no_stale_idx_if_finalize_dies_between_renames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """.bin is renamed before .idx; if the .idx rename fails, the old .idx must not survive next to
    the new .bin (an .idx on disk promises its .bin is the one it describes)."""
    write(tmp_path / "d", [[[1, 2]]])
    writer = IndexedWriter(tmp_path / "d", np.uint16)
    writer.add_document([5, 6, 7], [3])
    real_replace = os.replace

    def replace_bin_only(src: str, dst: str) -> None:
        if str(dst).endswith(".idx"):
            raise OSError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(indexed.os, "replace", replace_bin_only)
    with pytest.raises(OSError, match="killed"):
        writer.finalize()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.bin"]
    with pytest.raises(FileNotFoundError):
        IndexedReader(tmp_path / "d")


def test_abort(tmp_path: Path) -> None:
    writer = IndexedWriter(tmp_path / "d", np.uint16)
    writer.add_document([1, 2], [2])
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="aborted"):
        writer.add_document([1], [1])


# ------------------------------------------------------------------ merge


def test_merge_equals_single_write(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    shards = [random_docs(rng, n) for n in (7, 1, 0, 12, 3)]
    prefixes = []
    for k, docs in enumerate(shards):
        write(tmp_path / f"shard{k}", docs)
        prefixes.append(tmp_path / f"shard{k}")
    everything = [doc for docs in shards for doc in docs]
    expected = write(tmp_path / "all", everything)
    assert merge(prefixes, tmp_path / "merged") == expected
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"merged{ext}").read_bytes() == (tmp_path / f"all{ext}").read_bytes()
    assert not [p for p in tmp_path.iterdir() if ".tmp." in p.name]


def test_merge_with_tiny_chunks(tmp_path: Path, small_chunks: None) -> None:
    rng = np.random.default_rng(3)
    shards = [random_docs(rng, n) for n in (5, 4, 6)]
    for k, docs in enumerate(shards):
        write(tmp_path / f"s{k}", docs, np.int32)
    write(tmp_path / "all", [doc for docs in shards for doc in docs], np.int32)
    merge([str(tmp_path / f"s{k}") for k in range(3)], str(tmp_path / "merged"))
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"merged{ext}").read_bytes() == (tmp_path / f"all{ext}").read_bytes()


def test_merge_names_the_odd_dtype(tmp_path: Path) -> None:
    write(tmp_path / "a", [[[1]]], np.uint16)
    write(tmp_path / "b", [[[1]]], np.uint16)
    write(tmp_path / "odd", [[[1]]], np.int32)
    with pytest.raises(ValueError, match=r"'.*odd'.*int32.*'.*a'.*uint16"):
        merge([tmp_path / "a", tmp_path / "b", tmp_path / "odd"], tmp_path / "m")
    assert not (tmp_path / "m.idx").exists() and not (tmp_path / "m.bin").exists()


def test_merge_refuses_a_corrupt_shard(tmp_path: Path) -> None:
    write(tmp_path / "a", [[[1, 2], [3]]])
    write(tmp_path / "b", [[[1, 2], [3]]])
    patch(tmp_path / "b.idx", HEADER + 4 * 2 + 8, struct.pack("<q", 99))  # second pointer
    with pytest.raises(IndexFormatError, match="sequence_pointers"):
        merge([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.idx", "b.bin", "b.idx"]


def test_merge_needs_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        merge([], tmp_path / "m")


# ------------------------------------------------------------------ validation


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """Five sequences in three documents, uint16: lengths 3,1,2,4,1; doc index 0,2,3,5."""
    write(tmp_path / "d", [[[1, 2, 3], [4]], [[5, 6]], [[7, 8, 9, 10], [11]]])
    return tmp_path / "d"


def idx(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".idx")


def bin_(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".bin")


N = 5  # sequences in `good`
LENGTHS, POINTERS, DOCS = HEADER, HEADER + 4 * N, HEADER + 12 * N


def flip_magic(p: Path) -> None:
    patch(idx(p), 0, b"X")


def bad_version(p: Path) -> None:
    patch(idx(p), 9, struct.pack("<Q", 2))


def bad_dtype(p: Path) -> None:
    patch(idx(p), 17, bytes([9]))


def short_header(p: Path) -> None:
    os.truncate(idx(p), 20)


def truncated_idx(p: Path) -> None:
    truncate(idx(p), 4)


def trailing_idx(p: Path) -> None:
    with open(idx(p), "ab") as f:
        f.write(b"\0" * N)  # what a multimodal index would add


def zero_length(p: Path) -> None:
    patch(idx(p), LENGTHS + 4 * 1, struct.pack("<i", 0))


def wrong_pointer(p: Path) -> None:
    patch(idx(p), POINTERS + 8 * 2, struct.pack("<q", 10))  # should be 8


def truncated_bin(p: Path) -> None:
    truncate(bin_(p), 2)


def long_bin(p: Path) -> None:
    with open(bin_(p), "ab") as f:
        f.write(b"\0\0")


def doc_not_from_zero(p: Path) -> None:
    patch(idx(p), DOCS, struct.pack("<q", 1))


def doc_not_monotone(p: Path) -> None:
    patch(idx(p), DOCS + 8 * 2, struct.pack("<q", 1))  # 0,2,1,5


def doc_wrong_end(p: Path) -> None:
    patch(idx(p), DOCS + 8 * 3, struct.pack("<q", 4))


@pytest.mark.parametrize(
    ("corrupt", "file", "field", "index", "text"),
    [
        (flip_magic, ".idx", "magic", None, "bad magic"),
        (bad_version, ".idx", "version", None, "expected 1, found 2"),
        (bad_dtype, ".idx", "dtype", None, "found 9"),
        (short_header, ".idx", "header", None, "truncated header"),
        (truncated_idx, ".idx", "idx size", None, "truncated"),
        (trailing_idx, ".idx", "idx size", None, "trailing bytes"),
        (zero_length, ".idx", "sequence_lengths", 1, "expected '> 0', found 0"),
        (wrong_pointer, ".idx", "sequence_pointers", 2, "expected 8, found 10"),
        (truncated_bin, ".bin", "bin size", None, "truncated"),
        (long_bin, ".bin", "bin size", None, "longer"),
        (doc_not_from_zero, ".idx", "document_indices", 0, "start at 0"),
        (doc_not_monotone, ".idx", "document_indices", 2, "non-decreasing"),
        (doc_wrong_end, ".idx", "document_indices", 3, "expected 5, found 4"),
    ],
)
def test_validate_names_the_violation(
    good: Path, corrupt: Callable[[Path], None], file: str, field: str, index: int | None, text: str
) -> None:
    assert validate(good, 12) == IndexStats(5, 3, 11)
    corrupt(good)
    with pytest.raises(IndexFormatError) as caught:
        validate(good)
    error = caught.value
    assert (error.field, error.index) == (field, index)
    assert error.path == str(good) + file
    message = str(error)
    assert message.startswith(str(good) + file + ": " + field) and text in message


@pytest.mark.parametrize(
    ("corrupt", "field"),
    [
        (flip_magic, "magic"),
        (bad_version, "version"),
        (bad_dtype, "dtype"),
        (truncated_idx, "idx size"),
        (truncated_bin, "bin size"),
        (long_bin, "bin size"),
        (doc_not_from_zero, "document_indices"),
        (doc_wrong_end, "document_indices"),
    ],
)
def test_reader_refuses_broken_files(good: Path, corrupt: Callable[[Path], None], field: str) -> None:
    corrupt(good)
    with pytest.raises(IndexFormatError) as caught:
        IndexedReader(good)
    assert caught.value.field == field


def test_validate_reports_the_first_violation(good: Path) -> None:
    # A zero length also breaks every later pointer; the length, first in field order, is reported.
    zero_length(good)
    doc_not_monotone(good)
    with pytest.raises(IndexFormatError, match=r"sequence_lengths\[1\]"):
        validate(good)


def test_validate_tokens_against_vocab(good: Path) -> None:
    assert validate(good, vocab_size=12) == IndexStats(5, 3, 11)
    with pytest.raises(IndexFormatError) as caught:
        validate(good, vocab_size=11)
    error = caught.value
    assert (error.field, error.index, error.found) == ("tokens", 10, 11)
    assert "in sequence 4" in str(error) and str(error).startswith(str(good) + ".bin")
    with pytest.raises(IndexFormatError, match=r"tokens\[6\].*in sequence 3.*found 7"):
        validate(good, vocab_size=7)


def test_validate_negative_token(tmp_path: Path) -> None:
    write(tmp_path / "d", [[[3, -2, 4]]], np.int32)
    with pytest.raises(IndexFormatError, match=r"tokens\[1\].*found -2"):
        validate(tmp_path / "d", vocab_size=10)


def test_validate_indices_are_global_across_chunks(tmp_path: Path, small_chunks: None) -> None:
    docs = random_docs(np.random.default_rng(4), 30, vocab=100)
    stats = write(tmp_path / "d", docs)
    sizes = [len(s) for s in flat(docs)]
    position = stats.sequences - 4
    patch(tmp_path / "d.idx", HEADER + 4 * stats.sequences + 8 * position, struct.pack("<q", 1))
    with pytest.raises(IndexFormatError) as caught:
        validate(tmp_path / "d")
    assert (caught.value.field, caught.value.index) == ("sequence_pointers", position)
    assert caught.value.expected == 2 * sum(sizes[:position])

    write(tmp_path / "e", docs)
    token = stats.tokens - 5
    patch(tmp_path / "e.bin", 2 * token, struct.pack("<H", 100))
    with pytest.raises(IndexFormatError) as caught:
        validate(tmp_path / "e", vocab_size=100)
    assert (caught.value.field, caught.value.index) == ("tokens", token)

    write(tmp_path / "f", docs)
    last = stats.documents - 1
    patch(tmp_path / "f.idx", HEADER + 12 * stats.sequences + 8 * last, struct.pack("<q", 0))
    with pytest.raises(IndexFormatError) as caught:
        validate(tmp_path / "f")
    assert (caught.value.field, caught.value.index) == ("document_indices", last)


def test_validate_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        validate(tmp_path / "nothing")
    write(tmp_path / "d", [[[1]]])
    os.remove(tmp_path / "d.bin")
    with pytest.raises(FileNotFoundError):
        validate(tmp_path / "d")


def test_format_error_pickles() -> None:
    error = IndexFormatError("x.idx", "sequence_pointers", "wrong", 3, 8, 10)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) == "x.idx: sequence_pointers[3]: wrong (expected 8, found 10)"
    assert isinstance(copy, ValueError) and copy.index == 3


def test_add_documents_writes_the_bytes_of_one_add_document_each(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    docs = random_docs(rng, 50)
    write(tmp_path / "one", docs)
    writer = IndexedWriter(tmp_path / "batch", np.uint16)
    for part in (docs[:1], docs[1:30], [], docs[30:]):   # batches of any size, an empty one included
        tokens = np.concatenate([np.asarray(s) for doc in part for s in doc]) if part else np.empty(0, np.int64)
        writer.add_documents(tokens, np.array([len(s) for doc in part for s in doc], dtype=np.int64),
                             np.array([len(doc) for doc in part], dtype=np.int64))
    writer.finalize()
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"batch{ext}").read_bytes() == (tmp_path / f"one{ext}").read_bytes()
    bad = IndexedWriter(tmp_path / "bad", np.uint16)
    bad.add_documents(np.array([1, 2, 3]), np.array([3]), np.array([1]))
    for tokens, lengths, counts in (([1, 2], [1, 1], [1]),        # counts do not cover the sequences
                                    ([1, 2], [1, 1], [0, 2]),     # a document without a sequence
                                    ([1, 2], [3], [1]),           # lengths do not sum to the tokens
                                    ([70000], [1], [1])):         # a token outside uint16
        with pytest.raises(ValueError):
            bad.add_documents(np.array(tokens), np.array(lengths), np.array(counts))
    assert (bad.documents, bad.sequences, bad.tokens) == (1, 1, 3)   # nothing of the rejected calls
    bad.abort()
