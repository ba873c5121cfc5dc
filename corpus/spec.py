"""The one corpus config: which sources, which steps, how the work is split (``python -m corpus build``).

A build is a list of sources. Each source names a layout (a reader of ``corpus.sources``: a name
such as ``wiki`` or ``jsonl``, or ``module:function``) with its options, its paths and
language, and the document steps it goes through (``steps:``, default ``[clean, filter]``; ``[]`` for
``jsonl``; ``to_simplified: tw2s`` — any OpenCC profile of :mod:`corpus.sources.simplify` — puts the
Traditional → Simplified step ``simplify:tw2s`` first). ``dedup`` (exact + near, per source or global;
``null``: none) applies to every source that goes through a prepare stage. The plan (:mod:`corpus.plan`) is derived from this config alone.

A JSON-lines build is the config with one ``jsonl`` source, no steps and ``dedup: null``: its files
go straight to the tokenize + pack stage (split in ``shards`` contiguous file ranges), with no
intermediate copy (``configs/tiny/corpus.yaml``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from common.config import load_config
from common.errors import ConfigError
from corpus import sentences
from corpus.dedup import DedupConfig
from corpus.steps import DEFAULT_STEPS, check_step_names

JSONL = "jsonl"                  # the JSON-lines layout (read by corpus.build's line reader)
GLOBAL_GROUP = "_global_dedup"   # the folder of a global dedup's band tasks


@dataclass(frozen=True)
class DirectFields:
    """What the build's fast JSON-lines path reads of a record (from the ``jsonl`` reader's options)."""

    text_field: str
    lang_field: str | None
    id_field: str | None


def known_layouts() -> list[str]:
    from corpus.sources import READERS

    return sorted(READERS)


def check_layout(where: str, layout: str, options: dict[str, Any]) -> None:
    """Fail before any work on an unknown layout or a bad option, naming the key and the known names
    (corpus.sources resolves the layout — a name, an entry point or module:function — and its options)."""
    from corpus.sources import check_source

    check_source(layout, options, where=where)


@dataclass
class SourceSpec:
    name: str
    layout: str                      # a reader: baike, wudao, wiki, wiki_json, english, github, leetcode, jsonl
    paths: list[str]
    lang: str                        # zh | en | code: cleaning, filters, dedup shingles, sentence rules
    options: dict[str, Any] = field(default_factory=dict)   # the reader's options
    steps: list[str] | None = None   # document steps in order (None: clean, filter; [] for jsonl)
    samples: int | None = None       # mix: a target sample count …
    weight: float | None = None      # … or a weight (with total_samples)
    shards: int | None = None        # prepare (or, for a direct jsonl source, build) tasks; None: shards_per_source
    to_simplified: bool | str | None = None   # zh: OpenCC profile t2s|tw2s|tw2sp|hk2s|hk2sp (true: t2s) as a first step

    def __post_init__(self) -> None:
        where = f"source {self.name!r}"
        check_layout(where, self.layout, self.options)
        if self.lang not in sentences.LANGS:
            raise ConfigError(f"{where}: lang {self.lang!r} is not one of {', '.join(sentences.LANGS)}")
        if self.name == GLOBAL_GROUP or not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"{where}: not usable as a folder name (and {GLOBAL_GROUP!r} is reserved)")
        if self.shards is not None and self.shards < 1:
            raise ConfigError(f"{where}: shards: must be >= 1, got {self.shards}")
        if self.steps is not None:
            check_step_names(self.steps, f"{where}: steps")
        from corpus.sources.simplify import profile

        self.to_simplified = profile(self.to_simplified, f"{where}: key 'to_simplified'")
        if self.to_simplified and self.lang != "zh":
            raise ConfigError(f"{where}: to_simplified converts Chinese; this source is lang {self.lang!r}")
        simplify = [s for s in self.step_names if s.partition(":")[0] == "simplify"]
        if simplify and self.options.get("to_simplified"):   # the wiki readers' own option
            simplify.append(f"options.to_simplified: {self.options['to_simplified']}")
        if len(simplify) > 1:
            raise ConfigError(f"{where}: Traditional → Simplified twice ({', '.join(simplify)}): give "
                              f"to_simplified or a simplify step in steps:, not both")

    @property
    def step_names(self) -> list[str]:
        first = [f"simplify:{self.to_simplified}"] if self.to_simplified else []
        if self.steps is not None:
            return first + list(self.steps)
        return first + ([] if self.layout == JSONL else list(DEFAULT_STEPS))

    def direct_fields(self) -> DirectFields | None:
        """The record keys the build's fast path reads, when the ``jsonl`` options are that simple
        (JSON lines, one key per field, no byte range, no extra keys); else None (the reader runs)."""
        if self.layout != JSONL:
            return None
        from corpus.sources import make_options

        o = make_options(JSONL, **self.options)
        if getattr(o, "format", "auto") == "json" or getattr(o, "byte_range", None) is not None \
                or getattr(o, "keep", None) or any(len(v) != 1 for v in o.fields.values()):
            return None
        return DirectFields(o.keys("text")[0], o.keys("lang")[0], o.keys("id")[0])


@dataclass
class CorpusConfig:
    output_dir: str
    tokenizer: str
    sources: list[SourceSpec] = field(default_factory=list)
    filters: str | None = None       # QualityConfig YAML; None: the defaults
    dedup: dict[str, Any] | None = field(default_factory=dict)   # DedupConfig keys (scope: source | global); null: none
    audit_samples: int = 5           # rejected documents kept per rule and source, for audit
    seq_length: int = 1024
    min_tokens: int = 20
    overlap: bool = False
    add_bos: bool = True
    add_eos: bool = True
    workers: int = 1                 # tokenizing processes of a build task
    batch_bytes: int = 1 << 20       # JSON lines a build worker takes at a time
    max_record_bytes: int = 16 << 20 # a longer line is skipped and counted (record_too_large)
    mix_seed: int = 1234
    total_samples: int | None = None
    shards_per_source: int = 1       # prepare tasks per source (build tasks for a direct jsonl source)
    shard_records: int = 10_000      # a source with fewer units than shards is dealt out in blocks of this many documents
    band_tasks: int = 1              # LSH band ranges (array tasks) per dedup group
    progress: bool | None = None     # tqdm bars; None: when stderr is a terminal
    force: bool = False              # rebuild the tokenize + pack outputs even when their markers match

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("key 'sources': at least one source is needed")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"key 'sources': duplicate source names in {names}")
        for key in ("shards_per_source", "shard_records", "band_tasks", "workers", "batch_bytes", "max_record_bytes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"key {key!r}: must be >= 1, got {getattr(self, key)}")
        try:
            self.dedup_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def dedup_config(self) -> DedupConfig:
        return DedupConfig.from_dict(self.dedup or {}, "key 'dedup'")

    @property
    def dedups(self) -> bool:
        return self.dedup is not None

    def num_shards(self, spec: SourceSpec) -> int:
        return spec.shards or self.shards_per_source

    def direct(self, spec: SourceSpec) -> bool:
        """A jsonl source with no steps and no dedup: its files are the build stage's input."""
        return spec.layout == JSONL and not spec.step_names and not self.dedups and spec.direct_fields() is not None

    def with_tasks(self, n: int) -> "CorpusConfig":
        """The config with ``n`` prepare tasks (build tasks, for a direct jsonl source) for every source,
        whatever its own ``shards`` say (``corpus plan --tasks N``, ``hpc.submit corpus --shards N``).
        The output bytes do not depend on it."""
        from dataclasses import replace

        if n < 1:
            raise ConfigError(f"tasks per source (--tasks, --shards): must be >= 1, got {n}")
        return replace(self, shards_per_source=n, sources=[replace(s, shards=None) for s in self.sources])

    def absolute(self) -> "CorpusConfig":
        """The config with absolute paths, for tasks that may start in another directory."""
        from dataclasses import replace

        sources = [replace(s, paths=[os.path.abspath(p) for p in s.paths]) for s in self.sources]
        return replace(self, sources=sources, output_dir=os.path.abspath(self.output_dir),
                       tokenizer=os.path.abspath(self.tokenizer),
                       filters=os.path.abspath(self.filters) if self.filters else None)


_OLD_KEYS = ("input", "output", "text_field", "lang_field", "shard", "num_shards")


def load_corpus_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None,
                       sets: Iterable[str] = ()) -> CorpusConfig:
    from common.config import load_yaml

    old = [k for k in _OLD_KEYS if k in load_yaml(path)]
    if old:
        raise ConfigError(
            f"{path}: key {old[0]!r}: a JSON-lines build is now a source of the one corpus config: "
            f"output_dir: DIR, sources: [{{name: corpus, layout: jsonl, lang: zh, paths: [...], "
            f"options: {{text_field: text, lang_field: lang}}}}], dedup: null (see configs/tiny/corpus.yaml)")
    return load_config(CorpusConfig, path, overrides, sets)
