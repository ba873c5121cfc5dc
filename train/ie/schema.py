"""The types an IE task extracts (entity, relation, event types with their roles), from a schema file
or a case's inline ``schema`` object, checked against the separators of the answer format."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from common.config import close_match
from common.errors import UserError
from common.jsonl import read_json_object

PathLike = Union[str, "os.PathLike[str]"]
TASKS = ("ner", "re", "ee")
LANGS = ("zh", "en")
SCHEMA_KEYS = ("entity_types", "relation_types", "event_types")
TASK_KEY = {"ner": "entity_types", "re": "relation_types", "ee": "event_types"}


class IEError(UserError, ValueError):
    """A schema, template or input file cannot be used at all; names the file and key."""


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


def schema_from_dict(data: Any, where: str) -> Schema:
    """A :class:`Schema` from a mapping with any of :data:`SCHEMA_KEYS`; errors start with ``where``
    (a schema file, or ``file:line: schema`` of an IE case)."""
    if not isinstance(data, dict):
        raise IEError(f"{where}: expected an object with any of {', '.join(SCHEMA_KEYS)}")
    unknown = sorted(set(data) - set(SCHEMA_KEYS))
    if unknown:
        raise IEError(f"{where}: unknown key {unknown[0]!r}{close_match(unknown[0], SCHEMA_KEYS)} "
                      f"(known keys: {', '.join(SCHEMA_KEYS)})")
    entities = data.get("entity_types", {})
    if isinstance(entities, list) and all(isinstance(x, str) for x in entities):
        entities = {x: x for x in entities}
    if not (isinstance(entities, dict) and all(isinstance(v, str) for v in entities.values())):
        raise IEError(f"{where}: key 'entity_types' must be a list of names or a mapping label → name")
    relations = data.get("relation_types", [])
    if not (isinstance(relations, list) and all(isinstance(x, str) for x in relations)):
        raise IEError(f"{where}: key 'relation_types' must be a list of names")
    events = data.get("event_types", {})
    if not (isinstance(events, dict) and all(isinstance(r, list) and all(isinstance(x, str) for x in r)
                                             for r in events.values())):
        raise IEError(f"{where}: key 'event_types' must map each event type to a list of roles")
    schema = Schema(dict(entities), list(relations), {k: list(v) for k, v in events.items()})
    schema.check(where)
    return schema


def load_schema(path: PathLike) -> Schema:
    """A schema file: JSON with any of ``entity_types`` (a list, or a mapping label → name shown to
    the model), ``relation_types`` (a list), ``event_types`` (type → list of roles)."""
    path = Path(path)
    data = read_json_object(path, IEError, "schema file", "JSON schema",
                            f"a JSON object with any of {', '.join(SCHEMA_KEYS)}")
    return schema_from_dict(data, str(path))
