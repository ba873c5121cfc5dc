"""Baidu Baike: JSON lines in two layouts.

- the common dump layout ``{title, summary, sections: [{title, content}]}``;
- the CaMA layout ``{title, content}``.

Text layout chosen: the article title on the first line (the summary rarely repeats it, and a model
should see which entity the text is about), then the summary, then each section as its title on its
own line followed by its content — joined with "\n". Sections whose content is empty are dropped with
their heading (a heading alone is noise).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from corpus.document import Document
from corpus.sources.common import file_stem, get_str, iter_records
from corpus.sources.options import JsonOptions, record_id

SOURCE = "baike"


@dataclass(frozen=True)
class BaikeOptions(JsonOptions):
    FIELDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "title": ("title",), "summary": ("summary",), "sections": ("sections",), "text": ("content",), "id": (),
    }


def _sections_text(sections: Any) -> list[str] | None:
    """Lines for a ``sections`` list, or None if it is not a list of objects."""
    if not isinstance(sections, list):
        return None
    parts: list[str] = []
    for sec in sections:
        if not isinstance(sec, dict):
            return None
        content = (get_str(sec, "content", "text") or "").strip()
        if not content:
            continue
        heading = (get_str(sec, "title") or "").strip()
        if heading:
            parts.append(heading)
        parts.append(content)
    return parts


def read(path: Path, skips: Counter[str], options: BaikeOptions | None = None) -> Iterator[Document]:
    """One Document per entry; id ``baike:<stem>:<lineno>`` (titles repeat across Baike senses, so not the
    title), or ``baike:<id>`` when ``fields`` names an id key."""
    opts = options or BaikeOptions()
    stem = file_stem(path)
    for lineno, obj in iter_records(path, skips, opts):
        title = (opts.get_str(obj, "title") or "").strip()
        if opts.has(obj, "sections") or opts.has(obj, "summary"):
            section_lines = _sections_text(opts.get(obj, "sections", []))
            if section_lines is None:
                skips["invalid_record"] += 1
                continue
            summary = (opts.get_str(obj, "summary") or "").strip()
            body = ([summary] if summary else []) + section_lines
        elif opts.has(obj, "text"):
            content = opts.get(obj, "text")
            if not isinstance(content, str):
                skips["invalid_record"] += 1
                continue
            body = [content.strip()] if content.strip() else []
        else:
            skips["missing_field"] += 1
            continue
        if not body:
            skips["empty_text"] += 1
            continue
        text = "\n".join(([title] if title else []) + body)
        own = record_id(opts.get(obj, "id"))
        yield Document(f"{SOURCE}:{own}" if own else f"{SOURCE}:{stem}:{lineno}", SOURCE, text, {"title": title})
