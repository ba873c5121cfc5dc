"""Information-extraction instruction data: NER, relation and event samples → alpaca records.

Each sample becomes ``{"instruction", "input", "output"}``: the instruction (one of several
phrasings, chosen per record by a seeded generator) names the schema and the answer format; the
input is the text; the output is the answer in :mod:`train.ie.format`. A record whose items would
not parse back to themselves (a name with a newline, an argument containing ", Role=") is skipped,
so every training answer is invertible. Without a schema the schema is every type seen in the input,
sorted.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from typing import Any, Union

from train.ie.format import parse_ee, parse_ner, parse_re, render_ee, render_ner, render_re
from train.ie.readers import Sample, read_bio, read_events, read_relations
from train.ie.schema import LANGS, TASK_KEY, TASKS, IEError, Schema
from train.ie.templates import IETemplates, load_ie_templates
from train.skipped import Skipped

PathLike = Union[str, "os.PathLike[str]"]
_NOT_REPRESENTABLE = "not representable in the output format"


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
        key = TASK_KEY[task]
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
