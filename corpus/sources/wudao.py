"""WuDaoCorpus 2.0 (base): each file is ONE JSON array of ``{id, uniqueKey, titleUkey, dataType, title, content}``.

Files are ~200 MB, so the array is never loaded whole: :mod:`corpus.sources.jsonstream` parses one
element at a time from a sliding text window (memory: chunk size + the largest element), tells an
element cut by the window from a broken one, and resumes after a broken element at the next
``}`` ``,`` ``{`` boundary. Field names can be remapped (``fields: {text: body}``) for look-alike dumps.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from common.errors import ConfigError
from corpus.document import Document
from corpus.reader import STREAM_ERRORS, open_binary
from corpus.sources.common import file_stem
from corpus.sources.jsonstream import iter_elements
from corpus.sources.options import FieldOptions

SOURCE = "wudao"


@dataclass(frozen=True)
class WudaoOptions(FieldOptions):
    chunk_bytes: int = 1 << 20           # bytes read per refill; tests use a tiny value to force straddling
    max_element_bytes: int = 16 << 20    # an element longer than this is treated as broken (bounds memory)

    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "text": ("content",), "title": ("title",), "id": ("uniqueKey",),
        "data_type": ("dataType",), "title_key": ("titleUkey",),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("chunk_bytes", "max_element_bytes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"key {key!r}: must be >= 1, got {getattr(self, key)}")


def read(path: Path, skips: Counter[str], options: WudaoOptions | None = None) -> Iterator[Document]:
    """One Document per array element with a non-empty ``content``.

    Id ``wudao:<uniqueKey>`` (WuDao's content hash, stable and global); else ``wudao:<stem>:<index>``
    where index counts the elements that parsed (a broken element does not take a number).
    """
    opts = options or WudaoOptions()
    stem = file_stem(path)
    index = -1
    try:
        with open_binary(path) as f:
            for obj in iter_elements(f, skips, opts.chunk_bytes, opts.max_element_bytes, require_array=True):
                index += 1
                if not isinstance(obj, dict):
                    skips["invalid_record"] += 1
                    continue
                content = opts.get(obj, "text")
                if not isinstance(content, str):
                    skips["missing_field"] += 1
                    continue
                title = opts.get_str(obj, "title") or ""
                if not content.strip():
                    skips["empty_text"] += 1
                    continue
                key = opts.get(obj, "id")
                doc_id = f"{SOURCE}:{key}" if isinstance(key, str) and key else f"{SOURCE}:{stem}:{index}"
                # The title is its own line unless the content already starts with it (common for news).
                text = content if not title.strip() or content.lstrip().startswith(title.strip()) else f"{title.strip()}\n{content}"
                meta = {"title": title, "dataType": opts.get(obj, "data_type"), "uniqueKey": key, "titleUkey": opts.get(obj, "title_key")}
                yield Document(doc_id, SOURCE, text, {k: v for k, v in meta.items() if v is not None})
    except STREAM_ERRORS:
        skips["truncated_input"] += 1
