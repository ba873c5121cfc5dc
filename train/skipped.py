"""Bad records skipped and counted by reason, the first few kept with their ``file:line`` (no torch:
the instruction readers and the IE builders share it), and how the training side words a JSON line
that ``common.jsonl.iter_jsonl`` could not read."""

from __future__ import annotations

import logging
import re
from collections import Counter

from common.jsonl import BadLine

log = logging.getLogger("train.prompts")

# How many skipped records are logged (and kept in Skipped.examples) with their file:line.
REPORT_FIRST = 5


class Skipped(Counter):
    """Skipped records counted by reason; ``examples`` holds the first few as ``file:line: reason``."""

    def __init__(self) -> None:
        super().__init__()
        self.examples: list[str] = []

    def add(self, where: str, reason: str, detail: str = "") -> None:
        """Count ``reason``; the first few are kept (and logged) as ``where: reason[: detail]``."""
        self[reason] += 1
        if len(self.examples) < REPORT_FIRST:
            example = f"{where}: {reason}" + (f": {detail}" if detail else "")
            self.examples.append(example)
            log.warning("skipped %s", example)


_POSITION = re.compile(r": line \d+ column (\d+) \(char \d+\)$")


def bad_line(bad: BadLine, column: bool = False) -> tuple[str, str]:
    """``(reason, detail)`` of a line ``iter_jsonl`` refused: ``("not JSON", "Expecting value")`` (with
    ``column``: ``"… at column 3"``; the line number is the caller's ``file:line``), ``("not a JSON
    object", "")``, ``("not UTF-8 text", "invalid byte at 4")``, ``("line too long", …)``."""
    if bad.reason == "invalid_json":
        m = _POSITION.search(bad.detail)
        detail = bad.detail[:m.start()] if m else bad.detail
        return "not JSON", f"{detail} at column {m.group(1)}" if column and m else detail
    if bad.reason == "not_object":
        return "not a JSON object", ""
    if bad.reason == "not_utf8":
        return "not UTF-8 text", bad.detail
    return bad.reason.replace("_", " "), bad.detail


def bad_line_text(bad: BadLine, column: bool = False) -> str:
    """``reason (detail)`` of :func:`bad_line`, for ``file:line: …`` messages."""
    reason, detail = bad_line(bad, column)
    return f"{reason} ({detail})" if detail else reason
