"""How a stage's input is dealt out to its tasks: contiguous runs of items of about equal bytes.

Contiguous, so that the tasks' outputs taken in task order are the items in input order — which is
what makes a split build byte-identical to an unsplit one. Used for a source's input units (files,
repositories, byte ranges of one big file) in the prepare stage and for a direct JSON-lines source's
files in the build stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def contiguous_ranges(sizes: Sequence[int], n: int) -> list[tuple[int, int]]:
    """``n`` ranges ``(start, end)`` of item indices, in order, covering ``range(len(sizes))``, each
    holding about ``sum(sizes) / n`` bytes (an item of size 0 counts as 1).

    With at least ``n`` items every range is non-empty; with fewer, some ranges are empty (a task
    with nothing to do) and no item is split.
    """
    if n < 1:
        raise ValueError(f"contiguous_ranges: n must be >= 1, got {n}")
    m = len(sizes)
    cum = np.cumsum([0] + [max(1, int(s)) for s in sizes])
    edges = [0]
    for k in range(1, n):
        e = int(np.searchsorted(cum, cum[-1] * k / n))
        # at least one item a range when there are enough, and never past the end
        e = min(max(e, edges[-1] + 1), m - (n - k)) if m >= n else min(max(e, edges[-1]), m)
        edges.append(e)
    edges.append(m)
    return [(edges[k], edges[k + 1]) for k in range(n)]
