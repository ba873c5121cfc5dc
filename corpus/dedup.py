"""Exact and MinHash near-duplicate removal, built to scale out over processes or Slurm array tasks.

Exact: ``exact_key(text, lang)`` is a 16-byte BLAKE2b of the NFKC-normalised text with whitespace
collapsed (lower-cased for ``en``; for ``code`` only trailing whitespace per line is dropped). The
first document with a key is kept.

Near: MinHash signatures from :mod:`corpus.minhash` (vectorised shingle hashing + one-permutation
hashing + densification, 128 uint64 values per document), LSH banding, verification of candidate
pairs by estimated Jaccard, union-find clustering. Each cluster keeps its smallest document index
(the first in input order); every other member gets ``duplicate_of[i] = kept index``.

Banding: b bands × r rows (``bands``/``rows`` in :class:`DedupConfig`; default 16 × 8 for
threshold 0.8: P[candidate] = 1-(1-J^8)^16 is 0.9999 at J = 0.9 and 0.95 at J = 0.8, and the false
candidates it lets in at J ≈ 0.6–0.75 are removed by verification: estimated J ≥ threshold +
``verify_margin`` (0.03, about one standard error of the 128-value estimate at J = 0.8). The margin
buys precision when many pairs sit just under the threshold (the estimate is unbiased but has
sd ≈ 0.032 there, so with no margin ~40 % of pairs at true J 0.78 pass); its price is that pairs
at true J in [0.8, 0.86) are found only partly — pairs at J ≥ 0.9 still are (bench: recall 1.0).
datasketch's own optimum for 0.8/128 is 9 × 13, which finds only 93 % of pairs at J = 0.9.
The same signatures can be fed to ``datasketch.MinHashLSH`` through :func:`lean_minhash` /
:func:`datasketch_lsh` (``LeanMinHash(seed=, hashvalues=, scheme="affine64")``); with
``params=(b, r)`` equal to ours it returns exactly the candidate pairs of :func:`candidate_pairs`
over all bands (tests check this).

Multi-task flow (each step is a plain function; ``corpus.pipeline`` runs them, hpc/ only decides
which array task runs which):

1. **prepare** — a task streams its shard's rows to disk through :class:`ShardWriter`: MinHash
   signatures (uint64 (n, 128)), the 16-byte exact keys, each document's read position.
2. **bands** — :class:`ShardGroup` sees the shards of a source (or of every source, for a global
   dedup) as one memory-mapped table in *global order* (source in config order, then read position);
   :meth:`ShardGroup.exact_unique` keeps the first row of each exact key; band task j takes its slice
   (j0, j1) of the b bands (``split_bands(b, ntasks)``), reads only those columns
   (:func:`band_columns`) and emits its candidate pairs (:func:`group_band_pairs`). Bands are
   independent, so the union over tasks equals the one-shot :func:`candidate_pairs`.
3. **cluster** — :func:`group_representatives`: the union of the pair files, ``verify_pairs``
   (estimated Jaccard from the memory-mapped signatures), union-find → each row's representative.
   Deterministic: it depends only on the global order of rows, never on the number of shards or
   tasks, so the kept document of a cluster is always the first in global order.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from common.atomic import atomic_open, temp_path

from .minhash import EMPTY, estimated_jaccard, fmix64, signatures

__all__ = [
    "DedupConfig", "exact_key", "signatures", "band_params", "split_bands", "band_keys", "candidate_pairs",
    "band_columns", "verify_pairs", "cluster", "lean_minhash", "datasketch_lsh", "datasketch_pairs",
    "signature_params", "ShardWriter", "ShardGroup", "group_band_pairs", "group_representatives",
]


@dataclass
class DedupConfig:
    threshold: float = 0.8          # Jaccard at which two documents are near-duplicates
    num_perm: int = 128             # signature length k (one-permutation bins)
    zh_ngram: int = 5               # character n-grams for zh
    zh_word_ngram: int = 3          # word n-grams for zh when use_jieba
    en_ngram: int = 5               # word n-grams for en
    code_ngram: int = 1             # line n-grams for code
    use_jieba: bool = False         # zh shingles from jieba words (~0.7 MB/s per core: slow)
    seed: int = 1
    bands: int | None = None        # LSH bands b; None → 16 (for num_perm 128) or num_perm // 8
    rows: int | None = None         # rows per band r; None → num_perm // bands
    verify: bool = True             # keep only candidate pairs with estimated J ≥ threshold + margin
    verify_margin: float = 0.03     # ≈ 1 standard error of the estimate at J = 0.8, k = 128
    max_bucket_span: int = 64       # pairs within this distance in a sorted bucket (d=1 keeps links)
    exact: bool = True              # run exact dedup first
    scope: str = "source"           # corpus.pipeline: "source" (each on its own) or "global" (all
                                    # sources clustered together; the earliest source in config order wins)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold: must be in (0, 1], got {self.threshold}")
        if self.num_perm < 1:
            raise ValueError(f"num_perm: must be ≥ 1, got {self.num_perm}")
        for name in ("zh_ngram", "zh_word_ngram", "en_ngram", "code_ngram", "max_bucket_span"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be ≥ 1, got {getattr(self, name)}")
        if self.scope not in ("source", "global"):
            raise ValueError(f"scope: must be 'source' or 'global', got {self.scope!r}")
        b, r = band_params(self)
        if b * r > self.num_perm:
            raise ValueError(f"bands × rows = {b}×{r} exceeds num_perm {self.num_perm}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "<dedup>") -> "DedupConfig":
        """Build from a YAML mapping; unknown keys fail naming the key."""
        from common.config import from_dict

        return from_dict(cls, values, where)


# ---------------------------------------------------------------------------------------------
# exact

_TRAIL = re.compile(r"[ \t\r\f\v]+$", re.M)


def _nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, ~10x faster on Chinese (normalize ran at ~12 MB/s).

    Chinese text is rarely NFKC only because of fullwidth punctuation (，：！ U+FF01–FF5E) and the
    ideographic space; their compatibility decompositions are single ASCII characters, and NFKC of a
    string equals NFKC of the string with any character replaced by its decomposition. So map those
    with numpy, and call normalize only if what is left still is not NFKC (``is_normalized`` is fast).
    """
    if unicodedata.is_normalized("NFKC", text):
        return text
    try:
        c = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    except UnicodeEncodeError:   # lone surrogates: let normalize deal with them
        return unicodedata.normalize("NFKC", text)
    full = (c >= 0xFF01) & (c <= 0xFF5E)
    ideo = c == 0x3000
    if full.any() or ideo.any():
        c = c.copy()
        c[full] -= 0xFEE0
        c[ideo] = 0x20
        text = c.tobytes().decode("utf-32-le")
        if unicodedata.is_normalized("NFKC", text):
            return text
    return unicodedata.normalize("NFKC", text)


def exact_key(text: str, lang: str) -> bytes:
    """16-byte BLAKE2b of the normalised text (see module docstring)."""
    t = _nfkc(text)
    if lang == "code":
        t = _TRAIL.sub("", t.replace("\r\n", "\n")).strip("\n")
    else:
        t = " ".join(t.split())   # == re.sub(r"\s+", " ", t).strip(): the same whitespace, 5x faster
        if lang == "en":
            t = t.lower()
    return hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest()


# ---------------------------------------------------------------------------------------------
# banding


def band_params(cfg: DedupConfig) -> tuple[int, int]:
    b, r = cfg.bands, cfg.rows
    if b is None and r is None:
        r = 8 if cfg.num_perm >= 8 else 1
        b = cfg.num_perm // r
    elif b is None:
        b = cfg.num_perm // r
    elif r is None:
        r = cfg.num_perm // b
    if b < 1 or r < 1:
        raise ValueError(f"bands/rows: need ≥ 1 each, got bands={b} rows={r}")
    return int(b), int(r)


def split_bands(b: int, ntasks: int) -> list[tuple[int, int]]:
    """Contiguous band ranges [j0, j1) for ntasks tasks (some may be empty if ntasks > b)."""
    edges = [round(i * b / ntasks) for i in range(ntasks + 1)]
    return [(edges[i], edges[i + 1]) for i in range(ntasks)]


def band_columns(band_range: tuple[int, int], cfg: DedupConfig) -> slice:
    """The signature columns bands [j0, j1) read (all a band task loads: :func:`group_band_pairs`)."""
    _, r = band_params(cfg)
    return slice(band_range[0] * r, band_range[1] * r)


def band_keys(sigs: np.ndarray, band_range: tuple[int, int], cfg: DedupConfig,
              col_offset: int = 0) -> np.ndarray:
    """(n, j1-j0) uint64 bucket keys: a hash of each band's r values (and its band index).

    ``sigs`` holds full signatures, or only columns from ``col_offset`` on (a band task's slice).
    """
    b, r = band_params(cfg)
    j0, j1 = band_range
    if not 0 <= j0 <= j1 <= b:
        raise ValueError(f"band_range {band_range} outside [0, {b}]")
    n = sigs.shape[0]
    out = np.empty((n, j1 - j0), dtype=np.uint64)
    q = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for c, j in enumerate(range(j0, j1)):
            block = np.asarray(sigs[:, j * r - col_offset:(j + 1) * r - col_offset], dtype=np.uint64)
            h = np.full(n, np.uint64(j + 1) * np.uint64(0xD6E8FEB86659FD93), dtype=np.uint64)
            for col in range(r):
                h = fmix64(h * q + block[:, col])
            out[:, c] = h
    return out


def candidate_pairs(sigs: np.ndarray, band_range: tuple[int, int] | None, cfg: DedupConfig,
                    col_offset: int = 0, live: np.ndarray | None = None) -> np.ndarray:
    """Sorted unique (i, j), i < j, row pairs sharing a bucket in some band of ``band_range``.

    Within a bucket every pair up to ``max_bucket_span`` apart (in row order) is emitted: that is
    every pair for buckets of up to span+1 documents, and always a chain, so clustering sees the
    bucket connected. Rows whose signature is all-EMPTY (empty documents) never pair; ``live`` (one
    bool per row) says which rows may pair when ``sigs`` holds only part of a band range.
    """
    b, _ = band_params(cfg)
    if band_range is None:
        band_range = (0, b)
    keys = band_keys(sigs, band_range, cfg, col_offset)
    n = keys.shape[0]
    if live is None:
        live = ~(np.asarray(sigs[:, 0]) == EMPTY) if n else np.zeros(0, bool)
    rows_live = np.flatnonzero(live).astype(np.int64)
    found = []
    for c in range(keys.shape[1]):
        k = keys[rows_live, c]
        order = np.lexsort((rows_live, k))  # by key, then row: deterministic
        ks, rs = k[order], rows_live[order]
        for d in range(1, cfg.max_bucket_span + 1):
            if len(ks) <= d:
                break
            same = ks[d:] == ks[:-d]
            if not same.any():
                break
            found.append(np.stack([rs[:-d][same], rs[d:][same]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    pairs.sort(axis=1)
    return np.unique(pairs, axis=0)


def verify_pairs(sigs: np.ndarray, pairs: np.ndarray, threshold: float, chunk: int = 65536) -> np.ndarray:
    """The pairs whose estimated Jaccard is ≥ threshold (signatures may be memory-mapped)."""
    keep = np.zeros(len(pairs), dtype=bool)
    for s in range(0, len(pairs), chunk):
        p = pairs[s:s + chunk]
        est = estimated_jaccard(np.asarray(sigs[p[:, 0]]), np.asarray(sigs[p[:, 1]]))
        keep[s:s + chunk] = est >= threshold - 1e-12
    return pairs[keep]


def cluster(n: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find; returns rep[i] = the smallest row index in i's cluster."""
    p = list(range(n))  # a list: numpy scalar access is slow in this loop

    def find(x: int) -> int:
        root = x
        while p[root] != root:
            root = p[root]
        while p[x] != root:
            p[x], x = root, p[x]
        return root

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            if ra < rb:
                p[rb] = ra
            else:
                p[ra] = rb
    return np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)


# ---------------------------------------------------------------------------------------------
# datasketch


def lean_minhash(sig: np.ndarray, cfg: DedupConfig):
    """A datasketch LeanMinHash carrying our hash values (affine64: uint64 storage, seed=cfg.seed)."""
    from datasketch import LeanMinHash

    return LeanMinHash(seed=cfg.seed, hashvalues=np.asarray(sig, dtype=np.uint64), scheme="affine64")


def datasketch_lsh(sigs: np.ndarray, cfg: DedupConfig, params: tuple[int, int] | None = None):
    """A ``MinHashLSH`` holding every non-empty row (keys are row indices).

    ``params=None`` uses our (b, r) so results match :func:`candidate_pairs`; pass datasketch's
    own optimum with ``params=False`` (threshold only).
    """
    from datasketch import MinHashLSH

    kw: dict[str, Any] = {"threshold": cfg.threshold, "num_perm": cfg.num_perm}
    if params is None:
        kw["params"] = band_params(cfg)
    elif params:
        kw["params"] = tuple(params)
    lsh = MinHashLSH(**kw)
    with lsh.insertion_session() as session:
        for i in range(sigs.shape[0]):
            if sigs[i, 0] != EMPTY:
                session.insert(i, lean_minhash(sigs[i], cfg), check_duplication=False)
    return lsh


def datasketch_pairs(lsh, sigs: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    out = []
    for i in range(sigs.shape[0]):
        if sigs[i, 0] == EMPTY:
            continue
        for j in lsh.query(lean_minhash(sigs[i], cfg)):
            if j != i:
                out.append((min(i, j), max(i, j)))
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.asarray(out, dtype=np.int64), axis=0)


# ---------------------------------------------------------------------------------------------
# shards on disk


def signature_params(cfg: DedupConfig) -> dict[str, Any]:
    """The settings a signature depends on (a signature shard stays valid while these do)."""
    return {k: getattr(cfg, k) for k in ("num_perm", "zh_ngram", "zh_word_ngram", "en_ngram", "code_ngram",
                                         "use_jieba", "seed")}


class ShardWriter:
    """Streams one prepare shard's dedup rows to disk: ``prefix.npy`` (uint64 (n, k) signatures),
    ``prefix.keys.npy`` (uint64 (n, 2): the 16-byte exact keys) and ``prefix.pos.npy`` (int64 (n,):
    each document's position in its source's read order).

    Rows are appended to raw temporary files, so memory holds one batch, not the shard; ``close``
    writes each ``.npy`` (header, then the raw rows copied in chunks) under a temporary name and
    renames it. Until then nothing final exists; ``abort`` removes the temporaries.
    """

    _PARTS = (("", np.uint64), (".keys", np.uint64), (".pos", np.int64))

    def __init__(self, prefix: str | os.PathLike, num_perm: int) -> None:
        self.prefix = Path(prefix)
        self.widths = (num_perm, 2, None)
        self.n = 0
        self._raw = [temp_path(self._name(part, ".raw")) for part, _ in self._PARTS]
        self._files = [open(p, "wb") for p in self._raw]

    def _name(self, part: str, suffix: str) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}{part}.npy{suffix}")

    def add(self, sigs: np.ndarray, keys: Sequence[bytes], pos: Sequence[int]) -> None:
        k = np.frombuffer(b"".join(keys), dtype="<u8").reshape(-1, 2) if len(keys) else np.zeros((0, 2), "<u8")
        arrays = (np.ascontiguousarray(sigs, dtype="<u8"), k, np.asarray(pos, dtype="<i8"))
        if not len(arrays[0]) == len(k) == len(arrays[2]):
            raise ValueError("ShardWriter.add: signatures, keys and positions differ in length")
        for f, a in zip(self._files, arrays):
            f.write(a.tobytes())
        self.n += len(k)

    def close(self) -> None:
        for f in self._files:
            f.close()
        for (part, dtype), raw, width in zip(self._PARTS, self._raw, self.widths):
            shape = (self.n,) if width is None else (self.n, width)
            with atomic_open(self._name(part, ""), "wb") as out, open(raw, "rb") as src:
                np.lib.format.write_array_header_1_0(
                    out, {"descr": np.dtype(dtype).newbyteorder("<").str, "fortran_order": False, "shape": shape})
                shutil.copyfileobj(src, out, 1 << 22)
            os.unlink(raw)

    def abort(self) -> None:
        for f in self._files:
            f.close()
        for raw in self._raw:
            Path(raw).unlink(missing_ok=True)


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:   # an empty shard: there is nothing to map
        return np.load(path, allow_pickle=False)


class ShardGroup:
    """The prepare shards of one dedup group (a source, or every source for a global dedup) seen as
    one table of rows in *global order*: sources in the order given, and within a source by read
    position — whatever the number of shards and however records were dealt out to them.

    ``sources`` is a list of shard-prefix lists, one per source. Signatures stay memory-mapped;
    what is read into memory is positions and exact keys (24 bytes a row) and, for a band task,
    the columns of its bands.
    """

    def __init__(self, sources: Sequence[Sequence[str | os.PathLike]]) -> None:
        self.sigs: list[np.ndarray] = []
        self.shard_source: list[int] = []
        order_parts: list[np.ndarray] = []
        self.source_rows: list[tuple[int, int]] = []   # [start, end) of each source in global rows
        start = 0   # concatenated (shard-major) index of the next shard's first row
        row = 0
        for s, prefixes in enumerate(sources):
            pos_parts = []
            base = start
            for prefix in prefixes:
                prefix = Path(prefix)
                sig = _load(prefix.with_name(prefix.name + ".npy"))
                self.sigs.append(sig)
                self.shard_source.append(s)
                pos_parts.append(np.asarray(_load(prefix.with_name(prefix.name + ".pos.npy")), dtype=np.int64))
                start += len(sig)
            pos = np.concatenate(pos_parts) if pos_parts else np.zeros(0, np.int64)
            order_parts.append(base + np.argsort(pos, kind="stable"))
            self.source_rows.append((row, row + len(pos)))
            row += len(pos)
        self._prefixes = [Path(p) for prefixes in sources for p in prefixes]
        self.order = np.concatenate(order_parts) if order_parts else np.zeros(0, np.int64)  # row → concat index
        self.starts = np.cumsum([0] + [len(s) for s in self.sigs])                            # shard → concat start
        self.n = int(self.starts[-1])

    def exact_unique(self) -> np.ndarray:
        """Global rows (ascending) that are the first with their exact key."""
        keys = np.concatenate([np.asarray(_load(p.with_name(p.name + ".keys.npy"))) for p in self._prefixes]) \
            if self._prefixes else np.zeros((0, 2), np.uint64)
        keys = keys[self.order]
        rows = np.arange(self.n, dtype=np.int64)
        by_key = np.lexsort((rows, keys[:, 1], keys[:, 0]))   # by key, then row: the first copy leads
        k = keys[by_key]
        first = np.ones(self.n, dtype=bool)
        first[1:] = (k[1:] != k[:-1]).any(axis=1)
        return np.sort(by_key[first])

    def gather(self, rows: np.ndarray, columns: slice = slice(None), chunk: int = 65536) -> np.ndarray:
        """Signature columns of the given global rows, in that order (read from the memory maps in
        chunks, so a temporary never exceeds ``chunk`` full rows)."""
        concat = self.order[np.asarray(rows, dtype=np.int64)]
        k = self.sigs[0].shape[1] if self.sigs else 0
        out = np.empty((len(concat), len(range(*columns.indices(k)))), dtype=np.uint64)
        for c in range(0, len(concat), chunk):
            part = concat[c:c + chunk]
            shard = np.searchsorted(self.starts, part, side="right") - 1
            for s in np.unique(shard).tolist():
                sel = np.flatnonzero(shard == s)
                # columns first (a view of the map), then rows: only the wanted columns are copied
                out[c + sel] = self.sigs[s][:, columns][part[sel] - self.starts[s]]
        return out

    def view(self, rows: np.ndarray) -> "_RowView":
        return _RowView(self, rows)

    def concat_index(self, rows: np.ndarray) -> np.ndarray:
        """Where global rows sit in the shard-major concatenation (shard s: starts[s] …)."""
        return self.order[np.asarray(rows, dtype=np.int64)]


class _RowView:
    """``view[i]`` = signatures of rows[i]: what :func:`verify_pairs` indexes, without loading all rows."""

    def __init__(self, group: ShardGroup, rows: np.ndarray) -> None:
        self.group, self.rows = group, rows

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return self.group.gather(self.rows[np.asarray(idx)])


def group_band_pairs(group: ShardGroup, uniq: np.ndarray, band_range: tuple[int, int], cfg: DedupConfig) -> np.ndarray:
    """One band task: candidate pairs (indices into ``uniq``) from bands [j0, j1), reading only their columns."""
    if band_range[1] <= band_range[0] or len(uniq) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    cols = band_columns(band_range, cfg)
    _, r = band_params(cfg)
    # One band's r columns in memory at a time, not the whole range's: the near-dup state of a band
    # task stays ~8 r bytes per document (it was 8 r x bands, e.g. 1 KB: RSS grew with the input).
    # Bands are independent and the pairs are merged with the same sort + unique, so the result is
    # the one-shot candidate_pairs'; which rows are live is read from the range's first column, as
    # candidate_pairs reads it from the slice it is given.
    live = group.gather(uniq, slice(cols.start, cols.start + 1))[:, 0] != EMPTY
    parts = []
    for j in range(*band_range):
        band = slice(j * r, (j + 1) * r)
        p = candidate_pairs(group.gather(uniq, band), (j, j + 1), cfg, col_offset=band.start, live=live)
        if len(p):
            parts.append(p)
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(parts), axis=0)


def group_representatives(group: ShardGroup, uniq: np.ndarray, pair_parts: Sequence[np.ndarray],
                          cfg: DedupConfig) -> np.ndarray:
    """The clustering step: rep[i] = the first (smallest) index into ``uniq`` of i's cluster."""
    parts = [p for p in pair_parts if len(p)]
    pairs = np.unique(np.concatenate(parts), axis=0) if parts else np.zeros((0, 2), np.int64)
    if cfg.verify and len(pairs):
        pairs = verify_pairs(group.view(uniq), pairs, min(1.0, cfg.threshold + cfg.verify_margin))
    return cluster(len(uniq), pairs)
