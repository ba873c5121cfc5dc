"""IE case files: a text, its schema and the gold answer, one JSON line each (see
``examples/data/ie_eval/``); and the outputs a model wrote for them::

    {"id": "ner-en-1", "task": "ner", "lang": "en", "text": "...",
     "schema": {"entity_types": {"PER": "person", ...}},        # as in train.ie schema files
     "gold": [["person", "Marie Curie"], ...]}                  # ner: [type, entity] (label or name)
    {"task": "re", ..., "gold": [["head", "relation", "tail"]]}
    {"task": "ee", ..., "gold": [{"type": "...", "trigger": "...", "arguments": [["role", "argument"]]}]}
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from common.errors import InputDataError, UserError
from common.jsonl import BadLine, iter_jsonl
from train.ie.answers import _key, norm
from train.ie.schema import LANGS, TASK_KEY, TASKS, IEError, Schema, schema_from_dict
from train.ie.templates import IETemplates, load_ie_templates
from train.skipped import bad_line_text

PathLike = Union[str, "os.PathLike[str]"]


class IECaseError(UserError, ValueError):
    """An IE case file cannot be used at all (missing, or no valid case)."""


@dataclass
class IECase:
    where: str
    id: str
    task: str
    lang: str
    text: str
    schema: Schema
    gold: list[Any]           # normalized items: tuples for ner/re, (type, trigger, ((role, arg), ...)) for ee
    record: dict[str, Any]



def _gold(task: str, gold: Any, schema: Schema) -> list[Any]:
    """Normalized gold items; raises ValueError with the reason."""
    if not isinstance(gold, list):
        raise ValueError("'gold' must be a list")
    items = []
    for k, g in enumerate(gold):
        if task == "ner":
            if not (isinstance(g, list) and len(g) == 2 and all(isinstance(x, str) and x.strip() for x in g)):
                raise ValueError(f"gold[{k}] must be [entity type, entity]")
            name = schema.entity_types.get(g[0], g[0])
            if name not in schema.entity_types.values():
                raise ValueError(f"gold[{k}]: entity type {g[0]!r} is not in the schema")
            items.append((_key(name), norm(g[1])))
        elif task == "re":
            if not (isinstance(g, list) and len(g) == 3 and all(isinstance(x, str) and x.strip() for x in g)):
                raise ValueError(f"gold[{k}] must be [head, relation, tail]")
            if g[1] not in schema.relation_types:
                raise ValueError(f"gold[{k}]: relation {g[1]!r} is not in the schema")
            items.append((norm(g[0]), _key(g[1]), norm(g[2])))
        else:
            if not (isinstance(g, dict) and isinstance(g.get("type"), str) and isinstance(g.get("trigger"), str)
                    and g["trigger"].strip()):
                raise ValueError(f"gold[{k}] must be {{\"type\", \"trigger\", \"arguments\": [[role, argument]]}}")
            if g["type"] not in schema.event_types:
                raise ValueError(f"gold[{k}]: event type {g['type']!r} is not in the schema")
            args = g.get("arguments", [])
            if not (isinstance(args, list) and all(isinstance(a, list) and len(a) == 2 and
                                                   all(isinstance(x, str) and x.strip() for x in a) for a in args)):
                raise ValueError(f"gold[{k}]: 'arguments' must be a list of [role, argument]")
            for role, _ in args:
                if role not in schema.event_types[g["type"]]:
                    raise ValueError(f"gold[{k}]: role {role!r} is not a role of {g['type']!r} in the schema")
            items.append((_key(g["type"]), norm(g["trigger"]), tuple((_key(r), norm(a)) for r, a in args)))
    return list(dict.fromkeys(items))


def read_ie_cases(path: PathLike) -> tuple[list[IECase], list[str]]:
    """Valid IE cases and the ``file:line: reason`` of each bad line (skipped)."""
    path = Path(path)
    if not path.is_file():
        raise IECaseError(f"IE case file not found: {path}")
    cases, bad, seen = [], [], set()
    for n, obj in _lines(path):
        where = f"{path}:{n}"
        if isinstance(obj, BadLine):
            bad.append(f"{where}: {bad_line_text(obj)}")
            continue
        try:
            task, lang = obj.get("task"), obj.get("lang")
            if task not in TASKS:
                raise ValueError(f"'task' must be one of {', '.join(TASKS)}, got {task!r}")
            if lang not in LANGS:
                raise ValueError(f"'lang' must be one of {', '.join(LANGS)}, got {lang!r}")
            if not isinstance(obj.get("text"), str) or not obj["text"].strip():
                raise ValueError("'text' must be a non-empty string")
            schema = schema_from_dict(obj.get("schema"), f"{where}: schema")
            need = TASK_KEY[task]
            if not getattr(schema, need):
                raise ValueError(f"the schema has no {need!r}, which task {task!r} needs")
            gold = _gold(task, obj.get("gold"), schema)
            case_id = str(obj.get("id", f"{path.name}:{n}"))
            if case_id in seen:
                raise ValueError(f"duplicate id {case_id!r}")
            seen.add(case_id)
        except (ValueError, IEError) as exc:
            reason = str(exc).removeprefix(f"{where}: ")
            bad.append(f"{where}: {reason}")
            continue
        cases.append(IECase(where, case_id, task, lang, obj["text"], schema, gold, obj))
    if not cases:
        detail = f"; {len(bad)} bad line(s), the first: {bad[0]}" if bad else " (the file is empty)"
        raise IECaseError(f"{path}: no valid IE case{detail}")
    return cases, bad


def instruction(case: IECase, templates: IETemplates | None = None) -> str:
    """The case's instruction: a phrasing of its language's IE template chosen by the case id (the
    same case is always asked the same way)."""
    templates = templates or load_ie_templates(case.lang)
    return templates.instruction(case.task, case.schema, random.Random(f"ie-case:{case.id}"))



def read_outputs(path: PathLike) -> dict[str, str]:
    """``{"id", "output"}`` JSON lines (what ``--cases``/``--run-ie-cases --out`` write) → id → text."""
    path = Path(path)
    if not path.is_file():
        raise IECaseError(f"outputs file not found: {path}")
    out = {}
    for n, obj in _lines(path):
        if isinstance(obj, BadLine):
            raise IECaseError(f"{path}:{n}: {bad_line_text(obj)}")
        if not ("id" in obj and isinstance(obj.get("output"), str)):
            raise IECaseError(f"{path}:{n}: expected {{\"id\", \"output\": string}}")
        out[str(obj["id"])] = obj["output"]
    return out


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | BadLine]]:
    """The file's JSON lines, bad ones as :class:`BadLine`; an unreadable file is an IECaseError."""
    try:
        yield from iter_jsonl(path, on_error="skip")
    except InputDataError as exc:
        raise IECaseError(str(exc)) from None
