"""Source readers: every raw layout → a stream of :class:`corpus.document.Document`.

Interface (the same for every layout): ``read(path, skips, options=None) -> Iterator[Document]``

- streams one file (or, for ``github``, one repository directory) — memory does not grow with its size;
- yields Documents with ids that are a pure function of the input (stable across runs and splits);
- counts each malformed/filtered record in ``skips[reason]`` and never raises on bad records.

A layout is a built-in name (``READERS``), a name registered with :func:`register_reader` or through the
``corpus.readers`` entry-point group, or a dotted path ``package.module:function`` to a function with the
reader interface (it may carry ``options_type`` — its options dataclass —, ``suffixes`` and ``split``
attributes; see :mod:`corpus.sources.registry`). Every reader's options are a frozen dataclass loaded
with :func:`common.config.from_dict`.

What a planner calls, before any work:

- :func:`check_source` ``(layout, options, paths=None, where=...)`` — the layout resolves, the options
  (and the paths, when given) are valid; else a :class:`~common.errors.UserError` naming the key and the
  known names. Returns the options object.
- :func:`resolve_reader` ``(layout) -> ReaderSpec`` — the function, its options type, its file suffixes.
- :func:`expand` — the input units of a source; :func:`byte_ranges` — how one big file splits into tasks
  (then each task passes ``byte_range`` in the options).

:func:`read_source` expands files/dirs/globs and chains them in sorted order.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from corpus.document import Document
from corpus.reader import InputError, expand_inputs
from corpus.sources import splits
from corpus.sources.common import json_format
from corpus.sources.github import GithubOptions
from corpus.sources.options import JsonOptions
from corpus.sources.registry import (OPTIONS, READERS, SUFFIXES, LayoutError, OptionsError, Reader, ReaderSpec,
                                     register_reader, resolve_reader)
from corpus.sources.wiki import WikiJsonOptions, WikiOptions
from corpus.sources.wudao import WudaoOptions


def expand(layout: str, patterns: Iterable[str | Path]) -> list[Path]:
    """Input units for ``layout``: files, directories (their matching files, recursively) and globs, sorted.

    For ``github`` a directory is a repository (one unit, walked by the reader), because repositories
    hold arbitrary files; its JSON-lines files are given as files or globs.
    """
    spec = resolve_reader(layout)
    return expand_inputs(patterns, spec.all_suffixes(), what=layout, dir_is_unit=spec.dir_is_unit, glob_dirs=True)


def make_options(layout: str, **options: Any) -> Any:
    """The layout's options object from keyword values; an unknown or ill-typed option raises
    :class:`OptionsError` (a ConfigError and a TypeError) naming it, the known ones and a "did you mean"."""
    return resolve_reader(layout).options(options)


def check_source(layout: str, options: Mapping[str, Any] | Any = None, paths: Iterable[str | Path] | None = None,
                 where: str = "source") -> Any:
    """Validate a source spec before any work: the layout resolves, its options load, and (when given)
    the paths name readable inputs. Returns the options object; raises a UserError starting with ``where``."""
    spec = resolve_reader(layout, where=f"{where}: key 'layout'")
    opts = spec.options(options, where=f"{where}: key 'options'")
    if paths is not None:
        try:
            units = expand(layout, paths)
        except InputError as exc:
            raise InputError(f"{where}: key 'paths': {exc}") from None
        if getattr(opts, "byte_range", None) is not None and len(units) != 1:
            raise OptionsError(f"{where}: key 'options': byte_range needs exactly one input file, got {len(units)}")
    return opts


def read_source(layout: str, paths: Iterable[str | Path], skips: Counter[str], **options: Any) -> Iterator[Document]:
    """All Documents of ``layout`` from ``paths`` (files, dirs, globs), in sorted input order.

    Inputs and options are checked eagerly (bad configuration fails before any reading); reading itself
    is lazy.
    """
    spec = resolve_reader(layout)
    opts = spec.options(options)
    units = expand(layout, paths)
    if getattr(opts, "byte_range", None) is not None and len(units) != 1:
        raise OptionsError(f"source layout {layout!r}: byte_range needs exactly one input file, got {len(units)}")
    return itertools.chain.from_iterable(spec.call(p, skips, opts) for p in units)


def byte_ranges(layout: str, path: str | Path, n: int, options: Mapping[str, Any] | Any = None) -> list[tuple[int, int]] | None:
    """At most ``n`` contiguous byte ranges covering ``path`` for ``n`` tasks, or None when this layout or
    file cannot be split (see :mod:`corpus.sources.splits`). Each task reads its range by adding
    ``byte_range: [start, end]`` to the options."""
    if n < 1:
        raise ValueError(f"byte_ranges: n must be >= 1, got {n}")
    spec = resolve_reader(layout)
    opts = spec.options(options)
    path = Path(path)
    if spec.split == "bz2_streams":
        return splits.multistream_ranges(path, n, getattr(opts, "index", None))
    if spec.split == "lines":
        if path.is_dir() or not path.is_file():
            return None
        if isinstance(opts, JsonOptions) and json_format(path, opts) != "lines":
            return None
        return splits.line_ranges(path, n)
    return None


__all__ = [
    "READERS", "OPTIONS", "SUFFIXES", "Reader", "ReaderSpec", "LayoutError", "OptionsError",
    "GithubOptions", "WikiOptions", "WikiJsonOptions", "WudaoOptions",
    "byte_ranges", "check_source", "expand", "make_options", "read_source", "register_reader", "resolve_reader",
]
