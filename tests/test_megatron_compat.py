"""Our .bin/.idx against megatron.core's own reader and builder, the reference for the format.

Needs torch and megatron-core (the dev extra). A missing install is a failure, not a skip: these
tests are the contract with the training side.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

# Slow (~10 s) on import, and it warns about optional GPU kernels (Apex, Transformer Engine) that
# have nothing to do with the dataset format: import once per module, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

from corpus.indexed import IndexedReader, IndexedWriter, dtype_for_vocab, merge

Doc = list[np.ndarray]  # one document = its sequences


def random_docs(seed: int, n: int, vocab: int) -> list[Doc]:
    rng = np.random.default_rng(seed)
    return [
        [rng.integers(0, vocab, rng.integers(1, 60)) for _ in range(rng.integers(1, 6))]
        for _ in range(n)
    ]


def ours(prefix: Path, docs: list[Doc], dtype: np.dtype) -> None:
    with IndexedWriter(prefix, dtype) as writer:
        for doc in docs:
            writer.add_document(np.concatenate(doc), [len(s) for s in doc])


def megatrons(prefix: Path, docs: list[Doc], dtype: np.dtype) -> None:
    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype.type)
    for doc in docs:
        # Token lists, as Megatron's tools/preprocess_data.py passes them.
        builder.add_document(np.concatenate(doc).tolist(), [len(s) for s in doc])
    builder.finalize(f"{prefix}.idx")


VOCABS = [32000, 65500, 250_000]  # uint16, int32 at the edge, int32


@pytest.mark.parametrize("vocab", VOCABS)
def test_megatron_reads_our_files(tmp_path: Path, vocab: int) -> None:
    dtype = dtype_for_vocab(vocab)
    docs = random_docs(vocab, 40, vocab)
    ours(tmp_path / "d", docs, dtype)
    sequences = [s for doc in docs for s in doc]

    dataset = IndexedDataset(str(tmp_path / "d"))
    assert np.dtype(dataset.index.dtype) == dtype
    assert len(dataset) == len(sequences)
    np.testing.assert_array_equal(dataset.sequence_lengths, [len(s) for s in sequences])
    np.testing.assert_array_equal(dataset.document_indices, np.cumsum([0] + [len(d) for d in docs]))
    for i, s in enumerate(sequences):
        got = dataset[i]
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, s)
    np.testing.assert_array_equal(dataset.get(3, offset=1, length=2), sequences[3][1:3])
    for got, s in zip(dataset[5:9], sequences[5:9]):  # contiguous slice read
        np.testing.assert_array_equal(got, s)


@pytest.mark.parametrize("vocab", VOCABS)
def test_byte_identical_to_megatron_builder(tmp_path: Path, vocab: int) -> None:
    dtype = dtype_for_vocab(vocab)
    docs = random_docs(vocab + 1, 40, vocab)
    ours(tmp_path / "ours", docs, dtype)
    megatrons(tmp_path / "theirs", docs, dtype)
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"theirs{ext}").read_bytes()


@pytest.mark.parametrize("vocab", VOCABS)
def test_we_read_megatron_files(tmp_path: Path, vocab: int) -> None:
    dtype = dtype_for_vocab(vocab)
    docs = random_docs(vocab + 2, 30, vocab)
    megatrons(tmp_path / "theirs", docs, dtype)
    with IndexedReader(tmp_path / "theirs") as reader:
        assert reader.dtype == dtype
        assert reader.num_documents == len(docs)
        for d, doc in enumerate(docs):
            got = reader.document(d)
            assert len(got) == len(doc)
            for a, b in zip(got, doc):
                np.testing.assert_array_equal(a, b)


def test_merge_matches_megatron_add_index(tmp_path: Path) -> None:
    dtype = dtype_for_vocab(32000)
    shards = [random_docs(seed, n, 32000) for seed, n in ((7, 10), (8, 1), (9, 25))]
    prefixes = []
    for k, docs in enumerate(shards):
        ours(tmp_path / f"s{k}", docs, dtype)
        prefixes.append(tmp_path / f"s{k}")
    merge(prefixes, tmp_path / "ours")

    builder = IndexedDatasetBuilder(str(tmp_path / "theirs.bin"), dtype=dtype.type)
    for prefix in prefixes:
        builder.add_index(str(prefix))
    builder.finalize(str(tmp_path / "theirs.idx"))
    for ext in (".bin", ".idx"):
        assert (tmp_path / f"ours{ext}").read_bytes() == (tmp_path / f"theirs{ext}").read_bytes()
