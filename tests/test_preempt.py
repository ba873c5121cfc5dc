"""hpc.preempt: a training job that saved and stopped on the signal is requeued, up to the profile's limit.

The requeue itself, on the dev cluster through hpc.submit, is test_pretrain.py's
test_preempted_on_slurm_through_hpc_submit_requeues_and_ends_with_the_same_weights.
"""

from __future__ import annotations

import pytest

from hpc import preempt
from hpc.preempt import RequeueLimitExceeded, read_events, record_event, requeue_stopped


def test_outside_slurm_the_result_is_returned_as_it_is(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    result = {"status": "preempted", "step": 7, "checkpoint": str(tmp_path / "checkpoint-7")}
    assert requeue_stopped(result) is result
    assert read_events(tmp_path) == []


def test_at_the_limit_it_fails_clearly_and_records_why(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    monkeypatch.setenv(preempt.REQUEUE_LIMIT_VAR, "2")
    result = {"status": "preempted", "step": 23, "checkpoint": str(tmp_path / "run" / "checkpoint-23")}
    with pytest.raises(RequeueLimitExceeded, match=r"job 4242 .* after 2 requeue\(s\), and the requeue limit is 2"
                                                   r".*checkpoint-23"):
        requeue_stopped(result)
    (event,) = read_events(tmp_path / "run")
    assert (event["event"], event["step"], event["requeues"], event["job_id"]) == ("limit", 23, 2, "4242")


def test_other_ranks_only_leave(monkeypatch, tmp_path):
    """Rank 0 alone talks to Slurm; every other rank ends without a result (SystemExit 0)."""
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "9")
    with pytest.raises(SystemExit) as stop:
        requeue_stopped({"status": "preempted", "step": 1, "checkpoint": str(tmp_path / "checkpoint-1")})
    assert stop.value.code == 0 and read_events(tmp_path) == []


def test_events_are_appended_oldest_first(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    record_event(tmp_path, "requeue", 10, 1)
    record_event(tmp_path, "limit", 20, 3)
    events = read_events(tmp_path)
    assert [(e["event"], e["step"], e["requeues"], e["restart_count"]) for e in events] == [
        ("requeue", 10, 1, 1), ("limit", 20, 3, 1)]
