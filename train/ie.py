"""Information-extraction instruction data: NER, relation and event records → alpaca records.

Inputs (one sample per record; bad ones are skipped, counted by reason, the first few logged with
``file:line``):

- NER, CoNLL-style BIO: one ``token ... tag`` line per token (first column the token, last the tag,
  so CoNLL-2003's four columns work), a blank line between sentences, ``-DOCSTART-`` lines ignored.
  zh is character-level (tokens joined without spaces), en word-level (joined with spaces, no space
  before closing punctuation). Tags are ``O``, ``B-TYPE``, ``I-TYPE``; an ``I-`` must continue a
  ``B-``/``I-`` of the same type.
- Relations, JSON lines ``{"text", "relations": [{"head", "relation", "tail"}]}``.
- Events, JSON lines in DuEE's layout ``{"text", "event_list": [{"event_type", "trigger",
  "arguments": [{"role", "argument"}]}]}`` or an ACE/OneIE-like one ``{"sentence",
  "event_mentions": [{"event_type", "trigger": {"text"}, "arguments": [{"role", "text"}]}]}``.

Each becomes ``{"instruction", "input", "output"}``: the instruction (one of several phrasings,
chosen per record by a seeded generator) names the schema — entity types, relation types, event
types with their roles — and the answer format; the input is the text; the output is written by
``render_*``:

    NER   (entity type, entity)                    one per line
    RE    (head, relation, tail)                   one per line
    EE    event type: trigger; role=argument, role=argument    one per line
    none  the template's marker ("None" / "无")

``parse_*`` read such an answer back, given the schema (the type names anchor the split, so an
entity may itself contain ", "). A record whose items would not parse back to themselves (a name
with a newline, an argument containing ", Role=") is skipped at build time, so every training
answer is invertible. The phrasings live in ``train/templates/ie_{zh,en}.json``, shared with
inference.

CLI: ``python -m train.ie --task ner|re|ee --input FILE --lang zh|en --out FILE.jsonl
[--schema FILE] [--seed N]``. Without ``--schema`` the schema is every type seen in the input,
sorted. A schema file is JSON with any of ``entity_types`` (a list, or a mapping label → name
shown to the model), ``relation_types`` (a list), ``event_types`` (type → list of roles).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from train.files import read_json_object, write_jsonl_atomic
from train.prompts import Skipped

__all__ = [
    "Event",
    "IEError",
    "IETemplates",
    "NONE_MARKERS",
    "OutputFormatError",
    "Schema",
    "build",
    "load_ie_templates",
    "load_schema",
    "main",
    "parse_ee",
    "parse_ner",
    "parse_re",
    "read_bio",
    "read_events",
    "read_relations",
    "render_ee",
    "render_ner",
    "render_re",
]

PathLike = Union[str, "os.PathLike[str]"]
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TASKS = ("ner", "re", "ee")
LANGS = ("zh", "en")
NONE_MARKERS = ("None", "无")
_SLOTS = ("{schema}", "{format}")
_NOT_REPRESENTABLE = "not representable in the output format"


class IEError(ValueError):
    """A schema, template or input file cannot be used at all; names the file and key."""


class OutputFormatError(ValueError):
    """An answer line does not follow the output format (``parse_*`` with ``strict``)."""


# --------------------------------------------------------------------------------------------
# Items and rendering


@dataclass(frozen=True)
class Event:
    type: str
    trigger: str
    arguments: tuple[tuple[str, str], ...] = ()


def _dedupe(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def render_ner(items: Sequence[tuple[str, str]], none: str = "None") -> str:
    """``(entity type, entity)`` per line, in the order given; ``none`` when empty."""
    return "\n".join(f"({t}, {e})" for t, e in items) if items else none


def render_re(items: Sequence[tuple[str, str, str]], none: str = "None") -> str:
    """``(head, relation, tail)`` per line; ``none`` when empty."""
    return "\n".join(f"({h}, {r}, {t})" for h, r, t in items) if items else none


def render_ee(events: Sequence[Event], none: str = "None") -> str:
    """``type: trigger; role=argument, role=argument`` per line (no ``;`` part without arguments)."""
    if not events:
        return none
    lines = []
    for e in events:
        line = f"{e.type}: {e.trigger}"
        if e.arguments:
            line += "; " + ", ".join(f"{role}={arg}" for role, arg in e.arguments)
        lines.append(line)
    return "\n".join(lines)


def _lines(text: str, none: Sequence[str]) -> list[str]:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return [] if len(lines) == 1 and lines[0] in none else lines


def _bad(strict: bool, line: str, why: str) -> None:
    if strict:
        raise OutputFormatError(f"{why}: {line!r}")


def _by_length(names: Iterable[str]) -> list[str]:
    return sorted(names, key=len, reverse=True)


def parse_ner(text: str, types: Sequence[str] | None = None, none: Sequence[str] = NONE_MARKERS,
              strict: bool = True) -> list[tuple[str, str]]:
    """Invert :func:`render_ner`. With ``types`` (the names shown to the model) the type is the
    longest known name the line starts with; without, it ends at the first ``", "``."""
    out = []
    for line in _lines(text, none):
        if not (line.startswith("(") and line.endswith(")")):
            _bad(strict, line, "not '(entity type, entity)'")
            continue
        inner = line[1:-1]
        if types is not None:
            found = next((t for t in _by_length(types) if inner.startswith(t + ", ")), None)
        else:
            found = inner.split(", ", 1)[0] if ", " in inner else None
        entity = inner[len(found) + 2:] if found is not None else ""
        if found is None or not entity:
            _bad(strict, line, "no known entity type" if types is not None else "not '(entity type, entity)'")
            continue
        out.append((found, entity))
    return out


def parse_re(text: str, relations: Sequence[str] | None = None, none: Sequence[str] = NONE_MARKERS,
             strict: bool = True) -> list[tuple[str, str, str]]:
    """Invert :func:`render_re`. With ``relations`` the line is split around the one
    ``", relation, "`` it contains (heads and tails may contain ", "); without, it must split into
    exactly three parts at ``", "``."""
    out = []
    for line in _lines(text, none):
        if not (line.startswith("(") and line.endswith(")")):
            _bad(strict, line, "not '(head, relation, tail)'")
            continue
        inner = line[1:-1]
        if relations is not None:
            splits = {(m.start(), r) for r in relations
                      for m in re.finditer(f"(?=, {re.escape(r)}, )", inner)}
            # Keep splits that leave a non-empty head and tail.
            splits = {(i, r) for i, r in splits if i > 0 and i + len(r) + 4 < len(inner)}
            if len(splits) != 1:
                _bad(strict, line, "no known relation" if not splits else "ambiguous relation")
                continue
            ((i, r),) = splits
            out.append((inner[:i], r, inner[i + len(r) + 4:]))
        else:
            parts = inner.split(", ")
            if len(parts) != 3 or not all(parts):
                _bad(strict, line, "not '(head, relation, tail)'")
                continue
            out.append((parts[0], parts[1], parts[2]))
    return out


def parse_ee(text: str, schema: Mapping[str, Sequence[str]] | None = None, none: Sequence[str] = NONE_MARKERS,
             strict: bool = True) -> list[Event]:
    """Invert :func:`render_ee`. With ``schema`` (event type → roles) the type is the longest known
    one the line starts with and arguments start at ``role=`` for that type's roles; without, the
    type ends at the first ``": "`` and arguments are split at ``", "``."""
    out = []
    for line in _lines(text, none):
        if schema is not None:
            etype = next((t for t in _by_length(schema) if line.startswith(t + ": ")), None)
        else:
            etype = line.split(": ", 1)[0] if ": " in line else None
        if etype is None:
            _bad(strict, line, "no known event type" if schema is not None else "not 'event type: trigger'")
            continue
        trigger, sep, args_text = line[len(etype) + 2:].partition("; ")
        if not trigger:
            _bad(strict, line, "no trigger")
            continue
        arguments = _parse_arguments(args_text, None if schema is None else schema[etype]) if sep else []
        if arguments is None:
            _bad(strict, line, "bad arguments")
            continue
        out.append(Event(etype, trigger, tuple(arguments)))
    return out


def _parse_arguments(text: str, roles: Sequence[str] | None) -> list[tuple[str, str]] | None:
    if roles is None:
        pairs = [part.partition("=") for part in text.split(", ")]
        if not all(sep and role and arg for role, sep, arg in pairs):
            return None
        return [(role, arg) for role, _, arg in pairs]
    if not roles:
        return None
    pattern = re.compile("(?:^|, )(" + "|".join(re.escape(r) for r in _by_length(roles)) + ")=")
    starts = list(pattern.finditer(text))
    if not starts or starts[0].start() != 0:
        return None
    out = []
    for k, m in enumerate(starts):
        end = starts[k + 1].start() if k + 1 < len(starts) else len(text)
        arg = text[m.end():end]
        if not arg:
            return None
        out.append((m.group(1), arg))
    return out


# --------------------------------------------------------------------------------------------
# Schema and templates


@dataclass
class Schema:
    """Types to extract. ``entity_types`` maps a BIO label to the name shown to the model."""

    entity_types: dict[str, str] = field(default_factory=dict)
    relation_types: list[str] = field(default_factory=list)
    event_types: dict[str, list[str]] = field(default_factory=dict)

    def check(self, where: str) -> None:
        """Names must not contain the separators the output format splits on."""
        def bad(names: Iterable[str], key: str, forbidden: Sequence[str]) -> None:
            for name in names:
                if not name or name != name.strip():
                    raise IEError(f"{where}: {key}: {name!r} is empty or has surrounding spaces")
                for sep in ("\n", *forbidden):
                    if sep in name:
                        raise IEError(f"{where}: {key}: {name!r} contains {sep!r}, which the output format uses")
        bad(self.entity_types.values(), "entity_types", (", ", "(", ")"))
        bad(self.relation_types, "relation_types", (", ", "(", ")"))
        bad(self.event_types, "event_types", (": ",))
        for etype, roles in self.event_types.items():
            bad(roles, f"event_types[{etype!r}]", (", ", "=", "; "))


def load_schema(path: PathLike) -> Schema:
    path = Path(path)
    known = ("entity_types", "relation_types", "event_types")
    data = read_json_object(path, IEError, "schema file", "JSON schema",
                            f"a JSON object with any of {', '.join(known)}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise IEError(f"{path}: unknown key {unknown[0]!r} (known keys: {', '.join(known)})")
    schema = Schema()
    entities = data.get("entity_types", {})
    if isinstance(entities, list) and all(isinstance(x, str) for x in entities):
        schema.entity_types = {x: x for x in entities}
    elif isinstance(entities, dict) and all(isinstance(v, str) for v in entities.values()):
        schema.entity_types = dict(entities)
    else:
        raise IEError(f"{path}: key 'entity_types' must be a list of names or a mapping label → name")
    relations = data.get("relation_types", [])
    if not (isinstance(relations, list) and all(isinstance(x, str) for x in relations)):
        raise IEError(f"{path}: key 'relation_types' must be a list of names")
    schema.relation_types = list(relations)
    events = data.get("event_types", {})
    if not (isinstance(events, dict) and all(isinstance(r, list) and all(isinstance(x, str) for x in r)
                                             for r in events.values())):
        raise IEError(f"{path}: key 'event_types' must map each event type to a list of roles")
    schema.event_types = {k: list(v) for k, v in events.items()}
    schema.check(str(path))
    return schema


@dataclass(frozen=True)
class IETemplates:
    """One language's instruction phrasings (see ``train/templates/ie_en.json``)."""

    lang: str
    none: str
    schema_sep: str
    event_sep: str
    event_schema: str
    instructions: dict[str, tuple[str, ...]]
    formats: dict[str, str]
    path: str

    def describe(self, task: str, schema: Schema) -> str:
        """The ``{schema}`` text of a task."""
        if task == "ner":
            return self.schema_sep.join(schema.entity_types.values())
        if task == "re":
            return self.schema_sep.join(schema.relation_types)
        return self.event_sep.join(
            _fill(self.event_schema, {"type": t, "roles": self.schema_sep.join(r)}) for t, r in schema.event_types.items())

    def instruction(self, task: str, schema: Schema, rng: random.Random) -> str:
        phrasing = rng.choice(self.instructions[task])
        return _fill(phrasing, {"schema": self.describe(task, schema), "format": self.formats[task]})


def _fill(text: str, values: Mapping[str, str]) -> str:
    """Fill ``{slot}``s in one pass (values may contain braces)."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def load_ie_templates(lang_or_path: str) -> IETemplates:
    """``"zh"``/``"en"`` (``train/templates/ie_<lang>.json``) or a path to such a file."""
    path = TEMPLATES_DIR / f"ie_{lang_or_path}.json" if lang_or_path in LANGS else Path(lang_or_path)
    data = read_json_object(path, IEError, "IE template file", "JSON template")
    for key in ("none", "schema_sep", "event_sep", "event_schema"):
        if not isinstance(data.get(key), str):
            raise IEError(f"{path}: key {key!r} must be a string")
    for slot in ("{type}", "{roles}"):
        if slot not in data["event_schema"]:
            raise IEError(f"{path}: 'event_schema' lacks the slot {slot}")
    instructions, formats = {}, {}
    for task in TASKS:
        section = data.get(task)
        if not isinstance(section, dict):
            raise IEError(f"{path}: missing key {task!r}")
        phrasings = section.get("instructions")
        if not (isinstance(phrasings, list) and phrasings and all(isinstance(p, str) for p in phrasings)):
            raise IEError(f"{path}: {task}.instructions must be a non-empty list of strings")
        for k, phrasing in enumerate(phrasings):
            for slot in _SLOTS:
                if slot not in phrasing:
                    raise IEError(f"{path}: {task}.instructions[{k}] lacks the slot {slot}")
        if not isinstance(section.get("format"), str):
            raise IEError(f"{path}: {task}.format must be a string")
        instructions[task] = tuple(phrasings)
        formats[task] = section["format"]
    lang = lang_or_path if lang_or_path in LANGS else path.stem.removeprefix("ie_")
    return IETemplates(lang, data["none"], data["schema_sep"], data["event_sep"], data["event_schema"],
                       instructions, formats, str(path))


# --------------------------------------------------------------------------------------------
# Readers


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
    items = tuple(_dedupe((label, join_tokens(tokens[s:e], lang)) for label, s, e in spans))
    return Sample(where, text, items)


def _open(path: Path) -> Any:
    try:
        return path.open(encoding="utf-8-sig")
    except FileNotFoundError:
        raise IEError(f"input file not found: {path}") from None


def _json_lines(path: Path, skipped: Skipped) -> Iterator[tuple[str, dict[str, Any]]]:
    with _open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                skipped.add(where, "not JSON", exc.msg)
                continue
            if not isinstance(obj, dict):
                skipped.add(where, "not a JSON object")
                continue
            yield where, obj


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
            samples.append(Sample(where, text, tuple(_dedupe(triples))))
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
            samples.append(Sample(where, text, tuple(_dedupe(events))))
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
    return Event(ev["event_type"], trigger, tuple(_dedupe(arguments))), ""


# --------------------------------------------------------------------------------------------
# Building


def schema_from_samples(task: str, samples: Sequence[Sample]) -> Schema:
    """Every type seen, sorted (roles per event type likewise)."""
    if task == "ner":
        labels = sorted({label for s in samples for label, _ in s.items})
        return Schema(entity_types={x: x for x in labels})
    if task == "re":
        return Schema(relation_types=sorted({r for s in samples for _, r, _ in s.items}))
    roles: dict[str, set[str]] = {}
    for s in samples:
        for e in s.items:
            roles.setdefault(e.type, set()).update(role for role, _ in e.arguments)
    return Schema(event_types={t: sorted(roles[t]) for t in sorted(roles)})


def _outside_schema(task: str, items: Sequence[Any], schema: Schema) -> str | None:
    """What in the items the schema does not know, or None."""
    for item in items:
        if task == "ner" and item[0] not in schema.entity_types:
            return f"entity type {item[0]!r}"
        if task == "re" and item[1] not in schema.relation_types:
            return f"relation {item[1]!r}"
        if task == "ee":
            if item.type not in schema.event_types:
                return f"event type {item.type!r}"
            for role, _ in item.arguments:
                if role not in schema.event_types[item.type]:
                    return f"role {role!r} of {item.type!r}"
    return None


def _render(task: str, items: Sequence[Any], schema: Schema, none: str) -> tuple[str, Any]:
    """The answer text and what parsing it back gives (to be compared with the items)."""
    if task == "ner":
        shown = [(schema.entity_types[label], entity) for label, entity in items]
        text = render_ner(shown, none)
        return text, (parse_ner(text, list(schema.entity_types.values()), strict=False), shown)
    if task == "re":
        text = render_re(items, none)
        return text, (parse_re(text, schema.relation_types, strict=False), list(items))
    text = render_ee(items, none)
    return text, (parse_ee(text, schema.event_types, strict=False), list(items))


def build(
    task: str,
    path: PathLike,
    lang: str,
    schema: Schema | None = None,
    seed: int = 0,
    templates: IETemplates | None = None,
) -> tuple[list[dict[str, str]], Skipped, Schema]:
    """Instruction records for one input file, the skipped counts, and the schema used."""
    if task not in TASKS:
        raise IEError(f"unknown task {task!r} (one of {', '.join(TASKS)})")
    if lang not in LANGS:
        raise IEError(f"unknown language {lang!r} (one of {', '.join(LANGS)})")
    templates = templates or load_ie_templates(lang)
    if task == "ner":
        samples, skipped = read_bio(path, lang)
    elif task == "re":
        samples, skipped = read_relations(path)
    else:
        samples, skipped = read_events(path)
    if schema is None:
        schema = schema_from_samples(task, samples)
        schema.check(f"{path} (types seen in the input)")
    else:
        key = {"ner": "entity_types", "re": "relation_types", "ee": "event_types"}[task]
        if not getattr(schema, key):
            raise IEError(f"the schema has no {key!r}, which task {task!r} needs")
    records = []
    for sample in samples:
        outside = _outside_schema(task, sample.items, schema)
        if outside is not None:
            skipped.add(sample.where, "not in the schema", outside)
            continue
        if task == "ner" and any("\n" in e for _, e in sample.items):
            skipped.add(sample.where, _NOT_REPRESENTABLE)
            continue
        output, (parsed, expected) = _render(task, sample.items, schema, templates.none)
        if parsed != expected:
            skipped.add(sample.where, _NOT_REPRESENTABLE, "an item would not parse back to itself")
            continue
        # One generator per record, seeded by the seed and the record's place in its file: the
        # phrasing of a record does not change when another record is added or dropped.
        rng = random.Random(f"{seed}:{task}:{sample.where.rsplit(':', 1)[-1]}")
        records.append({"instruction": templates.instruction(task, schema, rng),
                        "input": sample.text, "output": output})
    if not records:
        reasons = ", ".join(f"{k}: {v}" for k, v in skipped.most_common()) or "no samples"
        raise IEError(f"{path}: no usable {task} sample ({reasons})")
    return records, skipped, schema


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.ie",
                                     description="Turn NER / relation / event data into instruction records.")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--input", required=True, help="BIO file (ner) or JSON lines (re, ee)")
    parser.add_argument("--lang", required=True, choices=LANGS)
    parser.add_argument("--out", required=True, help="output JSON lines of {instruction, input, output}")
    parser.add_argument("--schema", help="JSON schema file (default: the types seen in the input)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the choice of instruction phrasing")
    args = parser.parse_args(argv)
    try:
        schema = load_schema(args.schema) if args.schema else None
        records, skipped, _ = build(args.task, args.input, args.lang, schema, args.seed)
    except IEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_jsonl_atomic(records, args.out)
    print(f"{len(records)} {args.task} records written to {args.out}", file=sys.stderr)
    if skipped:
        reasons = ", ".join(f"{k}: {v}" for k, v in skipped.most_common())
        print(f"skipped {sum(skipped.values())} ({reasons}); first ones:", file=sys.stderr)
        for example in skipped.examples:
            print(f"  {example}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
