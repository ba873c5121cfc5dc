"""Corpus steps: small units that map a stream of Documents to a stream of Documents.

A step is called with an iterator of :class:`~corpus.document.Document` and yields the Documents it
keeps (changed or not), counting in its :class:`StepStats` how many it read, kept and dropped, by
reason, with a few ``file:line`` (or id) examples per reason. Steps hold no state between documents
beyond their counters, so a chain of them streams: memory does not grow with the input.

The document steps a source may name in its ``steps:`` list are in :data:`STEPS` (``clean``,
``filter``, and ``simplify:PROFILE``: OpenCC Traditional → Simplified, the step a source's
``to_simplified`` puts first); the whole-corpus steps — exact + near dedup, tokenize + pack, write
``.bin/.idx``, mix — need every document (or every source) at once and are stages of the plan (:mod:`corpus.plan`).
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
    takes_arg = False   # True: named "name:ARG" in a steps list, ARG passed to __init__

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


class Simplify(Step):
    """Traditional → Simplified with the OpenCC profile of its name's argument (``simplify:tw2s``;
    a source's ``to_simplified: tw2s`` puts it first), on the text and a ``title`` in meta."""

    name = "simplify"
    takes_arg = True

    def __init__(self, lang: str, quality: QualityConfig | None = None, profile: str = "t2s") -> None:
        super().__init__()
        from corpus.sources.simplify import converter
        from corpus.sources.simplify import profile as check_profile

        self.convert = converter(check_profile(profile) or "t2s")

    def apply(self, doc: Document) -> Document | str:
        doc.text = self.convert(doc.text)
        if isinstance(doc.meta.get("title"), str):
            doc.meta["title"] = self.convert(doc.meta["title"])
        return doc


STEPS: dict[str, type[Step]] = {"clean": Clean, "filter": Filter, "simplify": Simplify}
DEFAULT_STEPS = ("clean", "filter")


def check_step_names(names: Iterable[str], where: str) -> None:
    """A step is a name of STEPS, ``name:ARG`` for one that takes an argument (``simplify:tw2s``)."""
    for i, full in enumerate(names):
        name, colon, arg = full.partition(":")
        if name not in STEPS:
            raise ConfigError(f"{where}[{i}]: unknown step {full!r} (known: {', '.join(STEPS)}; dedup, pack, "
                              f"write and mix are stages of every plan)")
        if bool(colon) != STEPS[name].takes_arg:
            form = f"{name}:ARG" if colon == "" else name
            raise ConfigError(f"{where}[{i}]: step {full!r}: write it {form!r}")
        if name == "simplify":
            from corpus.sources.simplify import profile

            profile(arg, f"{where}[{i}]: step {full!r}")


def make_steps(names: Iterable[str], lang: str, quality: QualityConfig | None) -> list[Step]:
    steps: list[Step] = []
    for full in names:
        name, colon, arg = full.partition(":")
        steps.append(STEPS[name](lang, quality, arg) if colon else STEPS[name](lang, quality))  # type: ignore[call-arg]
    return steps


def chain(docs: Iterable[Document], steps: list[Step]) -> Iterator[Document]:
    """``docs`` through every step in order (lazily: one document at a time goes down the chain)."""
    out: Iterable[Document] = docs
    for step in steps:
        out = step(out)
    return iter(out)
