"""train.data: datasets over real .bin/.idx pairs and mixes, validation, padding, resumable order."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus.indexed import IndexedWriter
from corpus.mix import MixConfig, MixSource, build_mix
from train.data import Collator, DatasetError, MixDataset, ResumableSampler, TokenDataset, open_dataset


def _pair(prefix: Path, lengths: list[int], base: int = 0, dtype=np.uint16) -> str:
    """Sequence k holds base + k + position (distinct, recognisable tokens), one document each."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with IndexedWriter(str(prefix), dtype) as w:
        for k, n in enumerate(lengths):
            w.add_document(np.arange(base + k, base + k + n, dtype=dtype), [n])
    return str(prefix)


def _seq(base: int, k: int, n: int) -> list[int]:
    return list(range(base + k, base + k + n))


@pytest.fixture
def corpus(tmp_path):
    zh = _pair(tmp_path / "zh" / "zh_text_document", [5, 8, 3, 7], base=100)
    en = _pair(tmp_path / "en" / "en_text_document", [4, 6, 2], base=1000)
    return {"zh": zh, "en": en, "tmp": tmp_path}


# --- TokenDataset --------------------------------------------------------------------------


def test_token_dataset_reads_sequences_as_int64(corpus):
    ds = TokenDataset(corpus["zh"], seq_length=8)
    assert len(ds) == 4
    assert ds.lengths.tolist() == [5, 8, 3, 7]
    item = ds[1]
    assert set(item) == {"input_ids"}
    assert item["input_ids"].dtype == torch.int64
    assert item["input_ids"].tolist() == _seq(100, 1, 8)
    assert ds[-1]["input_ids"].tolist() == _seq(100, 3, 7)
    item["input_ids"][0] = -5  # a copy: the read-only map is untouched
    assert ds[1]["input_ids"][0].item() == 101


def test_token_dataset_accepts_suffix_and_pickles_without_copying_the_map(corpus):
    ds = TokenDataset(corpus["zh"] + ".idx", seq_length=8)
    blob = pickle.dumps(ds)
    assert len(blob) < 2000  # the prefix travels, not the mapped bytes
    again = pickle.loads(blob)
    assert again[2]["input_ids"].tolist() == _seq(100, 2, 3)


def test_sequence_longer_than_seq_length_is_an_error_naming_file_sequence_and_numbers(corpus):
    with pytest.raises(DatasetError) as err:
        TokenDataset(corpus["zh"], seq_length=7)
    msg = str(err.value)
    assert corpus["zh"] + ".idx" in msg and "sequence 1" in msg and "8 tokens" in msg and "seq_length 7" in msg


def test_missing_files_are_named(corpus):
    os.remove(corpus["en"] + ".bin")
    with pytest.raises(DatasetError, match=r"en_text_document\.bin"):
        TokenDataset(corpus["en"], seq_length=8)


# --- MixDataset ----------------------------------------------------------------------------


def _mix(corpus, zh: int = 6, en: int = 3, seed: int = 3) -> str:
    out = str(corpus["tmp"] / "mix" / "blend")
    build_mix(MixConfig(output=out, seed=seed, sources=[
        MixSource("zh", corpus["zh"], samples=zh), MixSource("en", corpus["en"], samples=en)]))
    return out


def test_mix_dataset_serves_the_mix_order(corpus):
    prefix = _mix(corpus)
    which = np.load(prefix + ".mix.dataset_index.npy")
    sample = np.load(prefix + ".mix.dataset_sample_index.npy")
    ds = MixDataset(prefix, seq_length=8)
    assert len(ds) == 9
    zh, en = TokenDataset(corpus["zh"], 8), TokenDataset(corpus["en"], 8)
    for i in range(len(ds)):
        src = (zh, en)[int(which[i])]
        assert ds[i]["input_ids"].tolist() == src[int(sample[i])]["input_ids"].tolist()
    expected = [(zh, en)[int(w)].lengths[int(s)] for w, s in zip(which, sample)]
    assert ds.lengths.tolist() == expected
    with pytest.raises(IndexError):
        ds[9]
    # A worker gets a working copy, without the mapped arrays inside the pickle.
    assert "dataset_sample_index" not in ds.__getstate__()
    again = pickle.loads(pickle.dumps(ds))
    assert isinstance(again.dataset_sample_index, np.memmap)  # mapped again in the worker
    assert again[4]["input_ids"].tolist() == ds[4]["input_ids"].tolist()


def test_mix_with_relative_prefixes_resolves_from_cwd_or_mix_folder(corpus, monkeypatch):
    monkeypatch.chdir(corpus["tmp"])
    out = "mix/rel"
    build_mix(MixConfig(output=out, sources=[MixSource("zh", "zh/zh_text_document", samples=4)]))
    assert MixDataset(out, 8)[0]["input_ids"].dtype == torch.int64  # relative to the cwd
    # Same mix read from elsewhere: prefixes are then looked up next to the mix file.
    report = json.loads(Path("mix/rel.mix.json").read_text())
    report["sources"][0]["prefix"] = "../zh/zh_text_document"
    Path("mix/rel.mix.json").write_text(json.dumps(report))
    monkeypatch.chdir(corpus["tmp"] / "zh")
    assert len(MixDataset(corpus["tmp"] / "mix" / "rel", 8)) == 4
    report["sources"][0]["prefix"] = "nowhere/x"
    Path(corpus["tmp"] / "mix" / "rel.mix.json").write_text(json.dumps(report))
    with pytest.raises(DatasetError, match=r"source 'nowhere/x' not found \(looked for nowhere/x\.idx"):
        MixDataset(corpus["tmp"] / "mix" / "rel", 8)


def test_mix_over_a_changed_source_is_an_error(corpus):
    prefix = _mix(corpus)
    _pair(Path(corpus["en"]), [4, 6], base=1000)  # rebuilt with fewer sequences
    with pytest.raises(DatasetError, match=r"source 'en' .* has 2 sequences but the mix was built over 3"):
        MixDataset(prefix, 8)
    _pair(Path(corpus["en"]), [4, 6, 1], base=1000)  # same count, other content
    with pytest.raises(DatasetError, match=r"sha256 mismatch.*rebuild the mix"):
        MixDataset(prefix, 8)
    assert len(MixDataset(prefix, 8, check_sha=False)) == 9


def test_mix_index_arrays_are_checked_against_source_sizes(corpus):
    prefix = _mix(corpus)
    which = np.load(prefix + ".mix.dataset_index.npy")
    sample = np.load(prefix + ".mix.dataset_sample_index.npy")
    k = int(np.flatnonzero(which == 1)[0])
    sample[k] = 3  # en has 3 sequences: 0..2
    np.save(prefix + ".mix.dataset_sample_index.npy", sample)
    with pytest.raises(DatasetError, match=rf"dataset_sample_index\[{k}\] = 3 but source 'en' .* has 3 sequences"):
        MixDataset(prefix, 8)
    sample[k] = 0
    np.save(prefix + ".mix.dataset_sample_index.npy", sample)
    which[0] = 2
    np.save(prefix + ".mix.dataset_index.npy", which)
    with pytest.raises(DatasetError, match=r"dataset_index\[0\] = 2 but the mix has 2 sources"):
        MixDataset(prefix, 8)
    np.save(prefix + ".mix.dataset_index.npy", which[:-1])
    with pytest.raises(DatasetError, match="equal length"):
        MixDataset(prefix, 8)


# --- open_dataset --------------------------------------------------------------------------


def test_open_dataset_picks_pair_or_mix(corpus):
    assert isinstance(open_dataset(corpus["zh"], 8, vocab_size=2000), TokenDataset)
    prefix = _mix(corpus)
    ds = open_dataset(prefix, 8, vocab_size=2000)
    assert isinstance(ds, MixDataset) and len(ds) == 9
    assert isinstance(open_dataset(prefix + ".mix.json", 8), MixDataset)
    with pytest.raises(DatasetError, match=r"looked for .*nothing\.idx .* and for a mix .*nothing\.mix\.json"):
        open_dataset(corpus["tmp"] / "nothing", 8)


def test_open_dataset_rejects_token_ids_beyond_the_vocabulary_before_training(corpus):
    # en sequence 0 is 1000..1003, so id 1003 is its 4th token; zh stays below 110.
    assert isinstance(open_dataset(corpus["zh"], 8, vocab_size=110), TokenDataset)
    prefix = _mix(corpus)
    with pytest.raises(DatasetError) as err:
        open_dataset(prefix, 8, vocab_size=1003)
    msg = str(err.value)
    assert corpus["en"] + ".bin" in msg and "vocabulary" in msg and "1003" in msg and "tokens[3]" in msg and "sequence 0" in msg
    # Without validation the same dataset opens (the check is opt-out, not hidden).
    assert len(open_dataset(prefix, 8, vocab_size=1003, validate=False)) == 9


def test_open_dataset_reports_a_corrupt_pair(corpus):
    idx = corpus["zh"] + ".idx"
    raw = bytearray(Path(idx).read_bytes())
    # Corrupt the second sequence pointer (header 34 bytes + 4 lengths * 4 bytes, then int64s).
    raw[34 + 16 + 8] ^= 0x01
    Path(idx).write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"zh_text_document\.idx: sequence_pointers\[1\]"):
        open_dataset(corpus["zh"], 8, vocab_size=2000)


# --- Collator ------------------------------------------------------------------------------


def test_collator_pads_right_and_masks_padding_in_labels():
    batch = Collator(pad_id=0)([{"input_ids": torch.tensor([5, 6, 7])}, {"input_ids": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_collator_keeps_given_labels_and_pads_to_multiple():
    features = [
        {"input_ids": [1, 10, 11, 12, 2], "labels": [-100, -100, -100, 12, 2]},
        {"input_ids": [1, 20, 2], "labels": [-100, 20, 2]},
    ]
    batch = Collator(pad_id=0, pad_to_multiple_of=4)(features)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["labels"].tolist() == [[-100, -100, -100, 12, 2, -100, -100, -100],
                                        [-100, 20, 2, -100, -100, -100, -100, -100]]
    assert batch["attention_mask"].sum(dim=1).tolist() == [5, 3]
    with pytest.raises(ValueError, match="some features have 'labels'"):
        Collator(0)([features[0], {"input_ids": [1]}])
    with pytest.raises(ValueError, match="feature 0 has 2 input_ids but 1 labels"):
        Collator(0)([{"input_ids": [1, 2], "labels": [1]}])


# --- ResumableSampler ----------------------------------------------------------------------


def test_sampler_is_seeded_per_epoch_and_a_permutation():
    s = ResumableSampler(50, seed=7)
    first = list(s)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    assert list(ResumableSampler(50, seed=7)) == first
    assert list(ResumableSampler(50, seed=8)) != first
    s.set_epoch(1)
    second = list(s)
    assert sorted(second) == list(range(50)) and second != first
    assert list(ResumableSampler(50, seed=7, shuffle=False)) == list(range(50))
    assert len(s) == 50


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    shuffle=st.booleans(),
    group=st.booleans(),
    epoch=st.integers(0, 3),
    frac=st.floats(0, 1),
    megabatch=st.integers(1, 64),
)
def test_resume_from_state_continues_the_uninterrupted_order(size, seed, shuffle, group, epoch, frac, megabatch):
    lengths = np.random.default_rng(seed).integers(1, 100, size)
    kwargs = dict(shuffle=shuffle, lengths=lengths, group_by_length=group, megabatch=megabatch)
    whole = ResumableSampler(size, seed, **kwargs)
    whole.set_epoch(epoch)
    full = list(whole)
    k = int(frac * size)
    run = ResumableSampler(size, seed, **kwargs)
    run.set_epoch(epoch)
    it = iter(run)
    for _ in range(min(size, k + 5)):  # a DataLoader prefetches beyond what was trained on
        next(it)
    run.advance(k)
    state = run.state_dict()
    assert state["consumed"] == k and state["epoch"] == epoch
    resumed = ResumableSampler(size, seed, **kwargs)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # survives a JSON round trip
    resumed.set_epoch(epoch)  # the Trainer re-announces the epoch: the position stays
    assert list(resumed) == full[k:]
    resumed.set_epoch(epoch + 1)  # the next epoch starts from its beginning
    whole.set_epoch(epoch + 1)
    assert list(resumed) == list(whole)


def test_advance_is_clamped_at_the_epoch_end():
    s = ResumableSampler(10, seed=0)
    s.advance(8)
    s.advance(8)  # a short last batch counted as a full one
    assert s.consumed == 10 and list(s) == []
    s.set_epoch(1)
    assert s.consumed == 0 and len(list(s)) == 10


def test_group_by_length_sorts_inside_megabatches():
    lengths = np.random.default_rng(0).integers(1, 1000, 100)
    s = ResumableSampler(100, seed=1, lengths=lengths, group_by_length=True, megabatch=16)
    order = list(s)
    plain = ResumableSampler(100, seed=1).order(0)
    assert sorted(order) == list(range(100))
    for start in range(0, 100, 16):
        chunk = order[start:start + 16]
        assert sorted(chunk) == sorted(plain[start:start + 16].tolist())  # same members as the permutation
        got = lengths[chunk].tolist()
        assert got == sorted(got, reverse=True)  # longest first
    assert lengths[order].tolist() != sorted(lengths.tolist(), reverse=True)  # not one global sort
    with pytest.raises(ValueError, match="needs the sequence lengths"):
        ResumableSampler(100, 1, group_by_length=True)
    with pytest.raises(ValueError, match="99 lengths for a dataset of 100"):
        ResumableSampler(100, 1, lengths=lengths[:99], group_by_length=True)


def test_load_state_rejects_a_changed_dataset_or_order():
    state = ResumableSampler(20, seed=1).state_dict()
    with pytest.raises(ValueError, match="the dataset changed since the checkpoint"):
        ResumableSampler(21, seed=1).load_state_dict(state)
    with pytest.raises(ValueError, match="seed was 1 at the checkpoint but is now 2"):
        ResumableSampler(20, seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="shuffle was True"):
        ResumableSampler(20, seed=1, shuffle=False).load_state_dict(state)
    with pytest.raises(ValueError, match="missing key 'consumed'"):
        ResumableSampler(20, seed=1).load_state_dict({k: v for k, v in state.items() if k != "consumed"})


def test_sampler_drives_a_dataloader_over_a_mix(corpus):
    """End to end: mix → sampler with length grouping → DataLoader with the collator."""
    ds = MixDataset(_mix(corpus, zh=10, en=6), seq_length=8)
    sampler = ResumableSampler(len(ds), seed=5, lengths=ds.lengths, group_by_length=True, megabatch=8)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, sampler=sampler, collate_fn=Collator(pad_id=0))
    batches = list(loader)
    assert sum(b["input_ids"].shape[0] for b in batches) == 16
    first = batches[0]
    assert first["input_ids"].shape[1] == int(first["attention_mask"].sum(dim=1).max())
    assert (first["labels"][first["attention_mask"] == 0] == -100).all()


# --- the held-out split --------------------------------------------------------------------


def _tokens(ds, i) -> tuple[int, ...]:
    return tuple(ds[i]["input_ids"].tolist())


def test_held_out_samples_are_seeded_whole_and_never_trained_on(tmp_path):
    from train.data import held_out_count, split_held_out

    ds = TokenDataset(_pair(tmp_path / "big", [3 + k % 5 for k in range(40)]), seq_length=8)
    train, held = split_held_out(ds, 6, seed=7)
    assert (len(train), len(held)) == (34, 6)
    held_seqs = {_tokens(held, i) for i in range(len(held))}
    train_seqs = [_tokens(train, i) for i in range(len(train))]
    assert len(held_seqs) == 6 and not held_seqs & set(train_seqs)
    assert sorted(held_seqs | set(train_seqs)) == sorted(_tokens(ds, i) for i in range(len(ds)))
    # Training keeps the dataset's order without the held-out positions; lengths follow.
    assert train_seqs == [_tokens(ds, i) for i in range(len(ds)) if i not in set(held.positions.tolist())]
    assert train.lengths.tolist() == [len(s) for s in train_seqs]
    # The same seed holds out the same samples (every rank, every run); another seed others.
    again, _ = split_held_out(ds, 6, seed=7)
    assert again.excluded.tolist() == train.excluded.tolist()
    assert split_held_out(ds, 6, seed=8)[1].positions.tolist() != held.positions.tolist()
    # Cheap to hand to DataLoader workers: only the excluded positions travel.
    assert len(pickle.dumps(train)) < 3000
    with pytest.raises(IndexError):
        train[34]
    assert (held_out_count(1000, 0.05), held_out_count(1000, 0.0, 16), held_out_count(1000), held_out_count(3, 0.01)) \
        == (50, 16, 0, 1)
    with pytest.raises(DatasetError, match="cannot hold out 40 of its 40 distinct samples"):
        split_held_out(ds, 40, seed=7)


def test_a_held_out_sample_of_a_mix_leaves_training_at_every_position_that_serves_it(corpus):
    from train.data import split_held_out

    ds = MixDataset(_mix(corpus, zh=12, en=6), seq_length=8)  # sources of 4 and 3: every sample served ≥ 2 times
    train, held = split_held_out(ds, 2, seed=1)
    held_seqs = {_tokens(held, i) for i in range(len(held))}
    assert len(held_seqs) == 2
    everywhere = [i for i in range(len(ds)) if _tokens(ds, i) in held_seqs]
    assert len(everywhere) > 2  # repeated in the mix …
    assert len(train) == len(ds) - len(everywhere)  # … and gone from training at every position
    assert not held_seqs & {_tokens(train, i) for i in range(len(train))}
