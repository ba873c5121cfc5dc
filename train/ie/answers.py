"""Reading a model's answer through its noise: pure functions, no model and no files.

A model does not write the exact format it was tuned on (:mod:`train.ie.format`): it adds spaces,
writes full-width punctuation (``（人物，李明）``), numbers or bullets its lines, wraps the answer in a
code fence, or goes on with prose. :func:`parse_answer` reads through that noise, anchored on the
schema (an entity type, relation or event type / role must be one the case asked for), and returns
the items plus the lines it could not read. Items are normalized (:func:`norm`: NFKC, so full-width
= half-width; whitespace collapsed; surrounding quotes and title marks dropped; type names
case-insensitive), as the gold of an IE case is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from train.ie.schema import TASKS, IEError, Schema

NONE_WORDS = {"none", "无", "没有", "无实体", "无关系", "无事件", "n/a", "null", "nothing", "empty", "[]"}
_FENCE = re.compile(r"^\s*```")
# Bullets and numbering a model puts before its lines: "- ", "* ", "• ", "1. ", "2) ", "3、", "(4) ", "①".
_PREFIX = re.compile(r"^\s*(?:[-*•·●▪◦‣+>]+|\d{1,3}\s*[.)、:]|[(]\d{1,3}[)]|[①-⑳])\s*")
# Wrappers a model puts around a name; removed only in matching pairs ("《青禾》杂志社" keeps its marks).
_PAIRS = {'"': '"', "'": "'", "`": "`", "“": "”", "‘": "’", "《": "》", "「": "」", "『": "』", "〈": "〉", "<": ">", "[": "]"}
_GROUP = re.compile(r"\(([^()]*)\)")
_COMMA = re.compile(r"\s*[,，]\s*")


def norm(text: str) -> str:
    """The comparison form of a name or span: NFKC (full-width → ASCII), spaces collapsed, comma
    spacing fixed, surrounding quotes / title marks (in pairs) dropped."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"\s+", " ", text).strip()
    text = _COMMA.sub(", ", text)
    while len(text) >= 2 and _PAIRS.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text


def _key(text: str) -> str:
    return norm(text).casefold()



@dataclass
class Parsed:
    items: list[Any]
    unparsed: list[str] = field(default_factory=list)


def _clean_lines(text: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        if _FENCE.match(raw):
            continue
        if raw.lstrip().startswith("###"):
            break  # the model started another prompt section: what follows is not the answer
        line = unicodedata.normalize("NFKC", raw).strip()
        line = _PREFIX.sub("", line, count=1).strip()
        line = line.rstrip("。;,、").strip()
        if line:
            lines.append(line)
    return lines


def _is_none(lines: Sequence[str]) -> bool:
    return bool(lines) and all(line.strip(" .。!！").casefold() in NONE_WORDS for line in lines)


def _lookup(name: str, names: Iterable[str]) -> str | None:
    """The schema name ``name`` stands for (case-insensitive, normalized), or None."""
    k = _key(name)
    return next((n for n in names if _key(n) == k), None)


def _groups(line: str) -> list[str]:
    """The parenthesized parts of a line: the whole line when it is one group (an entity may hold
    brackets: "(organization, Acme (Europe))"), else every innermost ``(...)``."""
    if line.startswith("(") and line.endswith(")") and _one_group(line):
        return [line[1:-1]]
    return _GROUP.findall(line)


def _one_group(line: str) -> bool:
    depth = 0
    for k, ch in enumerate(line):
        depth += (ch == "(") - (ch == ")")
        if depth <= 0 and k < len(line) - 1:
            return False
    return depth == 0


def _parse_ner_line(line: str, types: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    groups = _groups(line)
    if not groups and ":" in line:
        groups = [line.replace(":", ",", 1)]  # "type: entity"
    for inner in groups:
        parts = _COMMA.split(inner.strip(), maxsplit=1)
        if len(parts) != 2:
            continue
        first, second = parts
        t = _lookup(first, types)
        if t is not None and norm(second):
            out.append((_key(t), norm(second)))
            continue
        t = _lookup(second, types)  # "(entity, type)": the order reversed
        if t is not None and norm(first):
            out.append((_key(t), norm(first)))
    return out


def _parse_re_line(line: str, relations: Sequence[str]) -> list[tuple[str, str, str]]:
    out = []
    for inner in _groups(line):
        parts = _COMMA.split(inner.strip())
        hits = [i for i in range(1, len(parts) - 1) if _lookup(parts[i], relations) is not None]
        if not hits:
            continue
        i = hits[0]
        head, tail = norm(", ".join(parts[:i])), norm(", ".join(parts[i + 1:]))
        if head and tail:
            out.append((head, _key(_lookup(parts[i], relations) or ""), tail))
    return out


def _parse_ee_line(line: str, event_types: Mapping[str, Sequence[str]]) -> list[Any]:
    folded = line.casefold()
    etype = next((t for t in sorted(event_types, key=len, reverse=True)
                  if folded.startswith(t.casefold()) and re.match(r"\s*:", line[len(t):])), None)
    if etype is None:
        return []
    rest = re.sub(r"^\s*:\s*", "", line[len(etype):])
    roles = event_types[etype] or [r for rs in event_types.values() for r in rs]
    args: list[tuple[str, str]] = []
    trigger = rest
    if roles:
        pattern = re.compile(r"(?:^|[;,、]\s*)(" + "|".join(re.escape(r) for r in sorted(roles, key=len, reverse=True))
                             + r")\s*[=:]\s*", re.IGNORECASE)
        starts = list(pattern.finditer(rest))
        if starts:
            trigger = rest[:starts[0].start()]
            for k, m in enumerate(starts):
                end = starts[k + 1].start() if k + 1 < len(starts) else len(rest)
                value = norm(rest[m.end():end].strip(" ;,、"))
                role = _lookup(m.group(1), roles)
                if value and role is not None:
                    args.append((_key(role), value))
    trigger = norm(trigger.strip(" ;,、"))
    if not trigger:
        return []
    return [(_key(etype), trigger, tuple(dict.fromkeys(args)))]


def parse_answer(task: str, text: str, schema: Schema) -> Parsed:
    """Items in a model's answer (normalized as the gold is) and the lines that held none."""
    if task not in TASKS:
        raise IEError(f"unknown task {task!r} (one of {', '.join(TASKS)})")
    lines = _clean_lines(text)
    if _is_none(lines):
        return Parsed([])
    items: list[Any] = []
    unparsed = []
    for line in lines:
        if task == "ner":
            found = _parse_ner_line(line, list(schema.entity_types.values()))
        elif task == "re":
            found = _parse_re_line(line, schema.relation_types)
        else:
            found = _parse_ee_line(line, schema.event_types)
        if found:
            items.extend(found)
        elif line.strip(" .。!！").casefold() not in NONE_WORDS:
            unparsed.append(line)
    return Parsed(list(dict.fromkeys(items)), unparsed)
