"""English mix: JSON lines ``{text, meta}`` (the LLaMA-like mix: C4, books, arXiv, StackExchange dumps)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from corpus.document import Document
from corpus.sources.common import file_stem, iter_json_records

SOURCE = "english"


def read(path: Path, skips: Counter[str]) -> Iterator[Document]:
    """One Document per line; ``meta`` (if an object) is carried through, anything else is dropped."""
    for lineno, obj in iter_json_records(path, skips):
        text = obj.get("text")
        if not isinstance(text, str):
            skips["missing_field"] += 1
            continue
        if not text.strip():
            skips["empty_text"] += 1
            continue
        meta = obj.get("meta")
        yield Document(f"{SOURCE}:{file_stem(path)}:{lineno}", SOURCE, text, dict(meta) if isinstance(meta, dict) else {})
