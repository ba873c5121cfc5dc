"""Blending several built corpora into one seeded, deterministic training order.

CaMA trained on fixed sample counts per language (5.5M zh, 1.5M en, 0.9M code). A mix spec names
each source's .bin/.idx prefix and either a target sample count or a weight (with a total). The
result is a *sample index*: for every training position, which source and which of its sequences —
the same two arrays as Megatron's blended datasets (``dataset_index``, ``dataset_sample_index``).

- Within a source, samples come in a seeded random permutation. A target above the source's size
  repeats whole epochs, each with a fresh permutation (upsampling); a target below takes the first
  ``n`` of one permutation (downsampling). Every sequence is used ⌊n / size⌋ or ⌈n / size⌉ times.
- Sources are interleaved evenly: source ``i``'s ``k``-th sample sits at fractional position
  ``(k + ½) / n_i``, and a stable sort of all positions gives the order. Any prefix of the result
  then holds each source in proportion (within 1 + S/2 samples for S sources, property-tested), so a
  run stopped early has still seen the intended mix.

On disk: ``PREFIX.mix.dataset_index.npy`` (uint16) and ``PREFIX.mix.dataset_sample_index.npy``
(int64) — plain .npy, memory-mappable, no pickles — and ``PREFIX.mix.json`` with the spec, the seed
and per-source counts. Same spec and seed ⇒ byte-identical files.

Every source must have been built with the same tokenizer (the sha256 each ``PREFIX.json`` records,
:mod:`corpus.identity`); the mix JSON records it as ``tokenizer_sha256`` for the training side to check.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_open, remove_stale_temps, write_json
from common.config import load_config
from common.errors import ConfigError
from common.markers import file_sha256
from corpus import identity
from corpus.indexed import IndexedReader


@dataclass
class MixSource:
    name: str
    prefix: str
    samples: int | None = None   # a target count (CaMA style) …
    weight: float | None = None  # … or a weight, shared out of MixConfig.total_samples

    def __post_init__(self) -> None:
        if (self.samples is None) == (self.weight is None):
            raise ConfigError(f"source {self.name!r}: give exactly one of 'samples' or 'weight'")
        if self.samples is not None and self.samples < 0:
            raise ConfigError(f"source {self.name!r}: 'samples' must be >= 0, got {self.samples}")
        if self.weight is not None and not self.weight >= 0:
            raise ConfigError(f"source {self.name!r}: 'weight' must be >= 0, got {self.weight}")


@dataclass
class MixConfig:
    output: str
    sources: list[MixSource] = field(default_factory=list)
    seed: int = 1234
    total_samples: int | None = None  # for weights; default: the sources' sequences added up

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("key 'sources': at least one source is needed")
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"key 'sources': duplicate source name {dupes[0]!r}")
        if len(self.sources) > np.iinfo(np.uint16).max:
            raise ConfigError("key 'sources': too many sources for a uint16 dataset index")


def load_mix_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                    sets: Iterable[str] = ()) -> MixConfig:
    return load_config(MixConfig, path, overrides, sets)


def target_counts(cfg: MixConfig, sizes: list[int]) -> list[int]:
    """Samples to draw from each source: its target, or its weight's share of the total."""
    weighted = [s for s in cfg.sources if s.weight is not None]
    total = cfg.total_samples if cfg.total_samples is not None else sum(sizes)
    weight_sum = sum(s.weight for s in weighted)  # type: ignore[misc]
    if weighted and weight_sum <= 0:
        raise ConfigError("the sources' weights add up to 0")
    fixed = sum(s.samples for s in cfg.sources if s.samples is not None)  # type: ignore[misc]
    share = max(total - fixed, 0)
    counts = []
    for source in cfg.sources:
        if source.samples is not None:
            counts.append(source.samples)
        else:
            counts.append(int(round(share * source.weight / weight_sum)))  # type: ignore[operator]
    return counts


def draw(size: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sequence indices of a source of ``size``: whole seeded epochs, then part of one more."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if size == 0:
        raise ValueError("cannot draw samples from an empty source")
    epochs, rest = divmod(n, size)
    parts = [rng.permutation(size) for _ in range(epochs)]
    if rest:
        parts.append(rng.permutation(size)[:rest])
    return np.concatenate(parts).astype(np.int64)


def interleave(counts: list[int]) -> np.ndarray:
    """Source index of every position, spreading each source evenly over the whole order."""
    keys = [(np.arange(n, dtype=np.float64) + 0.5) / n for n in counts if n]
    owners = [np.full(n, i, dtype=np.uint16) for i, n in enumerate(counts) if n]
    if not keys:
        return np.empty(0, dtype=np.uint16)
    order = np.argsort(np.concatenate(keys), kind="stable")
    return np.concatenate(owners)[order]


def build_mix(cfg: MixConfig) -> dict[str, Any]:
    """Write the two index arrays and ``PREFIX.mix.json``; return the JSON report."""
    sizes, tokens, idx_sha = [], [], []
    for source in cfg.sources:
        if not Path(source.prefix + ".idx").is_file():
            raise ConfigError(f"source {source.name!r}: no index at {source.prefix}.idx")
        with IndexedReader(source.prefix) as reader:
            sizes.append(len(reader))
            tokens.append(np.asarray(reader.sequence_lengths, dtype=np.int64))
        idx_sha.append(file_sha256(source.prefix + ".idx"))
    # Blending token ids of two tokenizers would train on noise: refuse before anything is written.
    tokenizer = identity.common_tokenizer([s.prefix for s in cfg.sources], "mix's sources")
    tokenizer_shas = [identity.recorded_tokenizer_sha256(s.prefix) for s in cfg.sources]
    counts = target_counts(cfg, sizes)
    for source, size, n in zip(cfg.sources, sizes, counts):
        if n and not size:
            raise ConfigError(f"source {source.name!r}: {source.prefix} has no sequences but {n} are asked for")

    # One generator per source, seeded from (seed, position): adding a source leaves others unchanged.
    drawn = [draw(size, n, np.random.default_rng([cfg.seed, i])) for i, (size, n) in enumerate(zip(sizes, counts))]
    dataset_index = interleave(counts)
    dataset_sample_index = np.empty(len(dataset_index), dtype=np.int64)
    for i, picks in enumerate(drawn):
        dataset_sample_index[dataset_index == i] = picks

    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out.parent, f"{out.name}.mix.")
    for name, array in (("dataset_index", dataset_index), ("dataset_sample_index", dataset_sample_index)):
        _save_npy(Path(f"{out}.mix.{name}.npy"), array)
    total_tokens = sum(int(t[d].sum()) for t, d in zip(tokens, drawn))
    report = {
        "index": {"dataset_index": f"{out}.mix.dataset_index.npy",
                  "dataset_sample_index": f"{out}.mix.dataset_sample_index.npy"},
        "seed": cfg.seed,
        "samples": int(len(dataset_index)),
        "tokens": total_tokens,
        # The tokenizer every source records (None when none does): what train/ compares its own with.
        "tokenizer_sha256": tokenizer["sha256"] if tokenizer else None,
        "tokenizer_path": tokenizer.get("path") if tokenizer else None,
        "sources": [
            {
                "name": s.name, "prefix": s.prefix, "idx_sha256": sha, "tokenizer_sha256": tok_sha,
                "sequences": size, "samples": n,
                "epochs": round(n / size, 4) if size else 0.0,
                "tokens": int(t[d].sum()),
                "token_share": round(int(t[d].sum()) / total_tokens, 4) if total_tokens else 0.0,
            }
            for s, sha, tok_sha, size, n, t, d in zip(cfg.sources, idx_sha, tokenizer_shas, sizes, counts, tokens, drawn)
        ],
        "config": asdict(cfg),
    }
    write_json(f"{out}.mix.json", report)
    return report


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def load_mix(prefix: str | os.PathLike, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(dataset_index, dataset_sample_index) of a written mix, memory-mapped; no pickles are read."""
    mode = "r" if mmap else None
    return (np.load(f"{prefix}.mix.dataset_index.npy", mmap_mode=mode, allow_pickle=False),
            np.load(f"{prefix}.mix.dataset_sample_index.npy", mmap_mode=mode, allow_pickle=False))
