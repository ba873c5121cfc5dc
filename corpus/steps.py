"""Corpus steps: small units that map a stream of Documents to a stream of Documents.

A step is called with an iterator of :class:`~corpus.document.Document` and yields the Documents it
keeps (changed or not), counting in its :class:`StepStats` how many it read, kept and dropped, by
reason, with a few ``file:line`` (or id) examples per reason. Steps hold no state between documents
beyond their counters, so a chain of them streams: memory does not grow with the input.

The document steps a source may name in its ``steps:`` list are in :data:`STEPS` (``clean``,
``filter``); the whole-corpus steps — exact + near dedup, tokenize + pack, write ``.bin/.idx``, mix —
need every document (or every source) at once and are stages of the plan (:mod:`corpus.plan`).
Unknown names fail when the config loads, naming the known ones (:func:`check_step_names`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from common.errors import ConfigError
from corpus.clean import clean
from corpus.document import Document
from corpus.quality import QualityConfig, check
from corpus.sentences import LANGS

EXAMPLES_PER_REASON = 5


@dataclass
class StepStats:
    """What one step saw: read = kept + sum(dropped)."""

    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, where: str) -> None:
        self.dropped[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < EXAMPLES_PER_REASON:
            kept.append(where)

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}


def where(doc: Document) -> str:
    """A document's place in its input, for examples: ``file:line`` when the reader recorded it."""
    path, line = doc.meta.get("path"), doc.meta.get("line")
    return f"{path}:{line}" if path and line else (str(path) if path else doc.id)


class Step:
    """One unit of a chain. Subclasses implement :meth:`apply`: the Document to pass on, or a str
    (the reason it is dropped)."""

    name = "step"

    def __init__(self) -> None:
        self.stats = StepStats()
        self.on_drop = None   # optional callback (doc, reason): the prepare stage keeps an audit sample

    def apply(self, doc: Document) -> Document | str:
        raise NotImplementedError

    def __call__(self, docs: Iterable[Document]) -> Iterator[Document]:
        stats = self.stats
        for doc in docs:
            stats.read += 1
            out = self.apply(doc)
            if isinstance(out, str):
                stats.drop(out, where(doc))
                if self.on_drop is not None:
                    self.on_drop(doc, out)
                continue
            stats.kept += 1
            yield out


def doc_lang(doc: Document, default: str) -> str:
    """The document's own zh | en | code (a jsonl record's lang field), else its source's; a reader's
    other ``lang`` values (a programming language) are not ours."""
    lang = doc.meta.get("lang")
    return lang if lang in LANGS else default


class Clean(Step):
    """Text cleaning for the document's language (corpus.clean); an empty result is dropped."""

    name = "clean"

    def __init__(self, lang: str, quality: QualityConfig | None = None) -> None:
        super().__init__()
        self.lang = lang

    def apply(self, doc: Document) -> Document | str:
        text = clean(doc.text, doc_lang(doc, self.lang))
        if not text.strip():
            return "empty_after_cleaning"
        doc.text = text
        return doc


class Filter(Step):
    """The quality and harmful-content rules of corpus.quality; the first failing rule is the reason."""

    name = "filter"

    def __init__(self, lang: str, quality: QualityConfig | None = None) -> None:
        super().__init__()
        self.lang, self.quality = lang, quality

    def apply(self, doc: Document) -> Document | str:
        rule = check(doc.text, doc_lang(doc, self.lang), self.quality)
        return doc if rule is None else rule


STEPS: dict[str, type[Step]] = {"clean": Clean, "filter": Filter}
DEFAULT_STEPS = ("clean", "filter")


def check_step_names(names: Iterable[str], where: str) -> None:
    for i, name in enumerate(names):
        if name not in STEPS:
            raise ConfigError(f"{where}[{i}]: unknown step {name!r} (known: {', '.join(STEPS)}; dedup, pack, "
                              f"write and mix are stages of every plan)")


def make_steps(names: Iterable[str], lang: str, quality: QualityConfig | None) -> list[Step]:
    return [STEPS[n](lang, quality) for n in names]


def chain(docs: Iterable[Document], steps: list[Step]) -> Iterator[Document]:
    """``docs`` through every step in order (lazily: one document at a time goes down the chain)."""
    out: Iterable[Document] = docs
    for step in steps:
        out = step(out)
    return iter(out)
