"""Pretraining data: torch datasets over the corpus's .bin/.idx pairs and mixes, padding, a resumable order.

- :class:`TokenDataset` serves the sequences of one Megatron .bin/.idx pair (``corpus.indexed``);
  :class:`MixDataset` serves a blend written by ``corpus.mix`` (``PREFIX.mix.json`` plus two .npy
  index arrays), position ``i`` being sequence ``dataset_sample_index[i]`` of source
  ``dataset_index[i]``. :func:`open_dataset` picks the right one from the files present and, with
  ``validate``, checks every pair (and every token id against the model's vocabulary) before any
  training step, so a broken or mismatched corpus fails in seconds rather than hours in.
- :func:`split_held_out` sets a seeded selection of whole samples aside for evaluation (``eval_samples``
  / ``eval_fraction`` of a pretraining job), excluded from training at every position that serves them.
- :class:`Collator` pads a batch to its longest sequence (right padding) and masks padding out of
  the labels.
- :class:`ResumableSampler` gives a seeded, per-epoch order of *global* indices that can resume
  at the exact sample where a checkpoint was taken. The training loop records progress with
  :meth:`ResumableSampler.advance` (samples per optimizer step, from a callback), not by counting
  what the sampler yields: the DataLoader prefetches, so yields run ahead of training.

Nothing here loads a corpus whole: sequences are read from memory maps on demand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from common.errors import UserError
from common.jsonl import read_json_object
from common.markers import file_sha256
from corpus.indexed import IndexedReader, IndexFormatError, validate as validate_pair
from corpus.mix import load_mix
from train.fingerprint import resolve_source, strip_suffix

__all__ = [
    "Collator",
    "DatasetError",
    "MixDataset",
    "ResumableSampler",
    "Subset",
    "TokenDataset",
    "Without",
    "held_out_count",
    "open_dataset",
    "split_held_out",
]

PathLike = Union[str, "os.PathLike[str]"]


class DatasetError(UserError, ValueError):
    """A training dataset is missing, inconsistent, or does not fit the model; names the file."""


# --------------------------------------------------------------------------------------------
# Datasets


class TokenDataset(Dataset):
    """The sequences of one ``<prefix>.bin``/``<prefix>.idx`` pair; ``ds[i] -> {"input_ids": LongTensor}``.

    The corpus promises every sequence is at most ``seq_length`` tokens (documents are packed that
    way); a longer one means the corpus was built for another model, so it is an error here, not
    a silent truncation.
    """

    def __init__(self, prefix: PathLike, seq_length: int) -> None:
        if seq_length <= 0:
            raise ValueError(f"seq_length must be positive, got {seq_length}")
        self.prefix = strip_suffix(prefix)
        self.seq_length = seq_length
        self._open()
        lengths = self._reader.sequence_lengths
        if len(lengths) == 0:
            raise DatasetError(f"{self.prefix}.idx: the dataset has no sequences")
        longest = int(np.argmax(lengths))
        if int(lengths[longest]) > seq_length:
            raise DatasetError(
                f"{self.prefix}.idx: sequence {longest} has {int(lengths[longest])} tokens, more than "
                f"seq_length {seq_length} (the corpus must be packed for this seq_length)")

    def _open(self) -> None:
        for suffix in (".idx", ".bin"):
            if not os.path.isfile(self.prefix + suffix):
                raise DatasetError(f"dataset file not found: {self.prefix}{suffix}")
        try:
            self._reader = IndexedReader(self.prefix)
        except IndexFormatError as exc:
            raise DatasetError(f"cannot open dataset {self.prefix}: {exc}") from exc

    # Memory maps must not be pickled (numpy would copy the mapped bytes into every DataLoader
    # worker): a worker reopens the files from the prefix instead.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_reader"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per sequence (int32, read-only view of the index), for length grouping."""
        return self._reader.sequence_lengths

    @property
    def num_tokens(self) -> int:
        return self._reader.num_tokens

    def __len__(self) -> int:
        return len(self._reader)

    def tokens(self, i: int) -> np.ndarray:
        """Sequence ``i`` as int64 (a copy: the map is read-only and stays untouched)."""
        return np.array(self._reader[i], dtype=np.int64)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.from_numpy(self.tokens(i))}


class MixDataset(Dataset):
    """A blend written by ``corpus.mix``: ``ds[i]`` is sequence ``dataset_sample_index[i]`` of source
    ``dataset_index[i]``.

    At construction the index arrays are checked against the sources as they are now (their
    sequence counts, and with ``check_sha`` the sha256 of each .idx recorded in the mix JSON), so a
    source rebuilt after the mix fails here instead of serving other samples than the mix meant.
    """

    def __init__(self, mix_prefix: PathLike, seq_length: int, check_sha: bool = True) -> None:
        self.prefix = strip_suffix(mix_prefix)
        self.seq_length = seq_length
        self.json_path = Path(self.prefix + ".mix.json")
        report = read_json_object(self.json_path, DatasetError, "mix file", "mix JSON")
        sources = report.get("sources")
        if not isinstance(sources, list) or not sources:
            raise DatasetError(f"{self.json_path}: key 'sources' must be a non-empty list")

        self.names: list[str] = []
        self.sources: list[TokenDataset] = []
        for k, source in enumerate(sources):
            if not isinstance(source, dict) or not isinstance(source.get("prefix"), str):
                raise DatasetError(f"{self.json_path}: sources[{k}] has no 'prefix'")
            name = str(source.get("name", k))
            prefix = resolve_source(source["prefix"], self.json_path, DatasetError)
            dataset = TokenDataset(prefix, seq_length)
            expected = source.get("sequences")
            if expected is not None and expected != len(dataset):
                raise DatasetError(
                    f"{self.json_path}: source {name!r} ({prefix}) has {len(dataset)} sequences but the mix "
                    f"was built over {expected}: the source changed since the mix was built; rebuild the mix")
            sha = source.get("idx_sha256")
            if check_sha and sha is not None and file_sha256(prefix + ".idx") != sha:
                raise DatasetError(
                    f"{self.json_path}: source {name!r}: {prefix}.idx differs from the one the mix was built "
                    f"over (sha256 mismatch): the source changed since the mix was built; rebuild the mix")
            self.names.append(name)
            self.sources.append(dataset)

        try:
            self.dataset_index, self.dataset_sample_index = load_mix(self.prefix)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.prefix}: cannot load the mix index arrays ({exc})") from exc
        self._check_indices(report.get("samples"))

    def _check_indices(self, samples: object) -> None:
        which, sample = self.dataset_index, self.dataset_sample_index
        where = f"{self.prefix}.mix.dataset_index.npy / .mix.dataset_sample_index.npy"
        if which.ndim != 1 or sample.ndim != 1 or len(which) != len(sample):
            raise DatasetError(f"{where}: the two index arrays must be 1-D of equal length, "
                               f"got shapes {which.shape} and {sample.shape}")
        if which.dtype.kind not in "iu" or sample.dtype.kind not in "iu":
            raise DatasetError(f"{where}: index arrays must be integers, got {which.dtype} and {sample.dtype}")
        if samples is not None and samples != len(which):
            raise DatasetError(f"{self.json_path}: says {samples} samples but the index arrays hold {len(which)}")
        if len(which) == 0:
            raise DatasetError(f"{where}: the mix has no samples")
        n = len(self.sources)
        which = np.asarray(which, dtype=np.int64)
        bad = np.flatnonzero((which < 0) | (which >= n))
        if len(bad):
            k = int(bad[0])
            raise DatasetError(f"{where}: dataset_index[{k}] = {int(which[k])} but the mix has {n} sources")
        sizes = np.array([len(s) for s in self.sources], dtype=np.int64)
        bad = np.flatnonzero((sample < 0) | (sample >= sizes[which]))
        if len(bad):
            k = int(bad[0])
            src = int(which[k])
            raise DatasetError(
                f"{where}: dataset_sample_index[{k}] = {int(sample[k])} but source {self.names[src]!r} "
                f"({self.sources[src].prefix}) has {sizes[src]} sequences: the source changed since the mix was built")

    # As for TokenDataset: a DataLoader worker maps the index arrays again instead of receiving a
    # pickled copy of them (tens of MB for a CaMA-sized mix).
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["dataset_index"], state["dataset_sample_index"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.dataset_index, self.dataset_sample_index = load_mix(self.prefix)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens of every position of the mix (int32), for length grouping."""
        out = np.empty(len(self), dtype=np.int32)
        which = np.asarray(self.dataset_index)
        sample = np.asarray(self.dataset_sample_index)
        for k, source in enumerate(self.sources):
            mask = which == k
            out[mask] = np.asarray(source.lengths)[sample[mask]]
        return out

    def __len__(self) -> int:
        return len(self.dataset_index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"mix index {i} out of range for {len(self)} samples")
        source = self.sources[int(self.dataset_index[i])]
        return {"input_ids": torch.from_numpy(source.tokens(int(self.dataset_sample_index[i])))}


def open_dataset(
    path: PathLike,
    seq_length: int,
    vocab_size: int | None = None,
    validate: bool = True,
) -> TokenDataset | MixDataset:
    """A .bin/.idx prefix or a mix prefix (``PREFIX.mix.json``), decided by which files exist.

    With ``validate``, every underlying pair is fully checked first (``corpus.indexed.validate``:
    the index invariants, the .bin size and, given ``vocab_size``, every token id in
    ``[0, vocab_size)``). That reads every token once — seconds per GB — and is what makes a
    corpus tokenized with another vocabulary fail before the first step.
    """
    prefix = strip_suffix(path)
    is_pair = os.path.isfile(prefix + ".idx")
    is_mix = os.path.isfile(prefix + ".mix.json")
    if is_pair and is_mix:
        raise DatasetError(f"{prefix}: both {prefix}.idx and {prefix}.mix.json exist; it is ambiguous "
                           "which one to train on (rename one)")
    if not (is_pair or is_mix):
        raise DatasetError(f"no dataset at {os.fspath(path)}: looked for {prefix}.idx (with {prefix}.bin) "
                           f"and for a mix {prefix}.mix.json")
    dataset: TokenDataset | MixDataset = TokenDataset(prefix, seq_length) if is_pair else MixDataset(prefix, seq_length)
    if validate:
        pairs = [dataset] if isinstance(dataset, TokenDataset) else dataset.sources
        for pair in pairs:
            _validate(pair.prefix, vocab_size)
    return dataset


# --------------------------------------------------------------------------------------------
# A held-out split

EVAL_STREAM = 0xE7A1  # the seeded selection of held-out samples draws from its own random stream


class Subset(Dataset):
    """Positions ``positions`` of ``dataset`` (the held-out samples: a few thousand at most)."""

    def __init__(self, dataset: Any, positions: np.ndarray) -> None:
        self.dataset = dataset
        self.positions = np.asarray(positions, dtype=np.int64)

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray(self.dataset.lengths)[self.positions]

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.dataset[int(self.positions[i])]


class Without(Dataset):
    """``dataset`` without the sorted positions ``excluded``, the others in their order.

    Only the (few) excluded positions are stored — not an index of the millions kept, which every
    DataLoader worker would receive a copy of: position ``i`` maps to ``i + k``, ``k`` being how many
    excluded positions come before it (a binary search over ``excluded[j] - j``)."""

    def __init__(self, dataset: Any, excluded: np.ndarray) -> None:
        self.dataset = dataset
        self.excluded = np.unique(np.asarray(excluded, dtype=np.int64))
        self._before = self.excluded - np.arange(len(self.excluded), dtype=np.int64)

    def position(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        return i + int(np.searchsorted(self._before, i, side="right"))

    @property
    def lengths(self) -> np.ndarray:
        return np.delete(np.asarray(self.dataset.lengths), self.excluded)

    def __len__(self) -> int:
        return len(self.dataset) - len(self.excluded)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.dataset[self.position(i)]


def sample_keys(dataset: TokenDataset | MixDataset) -> np.ndarray:
    """One integer per position naming the sample it serves: a mix may serve a sample more than once
    (an upsampled source), and a held-out sample must leave training at every one of its positions."""
    if isinstance(dataset, MixDataset):
        width = max(len(s) for s in dataset.sources)
        return np.asarray(dataset.dataset_index, dtype=np.int64) * width + np.asarray(dataset.dataset_sample_index,
                                                                                    dtype=np.int64)
    return np.arange(len(dataset), dtype=np.int64)


def held_out_count(size: int, fraction: float = 0.0, samples: int = 0) -> int:
    """How many samples ``eval_samples`` / ``eval_fraction`` hold out of ``size`` (0: none)."""
    if samples:
        return samples
    if fraction:
        return max(1, int(round(fraction * size)))
    return 0


def split_held_out(dataset: TokenDataset | MixDataset, count: int, seed: int) -> tuple[Without, Subset]:
    """``(train, held_out)``: ``count`` distinct samples chosen by ``seed`` (the same ones on every rank
    and every run of the same data), and the dataset without any position that serves one of them."""
    keys = sample_keys(dataset)
    distinct, first = np.unique(keys, return_index=True)
    if not 0 < count < len(distinct):
        raise DatasetError(f"{dataset.prefix}: cannot hold out {count} of its {len(distinct)} distinct samples "
                           f"for evaluation (eval_samples / eval_fraction must leave some to train on)")
    chosen = np.random.default_rng([seed, EVAL_STREAM]).choice(len(distinct), size=count, replace=False)
    held = np.sort(first[chosen])
    if len(distinct) == len(keys):  # every sample at one position (a .bin/.idx pair, a mix without repeats)
        excluded = held
    else:
        excluded = np.flatnonzero(np.isin(keys, distinct[chosen]))
    return Without(dataset, excluded), Subset(dataset, held)


def _validate(prefix: str, vocab_size: int | None) -> None:
    try:
        validate_pair(prefix, vocab_size)
    except IndexFormatError as exc:
        if exc.field == "tokens":
            raise DatasetError(
                f"{exc}: dataset {prefix} does not fit the model's vocabulary of {vocab_size} entries "
                "(was it tokenized with another tokenizer?)") from exc
        raise DatasetError(f"dataset {prefix} failed validation: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Batching


class Collator:
    """Pad a batch to its longest sequence, on the right; labels copy the inputs with padding -100.

    Features are mappings with ``input_ids`` (a tensor or a list of ints) and optionally ``labels``
    (instruction data whose prompt is already masked): when present, those labels are padded with
    ``label_pad`` instead of being copied from the inputs. Either every feature has labels or none.
    """

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None, label_pad: int = -100) -> None:
        if pad_to_multiple_of is not None and pad_to_multiple_of <= 0:
            raise ValueError(f"pad_to_multiple_of must be positive, got {pad_to_multiple_of}")
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.label_pad = label_pad

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("Collator: empty batch")
        ids = [torch.as_tensor(f["input_ids"], dtype=torch.long).reshape(-1) for f in features]
        with_labels = ["labels" in f for f in features]
        if any(with_labels) and not all(with_labels):
            raise ValueError("Collator: some features have 'labels' and others do not")
        labels = ([torch.as_tensor(f["labels"], dtype=torch.long).reshape(-1) for f in features]
                  if all(with_labels) else None)
        if labels is not None:
            for k, (x, y) in enumerate(zip(ids, labels)):
                if len(x) != len(y):
                    raise ValueError(f"Collator: feature {k} has {len(x)} input_ids but {len(y)} labels")
        width = max(len(x) for x in ids)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(ids)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((batch, width), dtype=torch.long)
        out_labels = torch.full((batch, width), self.label_pad, dtype=torch.long)
        for k, x in enumerate(ids):
            input_ids[k, : len(x)] = x
            attention[k, : len(x)] = 1
            out_labels[k, : len(x)] = labels[k] if labels is not None else x
        return {"input_ids": input_ids, "attention_mask": attention, "labels": out_labels}


# --------------------------------------------------------------------------------------------
# Order


class ResumableSampler(Sampler[int]):
    """A seeded order over *global* dataset indices that resumes at an exact sample.

    The order of epoch ``e`` is ``np.random.default_rng([seed, e]).permutation(size)`` (or
    ``range(size)`` without shuffle); with ``group_by_length``, each run of ``megabatch``
    consecutive indices of that order is re-sorted longest first (stable), like HF's
    ``LengthGroupedSampler`` (which uses 50 × the global batch size as megabatch), so batches hold
    sequences of similar length and waste little on padding.

    Not sharded per rank: accelerate/Trainer split the batches across ranks. Iteration yields the
    current epoch's order from position ``consumed``; ``consumed`` only moves through
    :meth:`advance` (call it with the samples of each optimizer step, all ranks together) and goes
    back to 0 when :meth:`set_epoch` moves to another epoch. Saving :meth:`state_dict` with a
    checkpoint and :meth:`load_state_dict` on resume continues exactly where training stopped
    (set the Trainer's ``ignore_data_skip=True`` so it does not skip batches a second time).

    ``len()`` is the full epoch size, not what is left: the Trainer derives its schedule from it.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        shuffle: bool = True,
        lengths: np.ndarray | Sequence[int] | None = None,
        group_by_length: bool = False,
        megabatch: int = 1024,
    ) -> None:
        if size <= 0:
            raise ValueError(f"ResumableSampler: size must be positive, got {size}")
        if megabatch <= 0:
            raise ValueError(f"ResumableSampler: megabatch must be positive, got {megabatch}")
        if group_by_length:
            if lengths is None:
                raise ValueError("ResumableSampler: group_by_length needs the sequence lengths")
            lengths = np.asarray(lengths)
            if lengths.shape != (size,):
                raise ValueError(f"ResumableSampler: {len(lengths)} lengths for a dataset of {size}")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.megabatch = megabatch
        self.lengths = lengths if group_by_length else None
        self.epoch = 0
        self.consumed = 0

    def order(self, epoch: int) -> np.ndarray:
        """The full order of ``epoch`` (int64 indices)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        else:
            order = np.arange(self.size, dtype=np.int64)
        if self.group_by_length:
            assert self.lengths is not None
            for start in range(0, self.size, self.megabatch):
                chunk = order[start : start + self.megabatch]
                keys = -np.asarray(self.lengths[chunk], dtype=np.int64)
                order[start : start + self.megabatch] = chunk[np.argsort(keys, kind="stable")]
        return order

    def __iter__(self) -> Iterator[int]:
        # Computed when iteration starts: a resumed run begins at the restored position.
        order = self.order(self.epoch)
        # In slices: a Python list of a whole CaMA-sized epoch (millions of ints) would cost GBs per rank.
        for start in range(self.consumed, len(order), 1 << 16):
            yield from order[start : start + (1 << 16)].tolist()

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        """Move to ``epoch``; the position resets to 0 only when the epoch actually changes, so the
        Trainer re-announcing the resumed epoch keeps the restored position."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self.epoch = epoch
            self.consumed = 0

    def advance(self, n: int) -> None:
        """Record ``n`` more samples as trained on in this epoch (clamped at the epoch's end: a short
        last batch must not spill into the next epoch, which starts with :meth:`set_epoch`)."""
        if n < 0:
            raise ValueError(f"advance: n must be >= 0, got {n}")
        self.consumed = min(self.consumed + n, self.size)

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "consumed": self.consumed,
            "size": self.size,
            "shuffle": self.shuffle,
            "group_by_length": self.group_by_length,
            "megabatch": self.megabatch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = [k for k in ("seed", "epoch", "consumed", "size", "shuffle", "group_by_length") if k not in state]
        if missing:
            raise ValueError(f"sampler state: missing key {missing[0]!r}")
        if state["size"] != self.size:
            raise ValueError(f"sampler state: the checkpoint was taken over {state['size']} samples but the "
                             f"dataset now has {self.size}: the dataset changed since the checkpoint")
        for key in ("seed", "shuffle", "group_by_length"):
            if state[key] != getattr(self, key):
                raise ValueError(f"sampler state: {key} was {state[key]!r} at the checkpoint but is now "
                                 f"{getattr(self, key)!r}: the data order changed since the checkpoint")
        if self.group_by_length and state.get("megabatch", self.megabatch) != self.megabatch:
            raise ValueError(f"sampler state: megabatch was {state['megabatch']} at the checkpoint but is now "
                             f"{self.megabatch}: the data order changed since the checkpoint")
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        if epoch < 0 or not 0 <= consumed <= self.size:
            raise ValueError(f"sampler state: epoch {epoch} / consumed {consumed} out of range for {self.size} samples")
        self.epoch, self.consumed = epoch, consumed
