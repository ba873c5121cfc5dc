"""The slice-by-slice loop shared by make-diff, apply and merge: double-buffered, hashing overlapped.

Reading (``preadv``), the arithmetic (PyTorch kernels), SHA-256 (``hashlib``) and ``write(2)`` all
release the GIL, so checksums run on one background thread and output writes on another while the
main thread reads and computes the next slice. Each background thread keeps the order of its jobs.
Two sets of buffers alternate; a set is reused only after the background work on it is done, so
memory stays at two slices whatever the model size.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from recover.arith import Scratch


class Pipeline:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recover-hash")
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recover-write")
        self.scratch = (Scratch(), Scratch())
        self._slot_jobs: list[list[Future]] = [[], []]
        self._other: list[Future] = []
        self._i = 0

    def next_slot(self) -> Scratch:
        """Buffers for the next slice, once the background work that used them has finished."""
        s = self._i % 2
        self._i += 1
        for f in self._slot_jobs[s]:
            f.result()  # re-raises an error from the background thread here
        self._slot_jobs[s] = []
        self._current = s
        self._check_done()
        return self.scratch[s]

    def background(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` after every earlier background job (one worker: order is kept)."""
        self._slot_jobs[self._current].append(self._pool.submit(fn, *args))

    def write(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` (an output write) on the writer thread, after every earlier write."""
        self._slot_jobs[self._current].append(self._writes.submit(fn, *args))

    def after(self, fn: Callable[..., Any], *args: Any) -> None:
        """Like :meth:`background` for work that uses no slice buffer (end-of-tensor checks)."""
        self._other.append(self._pool.submit(fn, *args))

    def _check_done(self) -> None:
        keep = []
        for f in self._other:
            if f.done():
                f.result()
            else:
                keep.append(f)
        self._other = keep

    def drain(self) -> None:
        for jobs in self._slot_jobs:
            for f in jobs:
                f.result()
        for f in self._other:
            f.result()
        self._slot_jobs = [[], []]
        self._other = []

    def stop(self) -> None:
        """Cancel what has not started and wait for what has, ignoring errors: before cleaning up."""
        for f in [*self._slot_jobs[0], *self._slot_jobs[1], *self._other]:
            f.cancel()
        for f in [*self._slot_jobs[0], *self._slot_jobs[1], *self._other]:
            if not f.cancelled():
                try:
                    f.result()
                except BaseException:  # noqa: BLE001 - the first error is already on its way up
                    pass
        self._slot_jobs = [[], []]
        self._other = []

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._writes.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
