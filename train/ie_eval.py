"""Scoring information extraction: IE cases with gold answers, a parser for real model output,
precision / recall / F1 per task.

A model does not write the exact format it was tuned on (:func:`train.ie.render_ner` and friends):
it adds spaces, writes full-width punctuation (``（人物，李明）``), numbers or bullets its lines,
wraps the answer in a code fence, or goes on with prose. :func:`parse_answer` reads through that
noise, anchored on the schema (an entity type, relation or event type / role must be one the case
asked for), and returns the items plus the lines it could not read. :func:`train.ie.parse_ner`
stays strict: it checks training answers, this module reads what came out of a model.

IE case file (JSON lines, see ``examples/data/ie_eval/``)::

    {"id": "ner-en-1", "task": "ner", "lang": "en", "text": "...",
     "schema": {"entity_types": {"PER": "person", ...}},        # as in train.ie schema files
     "gold": [["person", "Marie Curie"], ...]}                  # ner: [type, entity] (label or name)
    {"task": "re", ..., "gold": [["head", "relation", "tail"]]}
    {"task": "ee", ..., "gold": [{"type": "...", "trigger": "...", "arguments": [["role", "argument"]]}]}

Scoring is micro-averaged over items after normalization (NFKC, so full-width = half-width;
whitespace collapsed; surrounding quotes and title marks dropped; type names case-insensitive).
NER items are (type, entity); RE (head, relation, tail); EE counts triggers (type, trigger) and
arguments (type, role, argument) — the usual trigger / argument classification — and its row is
their sum. ``overall`` is micro over every item of every task.

CLI, scoring outputs already generated (no model)::

    python -m train.ie_eval --cases examples/data/ie_eval/cases.jsonl --outputs examples/data/ie_eval/outputs.jsonl

With a model: ``python -m train.generate --base DIR --lora DIR --run-ie-cases FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from train.ie import LANGS, TASKS, IEError, IETemplates, Schema, load_ie_templates

PathLike = Union[str, "os.PathLike[str]"]

NONE_WORDS = {"none", "无", "没有", "无实体", "无关系", "无事件", "n/a", "null", "nothing", "empty", "[]"}
_FENCE = re.compile(r"^\s*```")
# Bullets and numbering a model puts before its lines: "- ", "* ", "• ", "1. ", "2) ", "3、", "(4) ", "①".
_PREFIX = re.compile(r"^\s*(?:[-*•·●▪◦‣+>]+|\d{1,3}\s*[.)、:]|[(]\d{1,3}[)]|[①-⑳])\s*")
# Wrappers a model puts around a name; removed only in matching pairs ("《青禾》杂志社" keeps its marks).
_PAIRS = {'"': '"', "'": "'", "`": "`", "“": "”", "‘": "’", "《": "》", "「": "」", "『": "』", "〈": "〉", "<": ">", "[": "]"}
_GROUP = re.compile(r"\(([^()]*)\)")
_COMMA = re.compile(r"\s*[,，]\s*")


class IECaseError(ValueError):
    """An IE case file cannot be used at all (missing, or no valid case)."""


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


# --------------------------------------------------------------------------------------------
# Cases


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


def schema_from_dict(data: Any, where: str) -> Schema:
    """A :class:`train.ie.Schema` from a case's inline ``schema`` object (same keys as a schema file)."""
    if not isinstance(data, dict):
        raise IEError(f"{where}: 'schema' must be an object with entity_types / relation_types / event_types")
    known = ("entity_types", "relation_types", "event_types")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise IEError(f"{where}: schema: unknown key {unknown[0]!r} (known keys: {', '.join(known)})")
    entities = data.get("entity_types", {})
    if isinstance(entities, list) and all(isinstance(x, str) for x in entities):
        entities = {x: x for x in entities}
    if not (isinstance(entities, dict) and all(isinstance(v, str) for v in entities.values())):
        raise IEError(f"{where}: schema: 'entity_types' must be a list of names or a mapping label → name")
    relations = data.get("relation_types", [])
    if not (isinstance(relations, list) and all(isinstance(x, str) for x in relations)):
        raise IEError(f"{where}: schema: 'relation_types' must be a list of names")
    events = data.get("event_types", {})
    if not (isinstance(events, dict) and all(isinstance(r, list) and all(isinstance(x, str) for x in r)
                                             for r in events.values())):
        raise IEError(f"{where}: schema: 'event_types' must map each event type to a list of roles")
    schema = Schema(dict(entities), list(relations), {k: list(v) for k, v in events.items()})
    schema.check(f"{where}: schema")
    return schema


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
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise IECaseError(f"IE case file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IECaseError(f"{path}: not readable UTF-8 text ({exc})") from exc
    cases, bad, seen = [], [], set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"{where}: not JSON ({exc.msg})")
            continue
        try:
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            task, lang = obj.get("task"), obj.get("lang")
            if task not in TASKS:
                raise ValueError(f"'task' must be one of {', '.join(TASKS)}, got {task!r}")
            if lang not in LANGS:
                raise ValueError(f"'lang' must be one of {', '.join(LANGS)}, got {lang!r}")
            if not isinstance(obj.get("text"), str) or not obj["text"].strip():
                raise ValueError("'text' must be a non-empty string")
            schema = schema_from_dict(obj.get("schema"), where)
            need = {"ner": "entity_types", "re": "relation_types", "ee": "event_types"}[task]
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


# --------------------------------------------------------------------------------------------
# Parsing model output


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


# --------------------------------------------------------------------------------------------
# Scoring


@dataclass
class Counts:
    cases: int = 0
    gold: int = 0
    pred: int = 0
    correct: int = 0
    unparsed: int = 0

    def add(self, other: "Counts") -> None:
        for name in ("cases", "gold", "pred", "correct", "unparsed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def precision(self) -> float:
        return self.correct / self.pred if self.pred else 0.0

    @property
    def recall(self) -> float:
        return self.correct / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"cases": self.cases, "gold": self.gold, "pred": self.pred, "correct": self.correct,
                "unparsed": self.unparsed, "precision": self.precision, "recall": self.recall, "f1": self.f1}


def _units(task: str, items: Iterable[Any]) -> dict[str, set[Any]]:
    """What is counted: the items themselves, or for EE triggers and arguments apart."""
    if task != "ee":
        return {task: set(items)}
    triggers, arguments = set(), set()
    for etype, trigger, args in items:
        triggers.add((etype, trigger))
        arguments.update((etype, role, arg) for role, arg in args)
    return {"ee-trigger": triggers, "ee-argument": arguments}


def score_case(case: IECase, parsed: Parsed) -> dict[str, Counts]:
    gold, pred = _units(case.task, case.gold), _units(case.task, parsed.items)
    out = {}
    for name in gold:
        out[name] = Counts(1, len(gold[name]), len(pred[name]), len(gold[name] & pred[name]),
                           len(parsed.unparsed) if name in ("ner", "re", "ee-trigger") else 0)
    return out


ROWS = ("ner", "re", "ee", "ee-trigger", "ee-argument", "overall")


def aggregate(per_case: Iterable[Mapping[str, Counts]]) -> dict[str, Counts]:
    """Rows of :data:`ROWS` (those with cases): EE = trigger + argument; overall = NER + RE + EE."""
    total = {name: Counts() for name in ROWS}
    for counts in per_case:
        for name, c in counts.items():
            total[name].add(c)
    ee = total["ee"]
    ee.add(total["ee-trigger"])
    arg = total["ee-argument"]
    ee.gold, ee.pred, ee.correct = ee.gold + arg.gold, ee.pred + arg.pred, ee.correct + arg.correct
    for name in ("ner", "re", "ee"):
        total["overall"].add(total[name])
    return {name: c for name, c in total.items() if c.cases}


LABELS = {"ner": "NER", "re": "RE", "ee": "EE", "ee-trigger": "  trigger", "ee-argument": "  argument",
          "overall": "overall"}


def format_table(scores: Mapping[str, Counts]) -> str:
    """A plain-text table: one row per task (EE with its trigger / argument parts) and overall."""
    head = f"{'task':<11}{'cases':>6}{'gold':>6}{'pred':>6}{'correct':>8}{'P':>8}{'R':>8}{'F1':>8}{'unparsed':>10}"
    lines = [head, "-" * len(head)]
    for name in ROWS:
        if name not in scores:
            continue
        c = scores[name]
        if name == "overall":
            lines.append("-" * len(head))
        lines.append(f"{LABELS[name]:<11}{c.cases:>6}{c.gold:>6}{c.pred:>6}{c.correct:>8}"
                     f"{100 * c.precision:>7.1f}%{100 * c.recall:>7.1f}%{100 * c.f1:>7.1f}%{c.unparsed:>10}")
    return "\n".join(lines)


@dataclass
class Report:
    scores: dict[str, Counts]
    records: list[dict[str, Any]]


def _item_json(task: str, item: Any) -> Any:
    if task == "ee":
        return {"type": item[0], "trigger": item[1], "arguments": [list(a) for a in item[2]]}
    return list(item)


def score_outputs(cases: Sequence[IECase], outputs: Mapping[str, str],
                  extra: Mapping[str, Mapping[str, Any]] | None = None) -> Report:
    """Score the answer text of each case (``outputs``: case id → text; a case without an answer
    counts as an empty one)."""
    per_case, records = [], []
    for case in cases:
        text = outputs.get(case.id, "")
        parsed = parse_answer(case.task, text, case.schema)
        counts = score_case(case, parsed)
        per_case.append(counts)
        records.append({"id": case.id, "task": case.task, "lang": case.lang, "output": text,
                        **(dict(extra.get(case.id, {})) if extra else {}),
                        "parsed": [_item_json(case.task, i) for i in parsed.items],
                        "gold": [_item_json(case.task, i) for i in case.gold],
                        "unparsed": parsed.unparsed,
                        "counts": {k: {"gold": c.gold, "pred": c.pred, "correct": c.correct}
                                   for k, c in counts.items()}})
    return Report(aggregate(per_case), records)


def run_ie_cases(generator: Any, cases: Sequence[IECase], decoding: Any, batch_size: int = 8) -> Report:
    """Generate each case's answer with ``generator`` (:class:`train.generate.Generator`, the
    alpaca template around the IE instruction and the text) and score it."""
    from train.generate import Case, run_cases

    templates = {lang: load_ie_templates(lang) for lang in {c.lang for c in cases}}
    gen_cases = [Case(c.where, {"id": c.id, "instruction": instruction(c, templates[c.lang]), "input": c.text},
                      "instruction") for c in cases]
    results = run_cases(generator, gen_cases, decoding, batch_size)
    outputs = {r["id"]: r["output"] for r in results}
    extra = {r["id"]: {"finish": r["finish"], "new_tokens": r["new_tokens"]} for r in results}
    return score_outputs(cases, outputs, extra)


def read_outputs(path: PathLike) -> dict[str, str]:
    """``{"id", "output"}`` JSON lines (what ``--cases``/``--run-ie-cases --out`` write) → id → text."""
    path = Path(path)
    out = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise IECaseError(f"outputs file not found: {path}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IECaseError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not (isinstance(obj, dict) and "id" in obj and isinstance(obj.get("output"), str)):
            raise IECaseError(f"{path}:{n}: expected {{\"id\", \"output\": string}}")
        out[str(obj["id"])] = obj["output"]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.ie_eval",
                                description="Score IE answers already generated against gold: P/R/F1 per task.")
    p.add_argument("--cases", required=True, help="IE case file with gold answers (JSON lines)")
    p.add_argument("--outputs", required=True, help="JSON lines {\"id\", \"output\"}")
    p.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")
    args = p.parse_args(argv)
    try:
        cases, bad = read_ie_cases(args.cases)
        outputs = read_outputs(args.outputs)
    except (IECaseError, IEError) as exc:
        print(f"python -m train.ie_eval: error: {exc}", file=sys.stderr)
        return 2
    for line in bad:
        print(f"skipped {line}", file=sys.stderr)
    missing = [c.id for c in cases if c.id not in outputs]
    if missing:
        print(f"warning: {len(missing)} case(s) without an output, scored as empty: {', '.join(missing[:5])}",
              file=sys.stderr)
    report = score_outputs(cases, outputs)
    if args.json:
        print(json.dumps({k: c.as_dict() for k, c in report.scores.items()}, indent=2))
    else:
        print(format_table(report.scores))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
