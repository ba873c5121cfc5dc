"""IE input files as samples (one per sentence or record); bad ones are skipped, counted by reason.

- NER, CoNLL-style BIO: one ``token ... tag`` line per token (first column the token, last the tag,
  so CoNLL-2003's four columns work), a blank line between sentences, ``-DOCSTART-`` lines ignored.
  zh is character-level (tokens joined without spaces), en word-level (joined with spaces, no space
  before closing punctuation). Tags are ``O``, ``B-TYPE``, ``I-TYPE``; an ``I-`` must continue a
  ``B-``/``I-`` of the same type.
- Relations, JSON lines ``{"text", "relations": [{"head", "relation", "tail"}]}``.
- Events, JSON lines in DuEE's layout ``{"text", "event_list": [{"event_type", "trigger",
  "arguments": [{"role", "argument"}]}]}`` or an ACE/OneIE-like one ``{"sentence",
  "event_mentions": [{"event_type", "trigger": {"text"}, "arguments": [{"role", "text"}]}]}``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from common.errors import InputDataError
from common.jsonl import BadLine, iter_jsonl
from train.ie.format import Event, dedupe
from train.ie.schema import IEError
from train.skipped import Skipped, bad_line

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Sample:
    """One input sample: where it came from, its text and its items (labels for NER)."""

    where: str
    text: str
    items: tuple[Any, ...]


_NO_SPACE_BEFORE = {".", ",", "!", "?", ";", ":", "%", ")", "]", "}", "'s", "n't", "'re", "'ve", "'ll", "'d", "'m"}
_NO_SPACE_AFTER = {"(", "[", "{", "$", "#"}


def join_tokens(tokens: Sequence[str], lang: str) -> str:
    """zh: characters back to back; en: words with spaces, none before closing punctuation. The
    separator depends only on the two neighbours, so a span's text is a substring of the text."""
    if lang == "zh":
        return "".join(tokens)
    out = tokens[0] if tokens else ""
    for prev, tok in zip(tokens, tokens[1:]):
        out += ("" if tok in _NO_SPACE_BEFORE or prev in _NO_SPACE_AFTER else " ") + tok
    return out


_TAG = re.compile(r"^([BI])-(\S+)$")


def read_bio(path: PathLike, lang: str, skipped: Skipped | None = None) -> tuple[list[Sample], Skipped]:
    """Sentences of a BIO file as samples whose items are ``(label, entity text)``."""
    path = Path(path)
    skipped = skipped if skipped is not None else Skipped()
    samples: list[Sample] = []
    with _open(path) as f:
        for start, rows in _sentences(f):
            sample = _bio_sentence(f"{path}:{start}", path, rows, lang, skipped)
            if sample is not None:
                samples.append(sample)
    return samples, skipped


def _sentences(lines: Iterable[str]) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    rows: list[tuple[int, str]] = []
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip() or line.startswith("-DOCSTART-"):
            if rows:
                yield rows[0][0], rows
            rows = []
        else:
            rows.append((n, line))
    if rows:
        yield rows[0][0], rows


def _bio_sentence(where: str, path: Path, rows: list[tuple[int, str]], lang: str, skipped: Skipped) -> Sample | None:
    tokens, spans = [], []
    current: list[Any] | None = None  # [label, start, end]
    for n, line in rows:
        columns = line.split()
        if len(columns) < 2:
            skipped.add(f"{path}:{n}", "bad BIO line", f"expected 'token tag', got {line!r}")
            return None
        token, tag = columns[0], columns[-1]
        k = len(tokens)
        tokens.append(token)
        if tag == "O":
            current = None
            continue
        m = _TAG.match(tag)
        if not m:
            skipped.add(f"{path}:{n}", "bad BIO tag", repr(tag))
            return None
        kind, label = m.groups()
        if kind == "B":
            current = [label, k, k + 1]
            spans.append(current)
        elif current is None or current[0] != label:
            skipped.add(f"{path}:{n}", "I- without B-", f"{tag} after {'O' if current is None else 'B/I-' + current[0]}")
            return None
        else:
            current[2] = k + 1
    text = join_tokens(tokens, lang)
    items = tuple(dedupe((label, join_tokens(tokens[s:e], lang)) for label, s, e in spans))
    return Sample(where, text, items)


def _open(path: Path) -> Any:
    try:
        return path.open(encoding="utf-8-sig")
    except FileNotFoundError:
        raise IEError(f"input file not found: {path}") from None


def _json_lines(path: Path, skipped: Skipped) -> Iterator[tuple[str, dict[str, Any]]]:
    """The JSON objects of a JSON-lines file with their ``file:line``; bad lines skipped and counted."""
    if not path.is_file():
        raise IEError(f"input file not found: {path}")
    try:
        for n, obj in iter_jsonl(path, on_error="skip"):
            where = f"{path}:{n}"
            if isinstance(obj, BadLine):
                skipped.add(where, *bad_line(obj))
                continue
            yield where, obj
    except InputDataError as exc:  # unreadable (a folder, no permission)
        raise IEError(str(exc)) from None


def _text(obj: dict[str, Any], where: str, skipped: Skipped) -> str | None:
    text = obj.get("text", obj.get("sentence"))
    if text is None and isinstance(obj.get("tokens"), list) and all(isinstance(t, str) for t in obj["tokens"]):
        text = join_tokens(obj["tokens"], "en")
    if not isinstance(text, str) or not text.strip():
        skipped.add(where, "record without text")
        return None
    return text


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() and value == value.strip() else None


def read_relations(path: PathLike, skipped: Skipped | None = None) -> tuple[list[Sample], Skipped]:
    """Records ``{"text", "relations": [{"head", "relation", "tail"}]}``; items are triples."""
    path = Path(path)
    skipped = skipped if skipped is not None else Skipped()
    samples = []
    for where, obj in _json_lines(path, skipped):
        text = _text(obj, where, skipped)
        if text is None:
            continue
        relations = obj.get("relations")
        if not isinstance(relations, list):
            skipped.add(where, "'relations' is not a list")
            continue
        triples = []
        for k, rel in enumerate(relations):
            triple = tuple(_string(rel.get(key)) if isinstance(rel, dict) else None
                           for key in ("head", "relation", "tail"))
            if None in triple:
                skipped.add(where, "bad relation", f"relations[{k}] needs non-empty string head, relation, tail")
                break
            missing = next((x for x in (triple[0], triple[2]) if x not in text), None)
            if missing is not None:
                skipped.add(where, "entity not in text", repr(missing))
                break
            triples.append(triple)
        else:
            samples.append(Sample(where, text, tuple(dedupe(triples))))
    return samples, skipped


def read_events(path: PathLike, skipped: Skipped | None = None) -> tuple[list[Sample], Skipped]:
    """DuEE-style or ACE/OneIE-style event records; items are :class:`Event`."""
    path = Path(path)
    skipped = skipped if skipped is not None else Skipped()
    samples = []
    for where, obj in _json_lines(path, skipped):
        text = _text(obj, where, skipped)
        if text is None:
            continue
        raw = obj.get("event_list", obj.get("event_mentions"))
        if not isinstance(raw, list):
            skipped.add(where, "no event list", "expected 'event_list' or 'event_mentions' to be a list")
            continue
        events = []
        for k, ev in enumerate(raw):
            event, reason = _event(ev, text)
            if event is None:
                skipped.add(where, reason, f"event {k}")
                break
            events.append(event)
        else:
            samples.append(Sample(where, text, tuple(dedupe(events))))
    return samples, skipped


def _event(ev: Any, text: str) -> tuple[Event | None, str]:
    if not isinstance(ev, dict) or _string(ev.get("event_type")) is None:
        return None, "bad event"
    trigger = ev.get("trigger")
    trigger = _string(trigger.get("text") if isinstance(trigger, dict) else trigger)
    if trigger is None:
        return None, "bad event"
    if trigger not in text:
        return None, "trigger not in text"
    arguments = []
    for arg in ev.get("arguments") or []:
        role = _string(arg.get("role")) if isinstance(arg, dict) else None
        value = _string(arg.get("argument", arg.get("text"))) if isinstance(arg, dict) else None
        if role is None or value is None:
            return None, "bad argument"
        if value not in text:
            return None, "argument not in text"
        arguments.append((role, value))
    return Event(ev["event_type"], trigger, tuple(dedupe(arguments))), ""
