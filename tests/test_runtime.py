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
def leave(code):
    # Both ranks leave the group together: a rank whose peer has already exited can abort in gloo's
    # teardown (SIGABRT), which would hide the exit status this test is about.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    sys.exit(code)
try:
    on_rank0(fail)
except OSError as exc:
    print(f"rank {rank}: OSError: {exc}", flush=True); leave(3)
except TrainError as exc:
    print(f"rank {rank}: TrainError: {exc}", flush=True); leave(4)
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


# --- complete-or-absent checkpoints (train.checkpoint, on common.markers' sealed folders) -------------

def _checkpoint(root, step, files=None):
    path = root / f"checkpoint-{step}"
    (path / f"global_step{step}").mkdir(parents=True)
    for name, data in (files or {"model.bin": b"x" * 10, f"global_step{step}/zero.pt": b"y" * 3}).items():
        (path / name).write_bytes(data)
    return path


def test_a_checkpoint_counts_once_its_marker_lists_every_file_with_its_size(tmp_path):
    import json

    from train import checkpoint as ckpt

    path = _checkpoint(tmp_path, 4)
    assert ckpt.read_complete(path) is None and ckpt.latest_complete(tmp_path) is None
    sealed = ckpt.mark_complete(path, 4, {"run": {"config": {"seed": 1}}})
    marker = json.loads((path / ckpt.MARKER).read_text())
    assert marker["step"] == 4 and marker["run"] == {"config": {"seed": 1}} and "time" in marker
    assert marker["files"] == {"global_step4/zero.pt": 3, "model.bin": 10}
    assert ckpt.read_complete(path) == sealed and ckpt.latest_complete(tmp_path).step == 4
    # A file cut short after sealing, a marker for another step, garbage: not a checkpoint.
    (path / "model.bin").write_bytes(b"x")
    assert ckpt.read_complete(path) is None
    other = _checkpoint(tmp_path, 8)
    ckpt.mark_complete(other, 8)
    (tmp_path / "checkpoint-12").mkdir()
    (tmp_path / "checkpoint-12" / ckpt.MARKER).write_text("{not json")
    renamed = tmp_path / "checkpoint-9"
    ckpt.mark_complete(_checkpoint(tmp_path, 99), 99)
    (tmp_path / "checkpoint-99").rename(renamed)
    assert [c.step for c in ckpt.list_complete(tmp_path)] == [8]
    gone = ckpt.remove_incomplete(tmp_path)
    assert sorted(p.name for p in gone) == ["checkpoint-12", "checkpoint-4", "checkpoint-9"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-8"]


def test_prune_keeps_the_newest_and_resume_resolves(tmp_path):
    import pytest

    from train import checkpoint as ckpt

    for step in (2, 4, 6):
        ckpt.mark_complete(_checkpoint(tmp_path, step), step)
    assert [p.name for p in ckpt.prune(tmp_path, 2)] == ["checkpoint-2"]
    assert ckpt.prune(tmp_path, 0) == [tmp_path / "checkpoint-4"]  # at least one always stays
    assert ckpt.resolve_resume(tmp_path, "auto").step == 6
    assert ckpt.resolve_resume(tmp_path, "never") is None
    assert ckpt.resolve_resume(tmp_path, str(tmp_path / "checkpoint-6")).step == 6
    with pytest.raises(ValueError, match="is not a complete checkpoint"):
        ckpt.resolve_resume(tmp_path, str(tmp_path / "checkpoint-2"))


# --- the training log ---------------------------------------------------------------------------


def test_the_training_log_is_json_numbers_and_a_readable_line_and_resume_drops_later_steps(tmp_path, capsys):
    """train.metrics driven by the Trainer's own state and control objects, as the Trainer drives it."""
    import json

    from transformers import TrainerControl, TrainerState

    from train.metrics import METRICS, MetricsLog, format_line

    state, control = TrainerState(), TrainerControl()
    state.max_steps = 200
    log = MetricsLog(tmp_path)
    log.resume(0)
    log.on_train_begin(None, state, control)
    for step in (1, 2):
        state.global_step = step
        control.should_evaluate = step == 2  # eval follows the step-2 log: one record for both
        log.on_log(None, state, control, {"loss": 8.017, "learning_rate": 2.9e-4, "grad_norm": 1.0234,
                                          "tokens_per_s_per_gpu": 1234.4, "epoch": 0.1, "train_runtime": 3.0})
    log.on_log(None, state, control, {"eval_loss": 7.5, "eval_runtime": 0.3})
    state.global_step = 3
    control.should_evaluate = False
    log.on_log(None, state, control, {"eval_loss": 7.25})  # evaluated on a step that logged no loss
    records = [json.loads(line) for line in (tmp_path / METRICS).read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert set(records[0]) == {"step", "total_steps", "loss", "lr", "grad_norm", "tokens_per_s_per_gpu",
                               "elapsed_s", "eta_s"}  # no mfu where the peak is unknown
    assert records[0]["loss"] == 8.017 and records[0]["lr"] == 2.9e-4 and records[0]["total_steps"] == 200
    assert records[1]["eval_loss"] == 7.5 and records[1]["loss"] == 8.017
    assert set(records[2]) == {"step", "total_steps", "eval_loss", "elapsed_s", "eta_s"}
    assert all(isinstance(v, (int, float)) for r in records for v in r.values())
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("step 1/200  loss 8.017  lr 2.9e-4  gn 1.02  1,234 tok/s/GPU  elapsed 0s  ETA ")
    assert out[2].startswith("step 2/200  eval_loss 7.500  elapsed ")
    assert "{'loss'" not in "\n".join(out)
    assert format_line({"step": 40, "total_steps": 200, "loss": 3.4121, "lr": 2.9e-4, "grad_norm": 1.02,
                        "tokens_per_s_per_gpu": 1234.0, "mfu": 0.41, "elapsed_s": 192, "eta_s": 768}) == \
        "step 40/200  loss 3.412  lr 2.9e-4  gn 1.02  1,234 tok/s/GPU  MFU 41%  elapsed 3m12s  ETA 12m48s"

    # Resumed from checkpoint 2: step 3 is trained again, so its record goes; a torn last line too.
    with (tmp_path / METRICS).open("a") as f:
        f.write('{"step": 4, "loss": 1.')
    again = MetricsLog(tmp_path)
    again.resume(2)
    assert [json.loads(line)["step"] for line in (tmp_path / METRICS).read_text().splitlines()] == [1, 2]
    assert again.offset == records[1]["elapsed_s"]  # elapsed counts on over attempts
    MetricsLog(tmp_path).resume(0)  # a fresh run in the same folder (resume: never) starts a new log
    assert (tmp_path / METRICS).read_text() == ""
