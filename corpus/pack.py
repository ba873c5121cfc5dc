"""Greedy whole-sentence packing of one document into training samples.

A document arrives as its token stream plus the number of tokens in each sentence (sentences are
contiguous and cover the stream). It leaves as the fewest contiguous samples of at most
``seq_length`` tokens that never split a sentence.

Positions are counted in the *effective* stream ``[BOS] + tokens + [EOS]`` (BOS and EOS only when
configured), so the limit counts them: BOS belongs to the first sentence and EOS to the last, and
only the document's first sample carries BOS and only its last carries EOS, as CaMA did.

Why greedy is minimal: once every unit fits in a sample, filling each sample as far as it goes
keeps the k-th greedy cut at or beyond the k-th cut of any valid packing (induction on k), so no
packing finishes in fewer samples. ``tests/test_pack.py`` checks this against a brute-force dynamic
programme.

A sentence longer than the limit cannot be kept whole; it is cut at token boundaries into the fewest
near-equal parts (sizes differ by at most one), and those parts pack like any sentence.

``overlap=True`` reproduces CaMA's packing instead: after filling forward from a sentence, the
sample is extended backwards over preceding whole sentences while it still fits, so consecutive
samples repeat text. It produces the same number of samples with more tokens in total (the
repeats); the default packs every token exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PackConfig:
    seq_length: int = 1024
    min_tokens: int = 20
    overlap: bool = False
    add_bos: bool = True
    add_eos: bool = True

    def __post_init__(self) -> None:
        reserved = int(self.add_bos) + int(self.add_eos)
        if self.seq_length <= reserved:
            raise ValueError(f"seq_length must exceed {reserved} (room for BOS/EOS), got {self.seq_length}")
        if self.min_tokens < 0:
            raise ValueError(f"min_tokens must be >= 0, got {self.min_tokens}")


def unit_sizes(counts: np.ndarray, cfg: PackConfig) -> np.ndarray:
    """Sentence sizes in the effective stream, oversized sentences cut into near-equal parts."""
    return np.diff(_unit_bounds(np.cumsum(np.asarray(counts, dtype=np.int64)), cfg))


def _unit_bounds(ends: np.ndarray, cfg: PackConfig) -> np.ndarray:
    """``[0, end_1, …, end_k]`` of the units in the effective stream (BOS/EOS counted)."""
    bounds = np.empty(len(ends) + 1, dtype=np.int64)
    bounds[0] = 0
    bounds[1:] = ends
    bounds[1:] += int(cfg.add_bos)
    bounds[-1] += int(cfg.add_eos)
    sizes = np.diff(bounds)
    limit = cfg.seq_length
    if len(sizes) == 0 or sizes.max() <= limit:
        return bounds
    parts: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    for start, size in zip(bounds[:-1].tolist(), sizes.tolist()):
        if size <= limit:
            parts.append(np.array([start + size], dtype=np.int64))
            continue
        k = -(-size // limit)
        base, extra = divmod(size, k)
        parts.append(start + np.cumsum([base + 1] * extra + [base] * (k - extra), dtype=np.int64))
    return np.concatenate(parts)


def pack(counts: np.ndarray, cfg: PackConfig) -> np.ndarray:
    """Samples as an ``(n, 2)`` int64 array of ``[start, end)`` ranges in the effective stream.

    ``counts`` are sentence token counts (zeros allowed: a sentence whose only token straddles the
    next boundary). Samples shorter than ``cfg.min_tokens`` are dropped; the rest keep their order.
    """
    return pack_ends(np.cumsum(np.asarray(counts, dtype=np.int64)), cfg)


def pack_ends(ends: np.ndarray, cfg: PackConfig) -> np.ndarray:
    """:func:`pack` given cumulative sentence ends in tokens (the last is the document's length)."""
    limit = cfg.seq_length
    n_tokens = int(ends[-1]) if len(ends) else 0
    total = n_tokens + int(cfg.add_bos) + int(cfg.add_eos)
    if n_tokens == 0:
        return np.empty((0, 2), dtype=np.int64)
    if total <= limit:  # the common short document: one sample, no search
        ranges = [(0, total)]
    else:
        cum = _unit_bounds(ends, cfg)
        ranges = []
        start = 0  # index into cum
        last = len(cum) - 1
        while start < last:
            # Largest end with cum[end] - cum[start] <= limit; every unit fits, so end > start.
            end = int(np.searchsorted(cum, cum[start] + limit, side="right")) - 1
            first = int(np.searchsorted(cum, cum[end] - limit, side="left")) if cfg.overlap else start
            ranges.append((int(cum[first]), int(cum[end])))
            start = end
    out = np.asarray(ranges, dtype=np.int64)
    return out[(out[:, 1] - out[:, 0]) >= max(cfg.min_tokens, 1)]


def materialize(
    tokens: np.ndarray, ranges: np.ndarray, cfg: PackConfig, bos_id: int, eos_id: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """The samples' tokens back to back and their lengths, BOS/EOS inserted where they belong."""
    pieces = []
    if cfg.add_bos:
        pieces.append(np.array([bos_id], dtype=dtype))
    pieces.append(np.asarray(tokens, dtype=dtype))
    if cfg.add_eos:
        pieces.append(np.array([eos_id], dtype=dtype))
    stream = np.concatenate(pieces)
    lengths = (ranges[:, 1] - ranges[:, 0]).astype(np.int64)
    if len(ranges) == 0:
        return np.empty(0, dtype=dtype), lengths
    # Without overlap and with nothing dropped the samples tile the stream: no copy needed.
    if ranges[0, 0] == 0 and ranges[-1, 1] == len(stream) and np.array_equal(ranges[1:, 0], ranges[:-1, 1]):
        return stream, lengths
    return np.concatenate([stream[a:b] for a, b in ranges.tolist()]), lengths
