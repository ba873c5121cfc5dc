"""English mix: JSON lines ``{text, meta}`` (the LLaMA-like mix: C4, books, arXiv, StackExchange dumps)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from corpus.document import Document
from corpus.sources.common import file_stem, iter_records
from corpus.sources.options import JsonOptions, record_id

SOURCE = "english"


@dataclass(frozen=True)
class EnglishOptions(JsonOptions):
    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {"text": ("text",), "meta": ("meta",), "id": ()}


def read(path: Path, skips: Counter[str], options: EnglishOptions | None = None) -> Iterator[Document]:
    """One Document per line; ``meta`` (if an object) is carried through, anything else is dropped.

    Id ``english:<stem>:<lineno>``, or ``english:<id>`` when ``fields`` names an id key."""
    opts = options or EnglishOptions()
    for lineno, obj in iter_records(path, skips, opts):
        text = opts.get(obj, "text")
        if not isinstance(text, str):
            skips["missing_field"] += 1
            continue
        if not text.strip():
            skips["empty_text"] += 1
            continue
        meta = opts.get(obj, "meta")
        own = record_id(opts.get(obj, "id"))
        doc_id = f"{SOURCE}:{own}" if own else f"{SOURCE}:{file_stem(path)}:{lineno}"
        yield Document(doc_id, SOURCE, text, dict(meta) if isinstance(meta, dict) else {})
