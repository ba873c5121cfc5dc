"""The answer format IE instruction data is tuned on, written and read back strictly; pure functions.

    NER   (entity type, entity)                    one per line
    RE    (head, relation, tail)                   one per line
    EE    event type: trigger; role=argument, role=argument    one per line
    none  the template's marker ("None" / "无")

``parse_*`` read such an answer back, given the schema (the type names anchor the split, so an
entity may itself contain ", "). A model's real output, with its noise, is read by
:mod:`train.ie.answers` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.errors import UserError

NONE_MARKERS = ("None", "无")


class OutputFormatError(UserError, ValueError):
    """An answer line does not follow the output format (``parse_*`` with ``strict``)."""


@dataclass(frozen=True)
class Event:
    type: str
    trigger: str
    arguments: tuple[tuple[str, str], ...] = ()


def dedupe(items: Iterable[Any]) -> list[Any]:
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
