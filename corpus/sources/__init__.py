"""Source readers: every raw layout → a stream of :class:`corpus.document.Document`.

Interface (the same for every layout): ``read(path, skips, options=None) -> Iterator[Document]``

- streams one file (or, for ``github``, one repository directory) — memory does not grow with its size;
- yields Documents with ids that are a pure function of the input (stable across runs);
- counts each malformed/filtered record in ``skips[reason]`` and never raises on bad records.

``READERS`` maps layout names to readers, ``OPTIONS`` maps layouts that take options to their frozen
options dataclass, and :func:`read_source` expands files/dirs/globs and chains them in sorted order.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from corpus.document import Document
from corpus.reader import COMPRESSED, InputError, expand_inputs
from corpus.sources import baike, english, github, leetcode, wiki, wudao
from corpus.sources.github import GithubOptions
from corpus.sources.wiki import WikiOptions
from corpus.sources.wudao import WudaoOptions

Reader = Callable[..., Iterator[Document]]

READERS: dict[str, Reader] = {
    "baike": baike.read,
    "wudao": wudao.read,
    "wiki": wiki.read_xml,
    "wiki_json": wiki.read_json,
    "english": english.read,
    "github": github.read,
    "leetcode": leetcode.read,
}
OPTIONS: dict[str, type] = {"wudao": WudaoOptions, "wiki": WikiOptions, "wiki_json": WikiOptions, "github": GithubOptions}

_JSONL = (".jsonl", ".json")
# File names a directory input contributes, per layout (before a .gz/.bz2/.xz/.zst suffix).
SUFFIXES: dict[str, tuple[str, ...]] = {
    "baike": _JSONL, "wudao": (".json",), "wiki": (".xml",), "wiki_json": _JSONL,
    "english": _JSONL, "github": _JSONL, "leetcode": _JSONL,
}
_COMPRESSION = ("",) + COMPRESSED


def expand(layout: str, patterns: Iterable[str | Path]) -> list[Path]:
    """Input units for ``layout``: files, directories (their matching files, recursively) and globs, sorted.

    For ``github`` a directory is a repository (one unit, walked by the reader), because repositories
    hold arbitrary files; its JSON-lines files are given as files or globs.
    """
    if layout not in READERS:
        raise InputError(f"unknown source layout {layout!r}; known: {', '.join(sorted(READERS))}")
    suffixes = tuple(s + c for s in SUFFIXES[layout] for c in _COMPRESSION)
    return expand_inputs(patterns, suffixes, what=layout, dir_is_unit=layout == "github", glob_dirs=True)


def make_options(layout: str, **options: Any) -> Any:
    """The layout's options dataclass from keyword values (unknown keys fail with their name)."""
    cls = OPTIONS.get(layout)
    if cls is None:
        if options:
            raise TypeError(f"source layout {layout!r} takes no options, got: {', '.join(sorted(options))}")
        return None
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown option(s) for {layout!r}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**options)


def read_source(layout: str, paths: Iterable[str | Path], skips: Counter[str], **options: Any) -> Iterator[Document]:
    """All Documents of ``layout`` from ``paths`` (files, dirs, globs), in sorted input order.

    Inputs and options are checked eagerly (bad configuration fails before any reading); reading itself
    is lazy.
    """
    units = expand(layout, paths)
    opts = make_options(layout, **options)
    reader = READERS[layout]
    if opts is None:
        return itertools.chain.from_iterable(reader(p, skips) for p in units)
    return itertools.chain.from_iterable(reader(p, skips, opts) for p in units)


__all__ = ["READERS", "OPTIONS", "GithubOptions", "WikiOptions", "WudaoOptions", "expand", "make_options", "read_source"]
