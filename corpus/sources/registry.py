"""Which function reads a layout, with which options: built-in names, registered names, dotted paths.

A user adds a reader without editing the package, in one of three ways:

- ``layout: mypkg.readers:read_forum`` — a dotted path ``module:function`` (imported when the source is
  checked, so a typo fails before any work);
- an entry point in the ``corpus.readers`` group of an installed package (``read_forum =
  "mypkg.readers:read_forum"``), then ``layout: read_forum``;
- :func:`register_reader` from Python.

The function has the reader interface ``read(path, skips, options) -> Iterator[Document]``. It may
carry attributes: ``options_type`` (its options dataclass; else the annotation of its ``options``
parameter, when that is a dataclass; a reader without one takes no options and is called as
``read(path, skips)``), ``suffixes`` (file names a directory input contributes; default: every file),
``dir_is_unit`` (a directory is one input, walked by the reader) and ``split`` (``"lines"`` when it reads
JSON lines through :func:`corpus.sources.common.iter_records`, so one file can be split in byte ranges).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from common.config import close_match, from_dict
from common.errors import ConfigError
from corpus.document import Document
from corpus.reader import COMPRESSED, InputError
from corpus.sources import baike, english, generic, github, leetcode, wiki, wudao

Reader = Callable[..., Iterator[Document]]
ENTRY_POINT_GROUP = "corpus.readers"


class LayoutError(InputError, ConfigError):
    """A source layout names no reader (the message lists the known names)."""


class OptionsError(ConfigError, TypeError):
    """A reader option is unknown or has the wrong type (a TypeError too: callers caught that before)."""


@dataclass(frozen=True)
class ReaderSpec:
    name: str
    read: Reader
    options_type: type | None = None
    suffixes: tuple[str, ...] = ("",)          # before a compression suffix; "" = every file
    dir_is_unit: bool = False
    split: Literal["lines", "bz2_streams"] | None = None

    def all_suffixes(self) -> tuple[str, ...]:
        if "" in self.suffixes:
            return ("",)
        return tuple(s + c for s in self.suffixes for c in ("",) + COMPRESSED)

    def options(self, values: Mapping[str, Any] | Any = None, where: str | None = None) -> Any:
        """The options object: ``values`` (a mapping, or already an options object) checked against the
        options dataclass; None for a reader without options given none."""
        where = where or f"source layout {self.name!r}: options"
        cls = self.options_type
        if cls is not None and isinstance(values, cls):
            return values
        values = dict(values or {})
        if cls is None:
            if values:
                raise OptionsError(f"{where}: layout {self.name!r} takes no options, got: {', '.join(sorted(values))}")
            return None
        known = [f.name for f in dataclasses.fields(cls) if f.init]
        for name in values:
            if name not in known:
                raise OptionsError(f"{where}: unknown option {name!r}{close_match(str(name), known)}; "
                                   f"known options: {', '.join(sorted(known))}")
        try:
            return from_dict(cls, values, where)
        except ConfigError as exc:
            raise OptionsError(str(exc)) from None

    def call(self, path: Path, skips: Counter[str], options: Any) -> Iterator[Document]:
        if options is None and self.options_type is None:
            return self.read(path, skips)
        return self.read(path, skips, options)


_JSONL = (".jsonl", ".json")
_BUILTIN = [
    ReaderSpec("baike", baike.read, baike.BaikeOptions, _JSONL, split="lines"),
    ReaderSpec("wudao", wudao.read, wudao.WudaoOptions, (".json",)),
    ReaderSpec("wiki", wiki.read_xml, wiki.WikiOptions, (".xml",), split="bz2_streams"),
    ReaderSpec("wiki_json", wiki.read_json, wiki.WikiJsonOptions, _JSONL, split="lines"),
    ReaderSpec("english", english.read, english.EnglishOptions, _JSONL, split="lines"),
    ReaderSpec("github", github.read, github.GithubOptions, _JSONL, dir_is_unit=True, split="lines"),
    ReaderSpec("leetcode", leetcode.read, leetcode.LeetcodeOptions, _JSONL, split="lines"),
    ReaderSpec("json", generic.read, generic.GenericOptions, _JSONL, split="lines"),
    ReaderSpec("jsonl", generic.read, generic.GenericOptions, _JSONL, split="lines"),
]
_REGISTRY: dict[str, ReaderSpec] = {s.name: s for s in _BUILTIN}

# The registry's views under the names callers used before (kept in step by register_reader).
READERS: dict[str, Reader] = {s.name: s.read for s in _BUILTIN}
OPTIONS: dict[str, type] = {s.name: s.options_type for s in _BUILTIN if s.options_type is not None}
SUFFIXES: dict[str, tuple[str, ...]] = {s.name: s.suffixes for s in _BUILTIN}


def register_reader(name: str, read: Reader, options_type: type | None = None, suffixes: tuple[str, ...] = ("",),
                    dir_is_unit: bool = False, split: Literal["lines", "bz2_streams"] | None = None) -> ReaderSpec:
    """Make ``name`` a layout (it may not shadow a built-in one)."""
    if not name or ":" in name:
        raise ValueError(f"a layout name has no ':' (that is a dotted path), got {name!r}")
    if name in _REGISTRY and _REGISTRY[name].read is not read:
        raise ValueError(f"layout {name!r} is already registered")
    spec = _spec(name, read, options_type, suffixes, dir_is_unit, split)
    _REGISTRY[name] = spec
    READERS[name] = read
    SUFFIXES[name] = spec.suffixes
    if spec.options_type is not None:
        OPTIONS[name] = spec.options_type
    return spec


def _options_type(read: Reader) -> type | None:
    declared = getattr(read, "options_type", None)
    if declared is not None:
        return declared
    try:
        hints = typing.get_type_hints(read)
        params = inspect.signature(read).parameters
    except Exception:   # unresolvable annotations or no signature: a reader without options
        return None
    if "options" not in params:
        return None
    hint = hints.get("options")
    for tp in (hint, *typing.get_args(hint)):
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return tp
    return None


def _spec(name: str, read: Any, options_type: type | None = None, suffixes: Any = None,
          dir_is_unit: bool | None = None, split: Any = None) -> ReaderSpec:
    if not callable(read):
        raise LayoutError(f"layout {name!r}: {read!r} is not a function")
    options_type = options_type or _options_type(read)
    if options_type is not None and not dataclasses.is_dataclass(options_type):
        raise LayoutError(f"layout {name!r}: options_type {options_type!r} is not a dataclass")
    suffixes = tuple(suffixes if suffixes is not None else getattr(read, "suffixes", ("",)))
    split = split if split is not None else getattr(read, "split", None)
    if split not in (None, "lines", "bz2_streams"):
        raise LayoutError(f"layout {name!r}: split must be 'lines' or 'bz2_streams', got {split!r}")
    dir_is_unit = bool(dir_is_unit if dir_is_unit is not None else getattr(read, "dir_is_unit", False))
    return ReaderSpec(name, read, options_type, suffixes, dir_is_unit, split)


@lru_cache(maxsize=None)
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_layouts() -> list[str]:
    return sorted(set(_REGISTRY) | set(_entry_points()))


def resolve_reader(layout: str, where: str = "source") -> ReaderSpec:
    """The reader of ``layout`` (a name or ``module:function``); LayoutError naming the known names."""
    if not isinstance(layout, str) or not layout:
        raise LayoutError(f"{where}: expected a layout name or module:function, got {layout!r}")
    spec = _REGISTRY.get(layout)
    if spec is not None:
        return spec
    if ":" in layout:
        return _dotted(layout, where)
    ep = _entry_points().get(layout)
    if ep is not None:
        try:
            read = ep.load()
        except Exception as exc:
            raise LayoutError(f"{where}: layout {layout!r} (entry point {ep.value}) cannot be loaded: "
                              f"{type(exc).__name__}: {exc}") from None
        spec = _spec(layout, read)
        _REGISTRY[layout] = spec
        return spec
    known = known_layouts()
    raise LayoutError(f"{where}: unknown source layout {layout!r}{close_match(layout, known)}; known: "
                      f"{', '.join(known)} (or a dotted path module:function)")


def _dotted(layout: str, where: str) -> ReaderSpec:
    module_name, _, attr = layout.partition(":")
    if not module_name or not attr:
        raise LayoutError(f"{where}: {layout!r} is not a dotted path module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LayoutError(f"{where}: layout {layout!r}: cannot import module {module_name!r} ({exc})") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LayoutError(f"{where}: layout {layout!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    return _spec(layout, obj)
