"""Vectorised shingle hashing and one-permutation MinHash signatures (numpy only).

Shingles
    * ``zh``  — character n-grams (n = ``zh_ngram``, 5) of the text with all whitespace removed;
      with ``use_jieba`` word n-grams (n = ``zh_word_ngram``) of jieba's segmentation instead.
    * ``en``  — word n-grams (n = ``en_ngram``, 5) of the lower-cased, whitespace-split text.
    * ``code`` — lines, stripped, empty ones dropped (n = ``code_ngram``, 1).
    A document with fewer tokens than n has one shingle: all its tokens. An empty document has none
    and gets the all-``EMPTY`` signature (callers leave it to exact dedup).

Hashing, with no Python loop per shingle
    The batch's text becomes one array of UTF-32 code points. A token is either one code point (zh
    characters) or a segment between separators (words, lines); a segment's hash is a polynomial
    ``Σ c_j P^(j-a)`` mod 2^64 taken from a prefix sum of ``c_j P^j`` times ``P^-a`` (P odd, so it
    has an inverse mod 2^64). An n-gram's hash is a polynomial over n consecutive token hashes
    (n shifted views), then XOR the seed and the MurmurHash3 64-bit finaliser (a bijection) — so
    every shingle gets one well-mixed uint64 ``h``.

One-permutation hashing (Li, Owen & Zhang 2012) with optimal densification (Shrivastava 2017)
    ``h mod k`` picks one of k = ``num_perm`` bins; a bin keeps the minimum ``h`` that falls in it
    (``np.minimum.at`` over ``doc * k + bin``). An empty bin i borrows the value of bin
    ``g(i, t) mod k`` for the first attempt t = 0, 1, … that lands on a non-empty bin, where g is a
    fixed seeded hash of (i, t) — the same sequence for every document, so two documents that share
    their non-empty bins fill their empty ones identically, and P[sig_a[i] == sig_b[i]] stays the
    Jaccard similarity. After ``_MAX_DENSIFY_TRIES`` attempts (only for documents with a handful of
    shingles) the next non-empty bin to the right, circularly, is used.

The signature is an ``(n, k)`` uint64 matrix; ``estimated_jaccard`` is the fraction of equal
entries. Values are full 64-bit, which is datasketch's ``affine64`` storage (uint64).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

M64 = (1 << 64) - 1
EMPTY = np.uint64(M64)          # value of an empty bin, and of every bin of an empty document
_P = 0x100000001B3              # FNV-64 prime: odd, so invertible mod 2^64
_P_INV = pow(_P, -1, 1 << 64)
_Q = 0x9E3779B97F4A7C15         # odd multiplier for n-grams over token hashes
_MAX_DENSIFY_TRIES = 64
_CHUNK_CHARS = 1 << 16          # code points hashed per numpy pass: its ~10 arrays stay in cache
                                # (4M, i.e. 32 MB arrays, ran 2x slower on fresh pages)

_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, elementwise, in place on a fresh uint64 copy."""
    return _fmix64_inplace(np.array(x, dtype=np.uint64, copy=True))


def _mix_int(v: int) -> int:
    return int(fmix64(np.array([v & M64], dtype=np.uint64))[0])


# ---------------------------------------------------------------------------------------------
# powers of P and P^-1, cached and grown as needed

_pow_cache: dict[str, np.ndarray] = {}


def _powers(n: int, inverse: bool) -> np.ndarray:
    key = "inv" if inverse else "fwd"
    arr = _pow_cache.get(key)
    if arr is None or len(arr) < n:
        size = max(n, 1 << 16, 0 if arr is None else 2 * len(arr))
        base = _P_INV if inverse else _P
        arr = np.full(size, base, dtype=np.uint64)
        arr[0] = 1
        with np.errstate(over="ignore"):
            arr = np.cumprod(arr, dtype=np.uint64)
        _pow_cache[key] = arr
    return arr[:n]


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def segment_hashes(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Polynomial hash of each code-point segment ``codes[starts[i]:ends[i]]`` (position-free)."""
    n = len(codes)
    pw = _powers(n, inverse=False)
    with np.errstate(over="ignore"):
        pref = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(codes.astype(np.uint64) * pw, dtype=np.uint64, out=pref[1:])
        h = (pref[ends] - pref[starts]) * _powers(n, inverse=True)[starts]  # starts < n
    return h


def _split_segments(codes: np.ndarray, sep: int) -> tuple[np.ndarray, np.ndarray]:
    """Segments of ``codes`` between single separators (input has no empty segments)."""
    pos = np.flatnonzero(codes == sep)
    starts = np.concatenate([[0], pos + 1]).astype(np.int64)
    ends = np.concatenate([pos, [len(codes)]]).astype(np.int64)
    return starts, ends


# ---------------------------------------------------------------------------------------------
# normalisation and tokens


def normalize_for_shingles(text: str, lang: str, use_jieba: bool = False) -> str:
    """The text that shingles are cut from (see the module docstring)."""
    if lang == "zh":
        if use_jieba:
            import jieba

            return " ".join(w for w in jieba.lcut("".join(text.split())) if w.strip())
        return "".join(text.split())
    if lang == "en":
        return " ".join(text.lower().split())
    if lang == "code":
        return "\n".join(s for s in (line.strip() for line in text.splitlines()) if s)
    raise ValueError(f"unknown lang {lang!r}: expected 'zh', 'en' or 'code'")


def _ngram_size(lang: str, cfg) -> int:
    if lang == "zh":
        return cfg.zh_word_ngram if cfg.use_jieba else cfg.zh_ngram
    if lang == "en":
        return cfg.en_ngram
    if lang == "code":
        return cfg.code_ngram
    raise ValueError(f"unknown lang {lang!r}: expected 'zh', 'en' or 'code'")


# str.split()'s whitespace, as a lookup table over code points < 0x3001
_WS_TABLE = np.zeros(0x3001, dtype=bool)
_WS_TABLE[[ord(c) for c in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"]] = True
_WS_TABLE[0x2000:0x200B] = True


def _prep(text: str, lang: str, cfg) -> str:
    """What _tokens takes: for en only lower-casing (words are split vectorised), else the normal form."""
    if lang == "en":
        return text.lower()
    return normalize_for_shingles(text, lang, cfg.use_jieba)


def _en_tokens(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Word hashes of lower-cased texts, split on whitespace with numpy (== str.split())."""
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    codes = _codes(" ".join(texts))
    if len(codes) == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(len(texts), dtype=np.int64)
    ws = np.zeros(len(codes), dtype=bool)
    low = codes < len(_WS_TABLE)
    ws[low] = _WS_TABLE[codes[low]]
    word = ~ws
    edge = np.diff(word.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edge == 1).astype(np.int64)
    ends = np.flatnonzero(edge == -1).astype(np.int64)
    h = segment_hashes(codes, starts, ends)
    doc_start = np.cumsum(lens + 1) - (lens + 1)
    doc_of = np.searchsorted(doc_start, starts, side="right") - 1
    counts = np.bincount(doc_of, minlength=len(texts)).astype(np.int64)
    return h, counts


def _tokens(norm: list[str], lang: str, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Token hashes of all texts (as given by _prep) concatenated, and the token count per text."""
    if lang == "en":
        return _en_tokens(norm)
    if lang == "zh" and not cfg.use_jieba:
        codes = _codes("".join(norm))
        counts = np.fromiter((len(t) for t in norm), dtype=np.int64, count=len(norm))
        return codes.astype(np.uint64), counts
    sep = "\n" if lang == "code" else " "
    # one separator between texts too; empty texts contribute nothing
    nonempty = [t for t in norm if t]
    if not nonempty:
        return np.zeros(0, dtype=np.uint64), np.zeros(len(norm), dtype=np.int64)
    codes = _codes(sep.join(nonempty))
    starts, ends = _split_segments(codes, ord(sep))
    h = segment_hashes(codes, starts, ends)
    counts = np.fromiter((t.count(sep) + 1 if t else 0 for t in norm), dtype=np.int64, count=len(norm))
    return h, counts


def _fmix64_inplace(x: np.ndarray) -> np.ndarray:
    """fmix64 on a uint64 array the caller owns (no copy: the shingle arrays are the largest here)."""
    x ^= x >> _S33
    x *= _C1
    x ^= x >> _S33
    x *= _C2
    x ^= x >> _S33
    return x


def _ngrams(tok: np.ndarray, counts: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(doc index, mixed shingle hash) for every n-gram inside one document."""
    ndoc = len(counts)
    doc_end = np.cumsum(counts)
    doc_start = doc_end - counts
    m = len(tok)
    seed_mix = np.uint64(_mix_int(seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019))
    out_h, out_d = [], []
    if m >= n:
        L = m - n + 1
        with np.errstate(over="ignore"):
            h = tok[:L].copy()
            q = np.uint64(_Q)
            for j in range(1, n):
                h *= q
                h += tok[j:j + L]
        # An n-gram starting at i is inside its document unless i is among the last n - 1 positions
        # of it: clear those few (at most n - 1 per document) instead of comparing every position
        # with its document's end, and repeat the document index only over the n-grams kept.
        per_doc = np.maximum(counts - (n - 1), 0)
        if n > 1:
            valid = np.ones(L, dtype=bool)
            for j in range(1, n):
                p = doc_end - j
                p = p[(p >= doc_start) & (p < L)]
                valid[p] = False
            h = h[valid]
        out_h.append(h)
        out_d.append(np.repeat(np.arange(ndoc, dtype=np.int64), per_doc))
    # documents shorter than n: one shingle of all their tokens
    short = np.flatnonzero((counts > 0) & (counts < n))
    if len(short):
        hs = np.empty(len(short), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k, d in enumerate(short.tolist()):
                v = np.uint64(0)
                for t in tok[doc_start[d]:doc_end[d]]:
                    v = v * np.uint64(_Q) + t
                hs[k] = v
        out_h.append(hs)
        out_d.append(short.astype(np.int64))
    if not out_h:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    if len(out_h) == 1:
        h, doc = out_h[0], out_d[0]   # a fresh array either way (tok[:L].copy() or its masked copy)
    else:
        h, doc = np.concatenate(out_h), np.concatenate(out_d)
    h ^= seed_mix
    return doc, _fmix64_inplace(h)


def shingle_hashes(text: str, lang: str, cfg) -> np.ndarray:
    """The sorted unique 64-bit shingle hashes of one text (the set whose Jaccard MinHash estimates)."""
    norm = [_prep(text, lang, cfg)]
    tok, counts = _tokens(norm, lang, cfg)
    _, h = _ngrams(tok, counts, _ngram_size(lang, cfg), cfg.seed)
    return np.unique(h)


def true_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique hash arrays."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


# ---------------------------------------------------------------------------------------------
# signatures


def _densify_plan(k: int, seed: int) -> np.ndarray:
    """g(i, t) mod k for bins i and attempts t: shape (tries, k), the same for every document."""
    i = np.arange(k, dtype=np.uint64)[None, :]
    t = np.arange(_MAX_DENSIFY_TRIES, dtype=np.uint64)[:, None]
    with np.errstate(over="ignore"):
        x = (i * np.uint64(0x9E3779B97F4A7C15)) ^ (t * np.uint64(0xBF58476D1CE4E5B9)) ^ np.uint64(
            _mix_int(seed + 0x5851F42D4C957F2D))
    return (fmix64(x) % np.uint64(k)).astype(np.int64)


def densify(sig: np.ndarray, seed: int) -> np.ndarray:
    """Fill empty bins (== EMPTY) of each row from non-empty ones, deterministically (in place)."""
    n, k = sig.shape
    empty = sig == EMPTY
    has_any = ~empty.all(axis=1)
    todo = empty & has_any[:, None]
    if not todo.any():
        return sig
    orig = sig.copy()
    plan = _densify_plan(k, seed)
    rows, cols = np.nonzero(todo)
    for t in range(_MAX_DENSIFY_TRIES):
        src = plan[t, cols]
        ok = ~empty[rows, src]
        sig[rows[ok], cols[ok]] = orig[rows[ok], src[ok]]
        rows, cols = rows[~ok], cols[~ok]
        if len(rows) == 0:
            return sig
    # fallback: the next non-empty bin to the right, circularly (only documents with very few
    # shingles get here, but then nearly every bin does: a search over the flat non-empty bins
    # instead of a Python loop per bin, which took seconds on batches of one-shingle documents)
    ne_flat = np.flatnonzero(~empty.reshape(-1))          # sorted row * k + col
    idx = np.searchsorted(ne_flat, rows * k + cols, side="right")
    nxt = ne_flat[np.minimum(idx, len(ne_flat) - 1)]
    same_row = (idx < len(ne_flat)) & (nxt // k == rows)
    first = np.argmax(~empty[rows], axis=1)                # the wrap-around: the row's first non-empty bin
    sig[rows, cols] = orig[rows, np.where(same_row, nxt % k, first)]
    return sig


def signatures(texts: Sequence[str], lang: str, cfg) -> np.ndarray:
    """MinHash signatures, shape (len(texts), cfg.num_perm), uint64; vectorised across the batch."""
    k = int(cfg.num_perm)
    n_total = len(texts)
    out = np.full((n_total, k), EMPTY, dtype=np.uint64)
    ngram = _ngram_size(lang, cfg)
    i = 0
    while i < n_total:
        # a chunk of about _CHUNK_CHARS code points (at least one text)
        j, size = i, 0
        norm = []
        while j < n_total and (j == i or size < _CHUNK_CHARS):
            t = _prep(texts[j], lang, cfg)
            norm.append(t)
            size += len(t)
            j += 1
        tok, counts = _tokens(norm, lang, cfg)
        doc, h = _ngrams(tok, counts, ngram, cfg.seed)
        flat = out[i:j].reshape(-1)
        # h mod k is h & (k - 1) for a power of two (the default 128), which numpy does much faster
        bins = h & np.uint64(k - 1) if k & (k - 1) == 0 else h % np.uint64(k)
        key = bins.view(np.int64)   # < k, so the same value as int64
        key += doc * k
        np.minimum.at(flat, key, h)
        densify(out[i:j], cfg.seed)
        i = j
    return out


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal entries, row by row (works on single signatures too)."""
    return np.mean(sig_a == sig_b, axis=-1)


__all__ = [
    "EMPTY", "fmix64", "segment_hashes", "normalize_for_shingles", "shingle_hashes", "true_jaccard",
    "densify", "signatures", "estimated_jaccard",
]
