"""Packing for instruction tuning: several short examples per sequence, none of them attending to another.

An instruction set at CaMA's cutoff of 512 is mostly examples of a hundred or two tokens; padded to the
longest of each micro batch, much of every step is spent on padding, and every optimizer step on a few
hundred tokens. Packing puts whole examples side by side in sequences of up to ``pack_length`` tokens:

- :func:`pack` chooses which examples share a sequence: best-fit decreasing (longest example first,
  into the fullest sequence it still fits, else a new one), deterministic — ties go to the earlier
  example and the earlier sequence — so every rank and every resumed run builds the same sequences.
- :class:`PackedDataset` serves them: ``input_ids`` and ``labels`` are the examples' own, concatenated;
  ``position_ids`` restart at 0 with every example; and the label of each example's *first* token is
  -100, so the last token of one example is never trained to predict the first token of the next
  (the model shifts labels by one: position ``t`` predicts ``labels[t + 1]``). That label was never
  trained unpacked either (nothing precedes an example's first token), so the loss covers exactly the
  tokens it covers without packing.
- :class:`PackingCollator` pads a micro batch of packed sequences to the longest (pad tokens, label
  -100, their own run of positions from 0, attention mask 0), and :meth:`PackingCollator.model_inputs`
  turns that batch into what the model is given (the Trainer calls it, see ``train.runtime``).

How attention keeps the examples apart — transformers' own packed-sequence path, no mask of ours:

- sdpa / eager / flex (the suite's default is sdpa): given ``position_ids`` and *no* 2-D attention
  mask, ``transformers.masking_utils`` finds the packed examples from where the positions restart
  (``find_packed_sequence_indices``) and builds a block-diagonal causal mask. A 2-D mask or a KV cache
  switches that detection off, so :meth:`~PackingCollator.model_inputs` drops the mask (the collator
  still returns it, for whoever counts real tokens by it: the Trainer's tokens/s, a probe batch) and
  passes ``use_cache=False``.
- flash-attention (``flash_attention_2``/``_3``): the varlen kernel, its ``cu_seq_lens`` derived from
  ``position_ids`` — but only for a batch of one row, so the micro batch's real tokens are laid out as
  one row (no padding at all).

``tests/test_packing.py`` checks the point of all this: each example's logits inside a packed batch
equal its logits alone, and the packed loss equals the unpacked one.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

IGNORE_INDEX = -100

__all__ = ["PackedDataset", "PackingCollator", "pack"]


def pack(lengths: Sequence[int] | np.ndarray, capacity: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into sequences of at most ``capacity`` tokens, best-fit decreasing.

    Sequences come in the order they were opened (the longest example's first); inside one, its
    examples longest first. The free space of open sequences is kept sorted, so each example costs a
    binary search: an alpaca-sized set (52k examples) packs in well under a second.
    """
    if capacity <= 0:
        raise ValueError(f"pack: capacity must be positive, got {capacity}")
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1:
        raise ValueError("pack: lengths must be one-dimensional")
    if len(lengths) and (int(lengths.min()) <= 0 or int(lengths.max()) > capacity):
        bad = int(np.flatnonzero((lengths <= 0) | (lengths > capacity))[0])
        raise ValueError(f"pack: example {bad} has {int(lengths[bad])} tokens; every example needs 1 to "
                         f"{capacity} (the pack length)")
    order = np.lexsort((np.arange(len(lengths)), -lengths))  # longest first, then by index
    packs: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (space left, pack index) of the packs something may still fit in
    smallest = int(lengths.min()) if len(lengths) else 0
    for i in order.tolist():
        n = int(lengths[i])
        k = bisect_left(free, (n, -1))
        if k < len(free):
            space, p = free.pop(k)
        else:
            space, p = capacity, len(packs)
            packs.append([])
        packs[p].append(i)
        if space - n >= smallest:  # otherwise no example left can fit there
            insort(free, (space - n, p))
    return packs


class PackedDataset(Dataset):
    """Examples of ``dataset`` (``{"input_ids", "labels", ...}`` int lists, with a ``lengths`` array)
    packed into sequences of at most ``pack_length`` tokens; ``ds[i]`` is a dict of int lists
    ``input_ids``, ``labels``, ``position_ids`` (see the module docstring)."""

    def __init__(self, dataset: Any, pack_length: int) -> None:
        self.dataset = dataset
        self.pack_length = pack_length
        self.example_lengths = np.asarray(dataset.lengths, dtype=np.int64)
        if len(self.example_lengths) != len(dataset):
            raise ValueError(f"PackedDataset: {len(self.example_lengths)} lengths for {len(dataset)} examples")
        self.packs = pack(self.example_lengths, pack_length)
        self._lengths = np.array([int(self.example_lengths[p].sum()) for p in self.packs], dtype=np.int64)

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per packed sequence, for length grouping."""
        return self._lengths

    @property
    def num_examples(self) -> int:
        return len(self.example_lengths)

    @property
    def attention_length(self) -> int:
        """The sequence length attention costs as much as, per token: the token-weighted mean example
        length ``Σn² / Σn`` (a token attends within its own example only), for the MFU figure."""
        n = self.example_lengths.astype(np.float64)
        return max(1, int(round(float((n * n).sum() / n.sum())))) if len(n) else 1

    def examples(self, i: int) -> list[int]:
        """Indices (into the unpacked dataset) of the examples in packed sequence ``i``, in order."""
        return list(self.packs[i])

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        input_ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for j in self.packs[i]:
            example = self.dataset[j]
            ids = list(example["input_ids"])
            own = list(example.get("labels", ids))
            if len(own) != len(ids):
                raise ValueError(f"PackedDataset: example {j} has {len(ids)} input_ids but {len(own)} labels")
            own[0] = IGNORE_INDEX  # not predicted from the previous example's last token
            input_ids += ids
            labels += own
            positions += range(len(ids))
        return {"input_ids": input_ids, "labels": labels, "position_ids": positions}


class PackingCollator:
    """A micro batch of packed sequences, padded on the right to the longest: ``input_ids``, ``labels``
    (-100 on padding), ``position_ids`` (padding counts from 0 again: a run of its own, which no real
    token attends to) and ``attention_mask`` (1 on real tokens; see :meth:`model_inputs`).

    A feature without ``position_ids`` is one example (positions 0…n-1), so a probe or evaluation batch
    of unpacked examples goes through the same path."""

    packed = True  # train.runtime.SuiteTrainer: hand the model model_inputs(batch)

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None) -> None:
        if pad_to_multiple_of is not None and pad_to_multiple_of <= 0:
            raise ValueError(f"pad_to_multiple_of must be positive, got {pad_to_multiple_of}")
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("PackingCollator: empty batch")
        rows = []
        for k, f in enumerate(features):
            ids = torch.as_tensor(f["input_ids"], dtype=torch.long).reshape(-1)
            if "labels" in f:
                labels = torch.as_tensor(f["labels"], dtype=torch.long).reshape(-1).clone()
            else:
                labels = ids.clone()
            if "position_ids" in f:
                positions = torch.as_tensor(f["position_ids"], dtype=torch.long).reshape(-1)
            else:
                positions = torch.arange(len(ids))
                labels[:1] = IGNORE_INDEX
            if not len(ids) == len(labels) == len(positions):
                raise ValueError(f"PackingCollator: feature {k} has {len(ids)} input_ids, {len(labels)} labels "
                                 f"and {len(positions)} position_ids")
            rows.append((ids, labels, positions))
        width = max(len(ids) for ids, _, _ in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(rows)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        labels = torch.full((batch, width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.arange(width, dtype=torch.long).repeat(batch, 1)
        attention = torch.zeros((batch, width), dtype=torch.long)
        for k, (ids, own, positions) in enumerate(rows):
            n = len(ids)
            input_ids[k, :n], labels[k, :n], attention[k, :n] = ids, own, 1
            position_ids[k, :n] = positions
            position_ids[k, n:] -= n
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "attention_mask": attention}

    @staticmethod
    def model_inputs(batch: Mapping[str, Any], attn_implementation: str | None = None) -> dict[str, Any]:
        """What the model is given for a collated batch: no 2-D attention mask and no KV cache, so that
        transformers builds its packed (block-diagonal) attention from ``position_ids``; for
        flash-attention, the real tokens of the batch as one row (its varlen path needs batch size 1)."""
        inputs = {k: v for k, v in batch.items() if k != "attention_mask"}
        inputs["use_cache"] = False
        if attn_implementation and "flash" in attn_implementation and "attention_mask" in batch:
            real = batch["attention_mask"].bool()
            for key in ("input_ids", "labels", "position_ids"):
                if key in inputs:
                    inputs[key] = inputs[key][real].unsqueeze(0)
        return inputs
