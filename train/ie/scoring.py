"""Precision / recall / F1 of IE answers against gold: pure functions, no model and no files.

Micro-averaged over items after normalization. NER items are (type, entity); RE (head, relation,
tail); EE counts triggers (type, trigger) and arguments (type, role, argument) — the usual trigger /
argument classification — and its row is their sum. ``overall`` is micro over every item of every task.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from train.ie.answers import Parsed, parse_answer

if TYPE_CHECKING:
    from train.ie.cases import IECase


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
