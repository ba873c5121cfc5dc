"""The Document: what every source reader yields and every cleaning, filtering and dedup step takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    id: str              # stable across runs: the same input gives the same id (source-prefixed)
    source: str          # e.g. "baike", "wudao", "wiki_zh", "english", "github", "leetcode"
    text: str
    meta: dict[str, Any] = field(default_factory=dict)   # title, url, lang, license, path, …
