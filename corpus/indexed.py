"""Megatron's MMIDIDX token files: writer, reader, merger and validator.

A dataset is a pair of files sharing a prefix, ``<prefix>.bin`` and ``<prefix>.idx``, byte-compatible
with ``megatron.core.datasets.indexed_dataset.IndexedDataset`` (the non-multimodal variant).

``<prefix>.bin`` holds the tokens of every sequence back to back, no header, no padding, in the
dtype named by the index, little-endian.

``<prefix>.idx`` is, in order (all integers little-endian, no padding)::

    offset  size      field
    0       9         magic              b"MMIDIDX\\x00\\x00"
    9       8   <Q    version            1
    17      1   <B    dtype code         1 uint8, 2 int8, 3 int16, 4 int32, 5 int64,
                                         6 float64, 7 float32, 8 uint16
    18      8   <Q    sequence count     S
    26      8   <Q    document count     D + 1   (entries of the document index, not documents)
    34      4*S <i4   sequence_lengths   tokens in each sequence
    .       8*S <i8   sequence_pointers  byte offset of each sequence in .bin:
                                         exclusive cumulative sum of lengths * itemsize, from 0
    .       8*(D+1) <i8 document_indices 0, then the running sequence count after each document:
                                         document d is sequences [doc[d], doc[d+1])

so an .idx is exactly ``34 + 12*S + 8*(D+1)`` bytes and a .bin exactly ``itemsize * sum(lengths)``.

In this project one document is one source document and its sequences are the samples it was
packed into (each at most ``seq_length`` tokens). Token files use uint16 (code 8) when the
vocabulary has fewer than 65500 entries and int32 (code 4) otherwise, as Megatron's
``DType.optimal_dtype`` does (:func:`dtype_for_vocab`).

Writing is streaming and crash-safe: tokens go to ``<prefix>.bin.tmp.<pid>``, sequence lengths and
document ends to sidecar temporaries, and :meth:`IndexedWriter.finalize` composes the .idx in chunks
and renames ``.bin`` first, then ``.idx``. An ``.idx`` on disk therefore means its ``.bin`` is
complete; a ``*.tmp.<pid>`` file whose process is gone is debris of a writer that died:
:func:`stale_temps` lists those of a prefix (``corpus validate`` reports them), :func:`remove_stale_temps`
deletes them (a rerun of a build does).

Only numpy, the standard library and :mod:`common` (itself stdlib-only) are imported: this module runs on
login nodes, and train/ reads datasets through it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import os
import struct
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import BinaryIO, Union

import numpy
import numpy.typing as npt

from common import atomic
from common.errors import UserError
from corpus.errors import CorpusError

__all__ = [
    "MAGIC",
    "VERSION",
    "IndexFormatError",
    "IndexStats",
    "IndexedReader",
    "IndexedWriter",
    "dtype_for_vocab",
    "merge",
    "remove_stale_temps",
    "stale_temps",
    "validate",
]

PathLike = Union[str, "os.PathLike[str]"]

MAGIC: bytes = b"MMIDIDX\x00\x00"
VERSION = 1

# Megatron's DType enum: the code stored in the header for each token dtype (always little-endian).
_DTYPE_BY_CODE: dict[int, numpy.dtype] = {
    1: numpy.dtype("u1"),
    2: numpy.dtype("i1"),
    3: numpy.dtype("<i2"),
    4: numpy.dtype("<i4"),
    5: numpy.dtype("<i8"),
    6: numpy.dtype("<f8"),
    7: numpy.dtype("<f4"),
    8: numpy.dtype("<u2"),
}

# magic, version, dtype code, sequence count, document-index count; "<" means no padding: 34 bytes.
_HEADER = struct.Struct("<9sQBQQ")
_LENGTH = numpy.dtype("<i4")
_POINTER = numpy.dtype("<i8")
_DOC = numpy.dtype("<i8")
_INT32_MAX = numpy.iinfo(numpy.int32).max

# Items per chunk when streaming index arrays or tokens (read at call time so tests can shrink it
# to exercise chunk boundaries). 1 Mi items keeps every streaming pass within a few tens of MB.
_CHUNK_ITEMS = 1 << 20
# Buffer for plain byte copies (.bin concatenation, sidecar copies).
_COPY_BYTES = 16 << 20


class IndexFormatError(UserError, ValueError):
    """An .idx/.bin pair breaks the format; says which file, field and entry, expected vs found."""

    def __init__(
        self,
        path: PathLike,
        field: str,
        problem: str,
        index: int | None = None,
        expected: object = None,
        found: object = None,
    ) -> None:
        # Everything goes into args so the exception pickles (it may cross a process pool).
        super().__init__(os.fspath(path), field, problem, index, expected, found)
        self.path = os.fspath(path)
        self.field = field
        self.problem = problem
        self.index = index
        self.expected = expected
        self.found = found

    def __str__(self) -> str:
        where = self.field if self.index is None else f"{self.field}[{self.index}]"
        text = f"{self.path}: {where}: {self.problem}"
        if self.expected is not None or self.found is not None:
            text += f" (expected {self.expected!r}, found {self.found!r})"
        return text


@dataclasses.dataclass(frozen=True)
class IndexStats:
    """Counts of a dataset: sequences (samples), documents, and tokens over all sequences."""

    sequences: int
    documents: int
    tokens: int


def dtype_for_vocab(vocab_size: int) -> numpy.dtype:
    """Token dtype for a vocabulary: uint16 below 65500 entries, else int32 (Megatron's rule)."""
    if vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    return numpy.dtype(numpy.uint16) if vocab_size < 65500 else numpy.dtype(numpy.int32)


def _idx_path(prefix: PathLike) -> str:
    return os.fspath(prefix) + ".idx"


def _bin_path(prefix: PathLike) -> str:
    return os.fspath(prefix) + ".bin"


def _dtype_code(dtype: npt.DTypeLike) -> tuple[int, numpy.dtype]:
    """Megatron's code for a token dtype, and the little-endian dtype actually written."""
    wanted = numpy.dtype(dtype).newbyteorder("<")
    for code, known in _DTYPE_BY_CODE.items():
        if known == wanted:
            return code, known
    names = ", ".join(str(d) for d in _DTYPE_BY_CODE.values())
    raise ValueError(f"dtype {numpy.dtype(dtype)} has no Megatron code; use one of {names}")


# --------------------------------------------------------------------------------------------
# Header


@dataclasses.dataclass(frozen=True)
class _Header:
    """The parsed fixed part of an .idx and where its arrays start."""

    dtype: numpy.dtype
    code: int
    sequence_count: int
    document_index_count: int

    @property
    def lengths_offset(self) -> int:
        return _HEADER.size

    @property
    def pointers_offset(self) -> int:
        return self.lengths_offset + _LENGTH.itemsize * self.sequence_count

    @property
    def documents_offset(self) -> int:
        return self.pointers_offset + _POINTER.itemsize * self.sequence_count

    @property
    def idx_size(self) -> int:
        return self.documents_offset + _DOC.itemsize * self.document_index_count


def _pack_header(code: int, sequences: int, documents: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, code, sequences, documents + 1)


def _read_header(idx_path: str) -> _Header:
    """Parse and check the header, and that the file size matches its counts."""
    size = os.path.getsize(idx_path)
    with open(idx_path, "rb") as f:
        raw = f.read(_HEADER.size)
    # Compare the magic over what is there first: a short non-index file is "bad magic", not
    # "truncated", which would suggest it was an index once.
    if raw[: len(MAGIC)] != MAGIC[: len(raw)]:
        raise IndexFormatError(idx_path, "magic", "bad magic, not a Megatron MMIDIDX index",
                               expected=MAGIC, found=raw[: len(MAGIC)])
    if len(raw) < _HEADER.size:
        raise IndexFormatError(idx_path, "header", "truncated header",
                               expected=f">= {_HEADER.size} bytes", found=f"{size} bytes")
    _, version, code, sequences, doc_entries = _HEADER.unpack(raw)
    if version != VERSION:
        raise IndexFormatError(idx_path, "version", "unknown version", expected=VERSION, found=version)
    if code not in _DTYPE_BY_CODE:
        raise IndexFormatError(idx_path, "dtype", "unknown dtype code",
                               expected=f"one of {sorted(_DTYPE_BY_CODE)}", found=code)
    if doc_entries < 1:
        raise IndexFormatError(idx_path, "document count", "document index needs at least one entry",
                               expected=">= 1", found=doc_entries)
    header = _Header(_DTYPE_BY_CODE[code], code, sequences, doc_entries)
    if size != header.idx_size:
        problem = "truncated: file is shorter than its header counts need" if size < header.idx_size \
            else "trailing bytes after the document indices (multimodal indices are not supported)"
        raise IndexFormatError(idx_path, "idx size", problem,
                               expected=f"{header.idx_size} bytes", found=f"{size} bytes")
    return header


# --------------------------------------------------------------------------------------------
# Streaming helpers


def _iter_array(
    path: str, offset: int, dtype: numpy.dtype, count: int
) -> Iterator[tuple[int, numpy.ndarray]]:
    """Yield (first item index, chunk) over `count` items of `dtype` stored at byte `offset`.

    Plain reads rather than a memmap so that resident memory stays one chunk, whatever the file
    size (a memmap would keep every page it touched resident).
    """
    chunk = _CHUNK_ITEMS
    with open(path, "rb") as f:
        f.seek(offset)
        start = 0
        while start < count:
            n = min(chunk, count - start)
            raw = f.read(n * dtype.itemsize)
            if len(raw) != n * dtype.itemsize:
                raise IndexFormatError(path, "size", "file ended early while reading",
                                       expected=f"{offset + (start + n) * dtype.itemsize} bytes",
                                       found=f"{offset + start * dtype.itemsize + len(raw)} bytes")
            yield start, numpy.frombuffer(raw, dtype=dtype)
            start += n


def _pointers(lengths: numpy.ndarray, start: int, itemsize: int) -> tuple[numpy.ndarray, int]:
    """Byte pointers for a chunk of lengths whose first sequence starts at byte `start`.

    Returns the pointers and the byte offset just past the chunk (where the next chunk starts).
    """
    sizes = lengths.astype(numpy.int64) * itemsize
    ends = numpy.cumsum(sizes, dtype=numpy.int64) + start
    following = int(ends[-1]) if len(ends) else start
    return (ends - sizes).astype(_POINTER, copy=False), following


def _copy_range(src: BinaryIO, dst: BinaryIO, nbytes: int) -> None:
    """Copy exactly `nbytes` from the current position of `src` to `dst`, in bounded chunks."""
    left = nbytes
    while left:
        block = src.read(min(_COPY_BYTES, left))
        if not block:
            raise EOFError(f"{getattr(src, 'name', src)}: ended {left} bytes early")
        dst.write(block)
        left -= len(block)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _fsync_dir(path: str) -> None:
    """Persist renames in `path`'s directory (best effort: not every filesystem allows it)."""
    atomic.fsync_dir(os.path.dirname(os.path.abspath(path)))


# The per-document sidecar ``PREFIX.docs.jsonl`` (written by corpus.build, joined by its shard merge and
# by ``corpus merge``, byte copies in input order):
# one JSON object per document of the .idx, in document order, ``{"source": NAME, "id": ID, "bytes": N}``
# — the source's name, the record's id (the reader's, or FILE_NAME:LINE for a JSON line without one)
# and the UTF-8 length of the text that was tokenized — so sample k traces to document
# ``document_index`` and from there to its source record.
#
# What a dataset's writers leave under temporary names: the pair, the writer's sidecars, and the
# build report beside it (``PREFIX.json``).
_TEMP_BASES = (".bin", ".idx", ".idx.lengths", ".idx.docs", ".json", ".docs.jsonl")


def stale_temps(prefix: PathLike) -> list[str]:
    """Temporaries of ``prefix``'s files left by writers that are no longer running (a killed build).

    Only this prefix's own names: a sharded build's other shards may be writing theirs beside it."""
    folder, name = os.path.split(os.path.abspath(os.fspath(prefix)))
    bases = {name + b for b in _TEMP_BASES}
    return [os.fspath(p) for p in atomic.stale_temps(folder, name + ".")
            if p.name[:p.name.rfind(".tmp")] in bases]


def remove_stale_temps(prefix: PathLike) -> list[str]:
    """Delete what :func:`stale_temps` finds; returns what went."""
    gone = stale_temps(prefix)
    for path in gone:
        _remove(path)
    return gone


# --------------------------------------------------------------------------------------------
# Writer


class IndexedWriter:
    """Stream documents into ``<prefix>.bin``/``<prefix>.idx`` in constant memory.

    Tokens are appended to a temporary .bin; per-sequence lengths and per-document ends go to
    temporary sidecar files, because the .idx header needs the final counts before the arrays.
    :meth:`finalize` writes the .idx from the sidecars in chunks and renames both files into place
    (existing outputs are replaced only then). Used as a context manager, an exception removes
    every temporary file and leaves existing outputs untouched; a clean exit finalizes.

    Temporaries are named ``<prefix>.{bin,idx,idx.lengths,idx.docs}.tmp.<pid>`` next to the
    outputs (same filesystem, so the renames are atomic); one process must not run two writers on
    the same prefix at once.
    """

    def __init__(self, prefix: PathLike, dtype: npt.DTypeLike) -> None:
        self._code, self._dtype = _dtype_code(dtype)
        self._bin_path = _bin_path(prefix)
        self._idx_path = _idx_path(prefix)
        # NAME.tmp.<pid>, the names common.atomic.stale_temps recognises once this process is gone.
        self._bin_tmp = os.fspath(atomic.temp_path(self._bin_path))
        self._idx_tmp = os.fspath(atomic.temp_path(self._idx_path))
        self._lengths_tmp = os.fspath(atomic.temp_path(self._idx_path + ".lengths"))
        self._docs_tmp = os.fspath(atomic.temp_path(self._idx_path + ".docs"))
        self._sequences = 0
        self._documents = 0
        self._tokens = 0
        self._state = "open"
        self._files: list[BinaryIO] = []
        try:
            self._bin = self._open(self._bin_tmp)
            self._lengths = self._open(self._lengths_tmp)
            self._docs = self._open(self._docs_tmp)
        except BaseException:
            self.abort()
            raise

    def _open(self, path: str) -> BinaryIO:
        f = open(path, "wb", buffering=1 << 20)
        self._files.append(f)
        return f

    @property
    def dtype(self) -> numpy.dtype:
        """Token dtype written to .bin."""
        return self._dtype

    @property
    def sequences(self) -> int:
        """Sequences written so far."""
        return self._sequences

    @property
    def documents(self) -> int:
        """Documents written so far."""
        return self._documents

    @property
    def tokens(self) -> int:
        """Tokens written so far."""
        return self._tokens

    def _require_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"IndexedWriter for {self._idx_path} is already {self._state}")

    def add_document(self, tokens: numpy.ndarray, lengths: Sequence[int] | numpy.ndarray) -> None:
        """Append one document: its sequences' tokens concatenated, and each sequence's length.

        Raises ValueError (and writes nothing) if the document has no sequence, a length is not
        positive, the lengths do not sum to ``len(tokens)``, or a token does not fit the dtype.
        """
        self._require_open()
        data = self._checked_tokens(tokens)
        sizes = self._checked_lengths(lengths, len(data))
        # Everything is checked before the first write, so a rejected document leaves no trace.
        self._bin.write(memoryview(data).cast("B"))
        self._lengths.write(sizes.tobytes())
        self._sequences += len(sizes)
        self._documents += 1
        self._tokens += len(data)
        self._docs.write(numpy.array([self._sequences], dtype=_DOC).tobytes())

    def add_documents(self, tokens: numpy.ndarray, lengths: numpy.ndarray, doc_sequences: numpy.ndarray) -> None:
        """Append many documents at once: the same bytes as :meth:`add_document` for each, in order,
        with one write per file (a build writes thousands of small documents a second).

        ``tokens``: every document's tokens concatenated; ``lengths``: every sequence's length;
        ``doc_sequences``: how many of those sequences each document has (each >= 1). Checked
        as a whole before the first write: a ValueError leaves no trace.
        """
        self._require_open()
        data = self._checked_tokens(tokens)
        sizes = self._checked_lengths(lengths, len(data)) if len(data) or len(lengths) else numpy.empty(0, _LENGTH)
        counts = numpy.asarray(doc_sequences, dtype=numpy.int64)
        if counts.ndim != 1 or (counts.size and int(counts.min()) < 1) or int(counts.sum()) != len(sizes):
            raise ValueError(f"doc_sequences must be >= 1 each and sum to the {len(sizes)} sequences, "
                             f"got {counts.size} counts summing to {int(counts.sum())}")
        if not counts.size:
            return
        self._bin.write(memoryview(data).cast("B"))
        self._lengths.write(sizes.tobytes())
        self._docs.write((numpy.cumsum(counts) + self._sequences).astype(_DOC).tobytes())
        self._sequences += len(sizes)
        self._documents += len(counts)
        self._tokens += len(data)

    def _checked_tokens(self, tokens: numpy.ndarray) -> numpy.ndarray:
        """The tokens as a contiguous little-endian array of the file dtype, range-checked."""
        array = numpy.asarray(tokens)
        if array.ndim != 1:
            raise ValueError(f"tokens must be 1-D, got shape {array.shape}")
        if self._dtype.kind in "iu" and array.size:
            if array.dtype.kind not in "iub":
                raise ValueError(f"tokens must be integers for dtype {self._dtype}, got {array.dtype}")
            # A silent wrap-around (70000 -> 4464 in uint16) would corrupt the corpus unnoticed.
            if not numpy.can_cast(array.dtype, self._dtype, "safe"):
                info = numpy.iinfo(self._dtype)
                low, high = int(array.min()), int(array.max())
                if low < info.min or high > info.max:
                    raise ValueError(f"token values [{low}, {high}] do not fit dtype {self._dtype}")
        return numpy.ascontiguousarray(array, dtype=self._dtype)

    @staticmethod
    def _checked_lengths(lengths: Sequence[int] | numpy.ndarray, total: int) -> numpy.ndarray:
        """The lengths as int32, each positive, summing to `total`."""
        array = numpy.asarray(lengths)
        if array.ndim != 1 or array.size == 0:
            raise ValueError("a document needs a 1-D list of at least one sequence length, "
                             f"got shape {array.shape}")
        if array.dtype.kind not in "iu":
            raise ValueError(f"lengths must be integers, got {array.dtype}")
        if int(array.min()) <= 0 or int(array.max()) > _INT32_MAX:
            bad = int(numpy.flatnonzero((array <= 0) | (array > _INT32_MAX))[0])
            raise ValueError(f"sequence length {int(array[bad])} at position {bad} "
                             f"is not in [1, {_INT32_MAX}]")
        summed = int(array.sum(dtype=numpy.int64))
        if summed != total:
            raise ValueError(f"lengths sum to {summed} but there are {total} tokens")
        return array.astype(_LENGTH)

    def _append_shard(self, prefix: PathLike) -> None:
        """Append a whole existing dataset (checked by the caller) without decoding its tokens."""
        self._require_open()
        idx_path, bin_path = _idx_path(prefix), _bin_path(prefix)
        header = _read_header(idx_path)
        if header.dtype != self._dtype:
            raise ValueError(f"{idx_path}: dtype {header.dtype} differs from the output's {self._dtype}")
        with open(idx_path, "rb") as src:
            src.seek(header.lengths_offset)
            _copy_range(src, self._lengths, header.pointers_offset - header.lengths_offset)
        # Skip the leading 0 and shift the rest by the sequences already written.
        for _, ends in _iter_array(idx_path, header.documents_offset + _DOC.itemsize, _DOC,
                                   header.document_index_count - 1):
            self._docs.write((ends + self._sequences).astype(_DOC, copy=False).tobytes())
        nbytes = os.path.getsize(bin_path)
        with open(bin_path, "rb") as src:
            _copy_range(src, self._bin, nbytes)
        self._sequences += header.sequence_count
        self._documents += header.document_index_count - 1
        self._tokens += nbytes // self._dtype.itemsize

    def finalize(self) -> IndexStats:
        """Write the .idx, then rename .bin and .idx into place; return the counts."""
        self._require_open()
        try:
            for f in self._files:
                f.flush()
                os.fsync(f.fileno())
                f.close()
            self._compose_index()
            _remove(self._lengths_tmp)
            _remove(self._docs_tmp)
            # Drop a previous .idx before its .bin is replaced: at no moment may an .idx sit next
            # to a .bin it does not describe.
            _remove(self._idx_path)
            os.replace(self._bin_tmp, self._bin_path)
            os.replace(self._idx_tmp, self._idx_path)
            _fsync_dir(self._idx_path)
        except BaseException:
            self.abort()
            raise
        self._state = "finalized"
        return IndexStats(self._sequences, self._documents, self._tokens)

    def _compose_index(self) -> None:
        """Header, lengths (copied), pointers (computed chunk by chunk), document indices."""
        with open(self._idx_tmp, "wb", buffering=1 << 20) as out:
            out.write(_pack_header(self._code, self._sequences, self._documents))
            with open(self._lengths_tmp, "rb") as src:
                _copy_range(src, out, self._sequences * _LENGTH.itemsize)
            start = 0
            for _, lengths in _iter_array(self._lengths_tmp, 0, _LENGTH, self._sequences):
                pointers, start = _pointers(lengths, start, self._dtype.itemsize)
                out.write(pointers.tobytes())
            out.write(numpy.zeros(1, dtype=_DOC).tobytes())
            with open(self._docs_tmp, "rb") as src:
                _copy_range(src, out, self._documents * _DOC.itemsize)
            out.flush()
            os.fsync(out.fileno())

    def abort(self) -> None:
        """Close and delete every temporary file; existing outputs stay as they were."""
        for f in self._files:
            with contextlib.suppress(OSError):
                f.close()
        for path in (self._bin_tmp, self._idx_tmp, self._lengths_tmp, self._docs_tmp):
            _remove(path)
        if self._state == "open":
            self._state = "aborted"

    def __enter__(self) -> IndexedWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()
        elif self._state == "open":
            self.finalize()


# --------------------------------------------------------------------------------------------
# Reader


class IndexedReader:
    """Memory-mapped random access to ``<prefix>.bin``/``<prefix>.idx``; nothing is loaded whole.

    Opening checks the header, the .idx size, and in O(1) the ends of the document index and the
    .bin size; :func:`validate` checks everything. Arrays returned are read-only views of the maps.
    """

    def __init__(self, prefix: PathLike) -> None:
        self.path_prefix = os.fspath(prefix)
        idx_path, bin_path = _idx_path(prefix), _bin_path(prefix)
        header = _read_header(idx_path)
        self._dtype = header.dtype
        self._idx_map = numpy.memmap(idx_path, dtype=numpy.uint8, mode="r")
        self._lengths = self._view(header.lengths_offset, _LENGTH, header.sequence_count)
        self._pointers = self._view(header.pointers_offset, _POINTER, header.sequence_count)
        self._documents = self._view(header.documents_offset, _DOC, header.document_index_count)
        # numpy cannot map an empty file; a dataset with no tokens has an empty .bin.
        bin_size = os.path.getsize(bin_path)
        self._bin: numpy.ndarray = (numpy.memmap(bin_path, dtype=numpy.uint8, mode="r") if bin_size
                                    else numpy.empty(0, dtype=numpy.uint8))
        self._check_ends(idx_path, bin_path, bin_size)
        self._closed = False

    def _view(self, offset: int, dtype: numpy.dtype, count: int) -> numpy.ndarray:
        return numpy.frombuffer(self._idx_map, dtype=dtype, count=count, offset=offset)

    def _check_ends(self, idx_path: str, bin_path: str, bin_size: int) -> None:
        """O(1) consistency checks that catch truncation without scanning the arrays."""
        count = len(self._lengths)
        if self._documents[0] != 0:
            raise IndexFormatError(idx_path, "document_indices", "must start at 0",
                                   0, 0, int(self._documents[0]))
        if self._documents[-1] != count:
            raise IndexFormatError(idx_path, "document_indices", "last entry must equal the sequence count",
                                   len(self._documents) - 1, count, int(self._documents[-1]))
        end = int(self._pointers[-1]) + int(self._lengths[-1]) * self._dtype.itemsize if count else 0
        if bin_size != end:
            problem = "truncated" if bin_size < end else "longer than the index describes"
            raise IndexFormatError(bin_path, "bin size", problem,
                                   expected=f"{end} bytes", found=f"{bin_size} bytes")

    def _require_open(self) -> None:
        if self._closed:
            raise ValueError(f"IndexedReader for {self.path_prefix} is closed")

    @property
    def dtype(self) -> numpy.dtype:
        """Token dtype."""
        return self._dtype

    @property
    def sequence_lengths(self) -> numpy.ndarray:
        """int32 tokens per sequence (read-only view)."""
        self._require_open()
        return self._lengths

    @property
    def sequence_pointers(self) -> numpy.ndarray:
        """int64 byte offset of each sequence in .bin (read-only view)."""
        self._require_open()
        return self._pointers

    @property
    def document_indices(self) -> numpy.ndarray:
        """int64 document boundaries, documents + 1 entries starting at 0 (read-only view)."""
        self._require_open()
        return self._documents

    @property
    def num_documents(self) -> int:
        """Number of documents."""
        self._require_open()
        return len(self._documents) - 1

    @property
    def num_tokens(self) -> int:
        """Tokens over all sequences."""
        self._require_open()
        return len(self._bin) // self._dtype.itemsize

    @property
    def stats(self) -> IndexStats:
        """Sequence, document and token counts."""
        return IndexStats(len(self), self.num_documents, self.num_tokens)

    def __len__(self) -> int:
        self._require_open()
        return len(self._lengths)

    @staticmethod
    def _resolve(i: int, size: int, what: str) -> int:
        """A checked non-negative index; negative values count from the end."""
        i = operator.index(i)
        j = i + size if i < 0 else i
        if not 0 <= j < size:
            raise IndexError(f"{what} index {i} out of range for {size} {what}s")
        return j

    def __getitem__(self, i: int) -> numpy.ndarray:
        """Sequence `i` (read-only view of the .bin map)."""
        return self.get(i)

    def get(self, i: int, offset: int = 0, length: int | None = None) -> numpy.ndarray:
        """Tokens ``[offset, offset + length)`` of sequence `i` (to its end when length is None)."""
        self._require_open()
        j = self._resolve(i, len(self._lengths), "sequence")
        size = int(self._lengths[j])
        if length is None:
            length = size - offset
        if not (0 <= offset <= size and 0 <= length <= size - offset):
            raise IndexError(f"offset {offset} + length {length} out of range "
                             f"for sequence {j} of {size} tokens")
        start = int(self._pointers[j]) + offset * self._dtype.itemsize
        return numpy.frombuffer(self._bin, dtype=self._dtype, count=length, offset=start)

    def document(self, d: int) -> list[numpy.ndarray]:
        """The sequences of document `d`, in order."""
        self._require_open()
        k = self._resolve(d, len(self._documents) - 1, "document")
        return [self.get(i) for i in range(int(self._documents[k]), int(self._documents[k + 1]))]

    def __iter__(self) -> Iterator[numpy.ndarray]:
        for i in range(len(self)):
            yield self.get(i)

    def close(self) -> None:
        """Drop the maps. Arrays already returned stay valid: each keeps its map alive itself,
        which is why the maps are released, not force-closed (that would leave them dangling)."""
        self._closed = True
        self._lengths = self._pointers = self._documents = numpy.empty(0)
        self._idx_map = self._bin = numpy.empty(0, dtype=numpy.uint8)

    def __enter__(self) -> IndexedReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Validation


def validate(prefix: PathLike, vocab_size: int | None = None) -> IndexStats:
    """Check every invariant of a pair in bounded memory; raise IndexFormatError at the first break.

    Checks run in field order, each scanning its whole array before the next starts: header
    (magic, version, dtype code, counts vs .idx size), sequence lengths > 0, pointers equal to the
    exclusive cumulative sum of lengths * itemsize from 0, .bin size, document indices (start at
    0, non-decreasing, end at the sequence count) and, if `vocab_size` is given, every token in
    ``[0, vocab_size)``. The error names the file, field and lowest offending index.
    """
    if vocab_size is not None and vocab_size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    idx_path, bin_path = _idx_path(prefix), _bin_path(prefix)
    header = _read_header(idx_path)
    _check_lengths(idx_path, header)
    total_bytes = _check_pointers(idx_path, header)
    bin_size = os.path.getsize(bin_path)
    if bin_size != total_bytes:
        problem = "truncated" if bin_size < total_bytes else "longer than the index describes"
        raise IndexFormatError(bin_path, "bin size", problem,
                               expected=f"{total_bytes} bytes", found=f"{bin_size} bytes")
    _check_document_indices(idx_path, header)
    if vocab_size is not None:
        _check_tokens(bin_path, idx_path, header, vocab_size)
    return IndexStats(header.sequence_count, header.document_index_count - 1,
                      total_bytes // header.dtype.itemsize)


def _check_lengths(idx_path: str, header: _Header) -> None:
    for start, lengths in _iter_array(idx_path, header.lengths_offset, _LENGTH, header.sequence_count):
        bad = numpy.flatnonzero(lengths <= 0)
        if len(bad):
            raise IndexFormatError(idx_path, "sequence_lengths", "sequence length must be positive",
                                   start + int(bad[0]), "> 0", int(lengths[bad[0]]))


def _check_pointers(idx_path: str, header: _Header) -> int:
    """Compare pointers with those the lengths imply; return the byte size the .bin must have."""
    count, itemsize = header.sequence_count, header.dtype.itemsize
    expected_end = 0
    chunks = zip(_iter_array(idx_path, header.lengths_offset, _LENGTH, count),
                 _iter_array(idx_path, header.pointers_offset, _POINTER, count))
    for (start, lengths), (_, pointers) in chunks:
        expected, next_end = _pointers(lengths, expected_end, itemsize)
        bad = numpy.flatnonzero(pointers != expected)
        if len(bad):
            k = int(bad[0])
            raise IndexFormatError(idx_path, "sequence_pointers",
                                   "pointer must be the byte offset where the previous sequence ends",
                                   start + k, int(expected[k]), int(pointers[k]))
        expected_end = next_end
    return expected_end


def _check_document_indices(idx_path: str, header: _Header) -> None:
    previous: int | None = None
    for start, docs in _iter_array(idx_path, header.documents_offset, _DOC, header.document_index_count):
        if previous is None and docs[0] != 0:
            raise IndexFormatError(idx_path, "document_indices", "must start at 0", 0, 0, int(docs[0]))
        floor = docs[0] if previous is None else previous
        steps = numpy.diff(docs, prepend=floor)
        bad = numpy.flatnonzero(steps < 0)
        if len(bad):
            k = int(bad[0])
            before = int(docs[k - 1]) if k else floor
            raise IndexFormatError(idx_path, "document_indices", "must be non-decreasing",
                                   start + k, f">= {before}", int(docs[k]))
        previous = int(docs[-1])
    last = header.document_index_count - 1
    if previous != header.sequence_count:
        raise IndexFormatError(idx_path, "document_indices", "last entry must equal the sequence count",
                               last, header.sequence_count, previous)


def _check_tokens(bin_path: str, idx_path: str, header: _Header, vocab_size: int) -> None:
    count = os.path.getsize(bin_path) // header.dtype.itemsize
    for start, tokens in _iter_array(bin_path, 0, header.dtype, count):
        bad = numpy.flatnonzero((tokens < 0) | (tokens >= vocab_size))
        if len(bad):
            k = start + int(bad[0])
            sequence = _sequence_at(idx_path, header, k * header.dtype.itemsize)
            raise IndexFormatError(bin_path, "tokens", f"token id out of vocabulary (in sequence {sequence})",
                                   k, f"0 <= token < {vocab_size}", tokens[bad[0]].item())


def _sequence_at(idx_path: str, header: _Header, byte_offset: int) -> int:
    """Which sequence holds `byte_offset` in .bin (binary search touching a few index pages)."""
    pointers = numpy.memmap(idx_path, dtype=_POINTER, mode="r", offset=header.pointers_offset,
                            shape=(header.sequence_count,))
    return int(numpy.searchsorted(pointers, byte_offset, side="right")) - 1


# --------------------------------------------------------------------------------------------
# Merge


def merge(prefixes: Sequence[PathLike], out_prefix: PathLike) -> IndexStats:
    """Concatenate datasets, in order, into ``out_prefix`` without decoding tokens.

    The .bin files are stream-copied in chunks; lengths are copied; document indices are shifted by
    the sequences before each shard and pointers are recomputed from the lengths, which for a
    valid shard equals shifting its pointers by the bytes before it. Every input's index is
    validated first (not its tokens) and all must share one dtype. The result is byte-identical to
    writing all the documents with one IndexedWriter.
    """
    if not prefixes:
        raise ValueError("merge needs at least one input prefix")
    first = os.fspath(prefixes[0])
    dtype = _read_header(_idx_path(first)).dtype
    for prefix in prefixes[1:]:
        other = _read_header(_idx_path(prefix)).dtype
        if other != dtype:
            raise CorpusError(f"cannot merge {os.fspath(prefix)!r}: its dtype is {other}, "
                             f"but {first!r} (the first input) is {dtype}")
    for prefix in prefixes:
        validate(prefix)
    with IndexedWriter(out_prefix, dtype) as writer:
        for prefix in prefixes:
            writer._append_shard(prefix)
        return writer.finalize()
