"""The arithmetic of a diff, defined once so that make-diff's exactness check is apply's computation.

``restore``: ``out = to(out_dtype)(acc(raw) + acc(diff))`` where acc is float32, or float64 when the
diff is stored in float64. ``subtract``: ``diff = acc(tuned) - acc(raw)``. IEEE addition is correctly
rounded, so CPU and GPU give the same bits. One sign cannot be restored by any addition: x + (−x)
is +0.0, so a tuned −0.0 comes back as +0.0; comparisons here and the checksums count them equal,
and :func:`restore` never outputs −0.0.
Mixed-dtype in-place ops take a slow path in PyTorch, so every operand is first copied into a
same-dtype scratch buffer (reused between slices).
"""

from __future__ import annotations

import torch

_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


class Scratch:
    """Reusable 1-D buffers by (slot, dtype), grown as needed."""

    def __init__(self) -> None:
        self._bufs: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, slot: str, dtype: torch.dtype, n: int) -> torch.Tensor:
        buf = self._bufs.get((slot, dtype))
        if buf is None or buf.numel() < n:
            buf = self._bufs[(slot, dtype)] = torch.empty(n, dtype=dtype)
        return buf[:n]


def acc_dtype(diff_dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if diff_dtype == torch.float64 else torch.float32


def _as(x: torch.Tensor, dtype: torch.dtype, scratch: Scratch, slot: str) -> torch.Tensor:
    if x.dtype == dtype:
        return x
    return scratch.get(slot, dtype, x.numel()).copy_(x)


def restore(raw: torch.Tensor, diff: torch.Tensor, out_dtype: torch.dtype, scratch: Scratch) -> torch.Tensor:
    acc = acc_dtype(diff.dtype)
    total = scratch.get("r_acc", acc, raw.numel()).copy_(raw)
    total.add_(_as(diff, acc, scratch, "r_tmp"))
    out = _as(total, out_dtype, scratch, "r_out")
    # -0.0 only where raw and diff were both -0.0: made +0.0, so the output is canonical as it is
    # hashed (recover.manifest) and the hashing thread needs no copy of it.
    return out.add_(0.0)


def subtract(tuned: torch.Tensor, raw: torch.Tensor, diff_dtype: torch.dtype, scratch: Scratch) -> torch.Tensor:
    acc = acc_dtype(diff_dtype)
    d = scratch.get("s_acc", acc, tuned.numel()).copy_(tuned)
    d.sub_(_as(raw, acc, scratch, "s_tmp"))
    return _as(d, diff_dtype, scratch, "s_out")


def mismatches(a: torch.Tensor, b: torch.Tensor) -> int:
    """Elements whose bits differ, −0.0 and +0.0 counted equal (see :mod:`recover.manifest`)."""
    view = _INT_VIEW[a.dtype.itemsize]
    return int(((a + 0.0).view(view) != (b + 0.0).view(view)).sum())


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    view = _INT_VIEW[a.dtype.itemsize]
    return torch.equal(a.view(view), b.view(view)) or mismatches(a, b) == 0
