"""Options every reader shares: the byte range of a split file, and for JSON layouts the field mapping
and the file format.

Each reader has its own frozen dataclass of options, loaded with :func:`common.config.from_dict`, so an
unknown option is named with a "did you mean" and the known ones, and a value of the wrong type is named
with its key — before any file is opened (:func:`corpus.sources.check_source`).

JSON layouts (:class:`JsonOptions` and its subclasses):

- ``fields`` maps a reader's canonical field names (``text``, ``title``, ``id``, ``lang``, …; the subclass's
  ``FIELDS`` lists them with their default record keys) to the record's own keys, a key or a list of
  alternatives in preference order: ``fields: {text: body, id: uid, title: headline}``. A name left out
  keeps its defaults; a name the reader does not know is an error.
- ``format``: ``lines`` (one JSON value per line), ``json`` (the file is JSON text — one object, possibly
  pretty-printed over many lines, several objects one after another, or an array of objects, streamed
  element by element), or ``auto``: ``lines`` for ``*.jsonl``, otherwise ``lines`` when the first non-blank
  line is a whole JSON object by itself, else ``json`` (an array, a multi-line object, a first line over
  1 MiB). A directory of one-object files is simply a
  directory input: each file is read in turn.
- ``byte_range: [start, end]``: read only the lines that start in ``(start, end]`` (``[0, end]`` for the first
  range) of an uncompressed JSON-lines file — the rule of Hadoop's line splits, so cutting a file at any
  offsets reads every line exactly once (:func:`corpus.sources.byte_ranges` makes the ranges).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from common.config import unknown_key
from common.errors import ConfigError


def check_byte_range(byte_range: list[int] | None) -> None:
    if byte_range is None:
        return
    if len(byte_range) != 2 or not 0 <= byte_range[0] <= byte_range[1]:
        raise ConfigError(f"key 'byte_range': expected [start, end] with 0 <= start <= end, got {byte_range!r}")


@dataclass(frozen=True)
class FieldOptions:
    """A field mapping: the options every JSON layout shares."""

    fields: dict[str, list[str]] = field(default_factory=dict)   # canonical name -> record key(s)

    # canonical field name -> the record keys tried by default, in preference order (per reader)
    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {"text": ("text",), "title": ("title",), "id": ("id",)}

    def __post_init__(self) -> None:
        known = type(self).FIELDS
        fixed: dict[str, list[str]] = {}
        for name, keys in self.fields.items():
            if name not in known:
                raise unknown_key("key 'fields'", name, known)
            keys = [keys] if isinstance(keys, str) else list(keys)
            if not keys or not all(isinstance(k, str) and k for k in keys):
                raise ConfigError(f"key 'fields': {name!r}: expected a record key or a list of them, got {keys!r}")
            fixed[name] = keys
        object.__setattr__(self, "fields", fixed)

    def keys(self, name: str) -> tuple[str, ...]:
        """The record keys of canonical field ``name``: the mapping's, else the reader's defaults."""
        mapped = self.fields.get(name)
        return tuple(mapped) if mapped else type(self).FIELDS[name]

    def get_str(self, obj: dict[str, Any], name: str) -> str | None:
        """The first mapped key of ``name`` holding a string (None if none does)."""
        for key in self.keys(name):
            value = obj.get(key)
            if isinstance(value, str):
                return value
        return None

    def get(self, obj: dict[str, Any], name: str, default: Any = None) -> Any:
        """The value of the first mapped key of ``name`` present in ``obj``."""
        for key in self.keys(name):
            if key in obj:
                return obj[key]
        return default

    def has(self, obj: dict[str, Any], name: str) -> bool:
        return any(key in obj for key in self.keys(name))



@dataclass(frozen=True)
class JsonOptions(FieldOptions):
    format: Literal["auto", "lines", "json"] = "auto"
    byte_range: list[int] | None = None     # [start, end): one split of an uncompressed JSON-lines file
    max_record_bytes: int = 64 << 20        # a longer line / element / file is skipped (bounded memory)
    chunk_bytes: int = 1 << 20              # read size of the streaming JSON parser (tests force straddling)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_byte_range(self.byte_range)
        if self.byte_range is not None:
            object.__setattr__(self, "byte_range", [int(self.byte_range[0]), int(self.byte_range[1])])
        for key in ("max_record_bytes", "chunk_bytes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"key {key!r}: must be >= 1, got {getattr(self, key)}")


def record_id(value: Any) -> str | None:
    """A record's own id as text (a non-empty string or an integer), else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None
