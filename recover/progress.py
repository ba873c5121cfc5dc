"""A byte-counting progress bar on stderr (tqdm), silent when disabled."""

from __future__ import annotations

from typing import Any


class Progress:
    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                            mininterval=1.0, leave=False)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
