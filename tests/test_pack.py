"""Greedy whole-sentence packing: minimality against a brute-force DP, and the sample rules."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus.pack import PackConfig, materialize, pack, unit_sizes

counts_st = st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=12)
limits_st = st.integers(min_value=3, max_value=48)


def fewest_samples(units: tuple[int, ...], limit: int) -> int:
    """Brute force: the fewest contiguous groups of units with sums <= limit (DP over split points)."""

    @functools.lru_cache(maxsize=None)
    def best(i: int) -> float:
        if i == len(units):
            return 0
        out, total = float("inf"), 0
        for j in range(i, len(units)):
            total += units[j]
            if total > limit:
                break
            out = min(out, 1 + best(j + 1))
        return out

    return int(best(0))


def sentence_cuts(counts: list[int], cfg: PackConfig) -> set[int]:
    eff = np.array(counts, dtype=np.int64)
    eff[0] += cfg.add_bos
    eff[-1] += cfg.add_eos
    return set(np.concatenate(([0], np.cumsum(eff))).tolist())


@settings(max_examples=300, deadline=None)
@given(counts=counts_st, limit=limits_st, bos=st.booleans(), eos=st.booleans())
def test_greedy_is_minimal_and_respects_sentences(counts, limit, bos, eos):
    if limit <= bos + eos:
        return
    cfg = PackConfig(seq_length=limit, min_tokens=0, add_bos=bos, add_eos=eos)
    ranges = pack(np.array(counts), cfg)
    units = unit_sizes(np.array(counts), cfg)
    total = int(units.sum())
    if sum(counts) == 0:  # no tokens: no sample, not even a lone BOS/EOS
        assert len(ranges) == 0
        return
    assert len(ranges) == fewest_samples(tuple(int(u) for u in units), limit)
    # Contiguous tiling of the effective stream, each sample within the limit.
    assert ranges[0, 0] == 0 and ranges[-1, 1] == total
    assert np.array_equal(ranges[1:, 0], ranges[:-1, 1])
    assert ((ranges[:, 1] - ranges[:, 0]) <= limit).all()
    # Every cut is a sentence boundary unless it lies inside a sentence too long for any sample.
    eff = np.array(counts, dtype=np.int64)
    eff[0] += bos
    eff[-1] += eos
    ends = np.cumsum(eff)
    starts = ends - eff
    allowed = sentence_cuts(counts, cfg)
    for cut in ranges[1:, 0].tolist():
        if cut in allowed:
            continue
        inside = [i for i in range(len(eff)) if starts[i] < cut < ends[i]]
        assert inside and eff[inside[0]] > limit, (cut, counts)


@settings(max_examples=200, deadline=None)
@given(counts=counts_st, limit=limits_st)
def test_overlap_mode_matches_cama(counts, limit):
    cfg = PackConfig(seq_length=limit, min_tokens=0, overlap=True, add_bos=False, add_eos=False)
    plain = pack(np.array(counts), PackConfig(seq_length=limit, min_tokens=0, add_bos=False, add_eos=False))
    ranges = pack(np.array(counts), cfg)
    # Same forward steps, so the same number of samples; each ends where the plain one ends.
    assert len(ranges) == len(plain)
    assert np.array_equal(ranges[:, 1], plain[:, 1])
    assert (ranges[:, 0] <= plain[:, 0]).all()
    assert ((ranges[:, 1] - ranges[:, 0]) <= limit).all()
    # Extended backwards as far as whole units allow: one more unit would not fit.
    units = unit_sizes(np.array(counts), cfg)
    cum = np.concatenate(([0], np.cumsum(units)))
    for a, b in ranges.tolist():
        i = int(np.searchsorted(cum, a))
        assert cum[i] == a
        if i > 0:
            assert b - cum[i - 1] > limit


def test_overlap_repeats_preceding_sentences():
    # Sentences of 3 tokens, limit 10: the first sample takes three (9); the second fills forward
    # with the last two (6) and then reaches back one sentence, repeating it.
    cfg = PackConfig(seq_length=10, min_tokens=0, overlap=True, add_bos=False, add_eos=False)
    assert pack(np.array([3, 3, 3, 3, 3]), cfg).tolist() == [[0, 9], [6, 15]]
    plain = PackConfig(seq_length=10, min_tokens=0, add_bos=False, add_eos=False)
    assert pack(np.array([3, 3, 3, 3, 3]), plain).tolist() == [[0, 9], [9, 15]]


def test_oversized_sentence_cut_into_near_equal_parts():
    cfg = PackConfig(seq_length=10, min_tokens=0, add_bos=False, add_eos=False)
    assert unit_sizes(np.array([3, 25, 2]), cfg).tolist() == [3, 9, 8, 8, 2]
    ranges = pack(np.array([3, 25, 2]), cfg)
    assert (ranges[:, 1] - ranges[:, 0]).tolist() == [3, 9, 8, 10]


def test_bos_eos_count_against_the_limit():
    cfg = PackConfig(seq_length=10, min_tokens=0)
    # 4 + 5 = 9 tokens fit in 10 without BOS/EOS, but not with them: two samples.
    ranges = pack(np.array([4, 5]), cfg)
    assert (ranges[:, 1] - ranges[:, 0]).tolist() == [5, 6]
    tokens, lengths = materialize(np.arange(10, 19), ranges, cfg, bos_id=1, eos_id=2, dtype=np.uint16)
    assert lengths.tolist() == [5, 6]
    assert tokens.tolist() == [1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 2]


def test_short_samples_dropped():
    cfg = PackConfig(seq_length=10, min_tokens=5, add_bos=False, add_eos=False)
    ranges = pack(np.array([8, 3]), cfg)
    assert ranges.tolist() == [[0, 8]]
    tokens, lengths = materialize(np.arange(100, 111), ranges, cfg, 1, 2, np.uint16)
    assert tokens.tolist() == list(range(100, 108)) and lengths.tolist() == [8]


def test_no_bos_eos_when_disabled():
    cfg = PackConfig(seq_length=8, min_tokens=0, add_bos=False, add_eos=False)
    ranges = pack(np.array([3, 3]), cfg)
    tokens, lengths = materialize(np.array([5, 6, 7, 8, 9, 10]), ranges, cfg, 1, 2, np.uint16)
    assert tokens.tolist() == [5, 6, 7, 8, 9, 10] and lengths.tolist() == [6]


def test_bad_pack_config():
    with pytest.raises(ValueError, match="seq_length"):
        PackConfig(seq_length=2)
    with pytest.raises(ValueError, match="min_tokens"):
        PackConfig(min_tokens=-1)
