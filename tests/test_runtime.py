"""train.runtime pieces that need more than one rank but no model: rank-0 work whose failure must
stop every rank at once (not after the collective timeout)."""

from __future__ import annotations

import subprocess
import sys
import time

from train_helpers import ROOT, env, free_port

SCRIPT = """
import datetime, os, sys, torch
from train.runtime import on_rank0
from train.config import TrainError
torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=600))
rank = torch.distributed.get_rank()
assert on_rank0(lambda: 41 + rank) == 41            # rank 0's result, on every rank
def fail():
    raise OSError(28, "No space left on device")
try:
    on_rank0(fail)
except OSError as exc:
    print(f"rank {rank}: OSError: {exc}", flush=True); sys.exit(3)
except TrainError as exc:
    print(f"rank {rank}: TrainError: {exc}", flush=True); sys.exit(4)
print(f"rank {rank}: no error", flush=True)
"""


def test_a_rank0_failure_stops_every_rank_with_its_reason():
    port = str(free_port())
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env(RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [3, 4], outs
    assert "rank 0: OSError: [Errno 28] No space left on device" in outs[0]
    assert "rank 1: TrainError: rank 0 failed, so this rank stops too: OSError: [Errno 28] No space left" in outs[1]
    assert time.monotonic() - started < 60  # not the 600 s collective timeout
