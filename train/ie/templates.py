"""The instruction phrasings of each language (``train/templates/ie_{zh,en}.json``), shared by the
builders (training data) and the IE cases (inference)."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from common.jsonl import read_json_object
from train.ie.schema import LANGS, TASKS, IEError, Schema

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
_SLOTS = ("{schema}", "{format}")


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
