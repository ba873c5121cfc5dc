"""Any JSON layout (``json``, alias ``jsonl``): records with a text field → one Document each.

The layout for a dump that has no reader of its own, configured through options only: the field
mapping (``fields: {text: body, id: uid, title: headline, lang: language}``), the file format (JSON lines,
one pretty-printed object per file, an array; see :mod:`corpus.sources.options`) and ``source``, the
name Documents carry. It is also what a plain JSON-lines build reads (``{text, lang}`` lines).

Id ``<source>:<id field>`` when the record has one, else ``<source>:<stem>:<line or record number>``.
``meta``: the record's ``meta`` object (if it is one), then ``title``, ``lang`` and the ``keep`` keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from common.errors import ConfigError
from corpus.document import Document
from corpus.sources.common import file_stem, iter_records
from corpus.sources.options import JsonOptions, record_id


@dataclass(frozen=True)
class GenericOptions(JsonOptions):
    source: str = "json"                                  # Document.source (and the id prefix)
    keep: list[str] = field(default_factory=list)         # more record keys copied into meta

    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "text": ("text",), "title": ("title",), "id": ("id",), "lang": ("lang",), "meta": ("meta",),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.source or ":" in self.source or "/" in self.source:
            raise ConfigError(f"key 'source': a name without ':' or '/', got {self.source!r}")


def read(path: Path, skips: Counter[str], options: GenericOptions | None = None) -> Iterator[Document]:
    opts = options or GenericOptions()
    stem = file_stem(path)
    for n, obj in iter_records(path, skips, opts):
        text = opts.get(obj, "text")
        if not isinstance(text, str):
            skips["missing_field"] += 1
            continue
        if not text.strip():
            skips["empty_text"] += 1
            continue
        raw_meta = opts.get(obj, "meta")
        meta: dict[str, Any] = dict(raw_meta) if isinstance(raw_meta, dict) else {}
        for name in ("title", "lang"):
            value = opts.get_str(obj, name)
            if value is not None:
                meta[name] = value
        for key in opts.keep:
            if key in obj:
                meta[key] = obj[key]
        own = record_id(opts.get(obj, "id"))
        doc_id = f"{opts.source}:{own}" if own else f"{opts.source}:{stem}:{n}"
        yield Document(doc_id, opts.source, text, meta)
