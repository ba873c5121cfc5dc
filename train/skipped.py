"""Bad records skipped and counted by reason, the first few kept with their ``file:line`` (no torch:
the instruction readers and the IE builders share it)."""

from __future__ import annotations

import logging
from collections import Counter

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
