"""Complete-or-absent checkpoints, the requeue limit, and preemption on the real dev cluster through submitit."""

from __future__ import annotations

import pickle
import shlex
import time
from pathlib import Path

import pytest

from hpc import preempt
from hpc.preempt import (
    Checkpoints, Recurrence, RecurrenceResult, Requeueable, RequeueLimitExceeded,
    latest_complete, list_complete, prune, read_events, remove_partial, save_complete,
)
from slurm_fixtures import sacct_state, slurm, slurm_cluster  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent


def write_state(step: int, payload: str = "x"):
    def write(dest: Path) -> int:
        (dest / "state.txt").write_text(payload)
        (dest / "sub").mkdir()
        (dest / "sub" / "more.bin").write_bytes(b"\0" * step)
        return step
    return write


# --- complete-or-absent checkpoints ----------------------------------------------------------------


def test_save_then_latest_complete(tmp_path):
    assert latest_complete(tmp_path / "missing") is None
    for step in (10, 30, 20):
        save_complete(tmp_path, write_state(step), keep=None)
    latest = latest_complete(tmp_path)
    assert latest is not None and latest.step == 30 and latest.path.name == "step-000000000030"
    assert latest.meta["files"] == {"state.txt": 1, "sub/more.bin": 30}
    assert [c.step for c in list_complete(tmp_path)] == [10, 20, 30]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_incomplete_checkpoints_are_absent(tmp_path):
    save_complete(tmp_path, write_state(10))
    # A crash mid-save leaves a temp folder; a folder without marker, a marker naming another step,
    # a truncated file, garbage JSON: none of them is a checkpoint.
    (tmp_path / ".tmp-host-1-0").mkdir()
    (tmp_path / ".tmp-host-1-0" / "state.txt").write_text("half")
    (tmp_path / "step-000000000050").mkdir()
    c60 = save_complete(tmp_path, write_state(60), keep=None)
    (c60.path / "sub" / "more.bin").write_bytes(b"short")
    c70 = save_complete(tmp_path, write_state(70), keep=None)
    (c70.path / preempt.MARKER).write_text("{not json")
    c80 = save_complete(tmp_path, write_state(80), keep=None)
    c80.path.rename(tmp_path / "step-000000000090")
    assert latest_complete(tmp_path).step == 10
    assert remove_partial(tmp_path) == [tmp_path / ".tmp-host-1-0"]


def test_failed_or_empty_save_leaves_nothing(tmp_path):
    def boom(dest: Path) -> int:
        (dest / "partial").write_text("x")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        save_complete(tmp_path, boom)
    assert save_complete(tmp_path, lambda dest: None) is None
    with pytest.raises(preempt.CheckpointError, match="must return the step"):
        save_complete(tmp_path, lambda dest: "12")  # type: ignore[arg-type,return-value]
    assert list(tmp_path.iterdir()) == []


def test_same_step_twice_replaces_and_prune_keeps_newest(tmp_path):
    save_complete(tmp_path, write_state(5, "first"))
    again = save_complete(tmp_path, write_state(5, "second"))
    assert (again.path / "state.txt").read_text() == "second"
    for step in (6, 7, 8):
        save_complete(tmp_path, write_state(step), keep=2)
    assert [c.step for c in list_complete(tmp_path)] == [7, 8]
    assert prune(tmp_path, 0) == [tmp_path / "step-000000000007"]  # the newest always stays
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000000008"]


# --- the Checkpointable and its requeue limit, in process ---------------------------------------


def test_recurrence_resumes_to_the_same_result(tmp_path):
    job = Recurrence(steps=45, save_every=10)
    assert job.run(Checkpoints(tmp_path / "a")) == RecurrenceResult(job.reference(), 45, 0, 0)
    # Resume from a mid-run checkpoint: same value, started at step 40.
    partial = Recurrence(steps=40, save_every=10)
    partial.run(Checkpoints(tmp_path / "b"))
    partial.save_every = 1000
    save_complete(tmp_path / "b", partial.save)
    resumed = Recurrence(steps=45, save_every=10).run(Checkpoints(tmp_path / "b"))
    assert (resumed.value, resumed.resumed_from) == (job.reference(), 40)
    # Live state stays out of the requeue pickle.
    assert pickle.loads(pickle.dumps(job))._live is None and job._live is not None
    with pytest.raises(preempt.CheckpointError, match="lanes"):
        Recurrence(steps=45, lanes=3).run(Checkpoints(tmp_path / "b"))


def test_checkpoint_saves_counts_and_stops_at_the_limit(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    job = Recurrence(steps=100)
    job._live = (17, job.initial())  # as if the signal came at step 17
    wrapped = Requeueable(job, tmp_path, requeue_limit=1)
    delayed = wrapped.checkpoint()
    assert delayed.function is wrapped and wrapped.requeues == 1
    assert latest_complete(tmp_path).step == 17
    # The resubmitted pickle carries the count, and not the live state.
    again = pickle.loads(pickle.dumps(delayed)).function
    assert again.requeues == 1 and again.job._live is None
    again.job._live = (23, job.initial())
    with pytest.raises(RequeueLimitExceeded, match=r"after 1 requeue\(s\), and requeue_limit is 1.*step-000000000023"):
        again.checkpoint()
    assert latest_complete(tmp_path).step == 23  # it still saved before failing
    assert [(e["event"], e["step"], e["requeues"]) for e in read_events(tmp_path)] == [("requeue", 17, 1), ("limit", 23, 1)]


def test_slurm_restart_count_counts_too(tmp_path, monkeypatch):
    # Slurm requeued it twice already (e.g. node failures), unknown to the pickled counter.
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    wrapped = Requeueable(Recurrence(steps=10), tmp_path, requeue_limit=2)
    with pytest.raises(RequeueLimitExceeded, match="after 2 requeue"):
        wrapped.checkpoint()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert wrapped.checkpoint().function.requeues == 2
    with pytest.raises(ValueError, match="requeue_limit"):
        Requeueable(Recurrence(steps=1), tmp_path, requeue_limit=-1)


# --- on the real cluster, through submitit --------------------------------------------------------


def executor(folder: Path):
    submitit = pytest.importorskip("submitit")
    ex = submitit.AutoExecutor(folder=folder)
    assert ex.cluster == "slurm"
    ex.update_parameters(
        slurm_partition="debug", timeout_min=10, nodes=1, tasks_per_node=1, cpus_per_task=1,
        slurm_job_name="preempt-test",
        # The job's python imports hpc.preempt from this checkout whether or not it is installed.
        slurm_setup=[f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"],
    )
    return ex


def wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_done(job, timeout: float) -> None:
    wait_for(lambda: job.done(), timeout, f"job {job.job_id} to finish")


def sacct_history(job_id: str) -> list[str]:
    """Every run of the job, requeued ones included (sacct --duplicates)."""
    out = slurm("sacct", "-n", "-X", "-P", "--duplicates", "-j", job_id, "-o", "State")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.mark.slurm
@pytest.mark.slow
def test_preempted_job_requeues_and_resumes_to_the_same_result(slurm_cluster, tmp_path):
    ckpt = tmp_path / "checkpoints"
    work = Recurrence(steps=60, sleep_s=0.1, save_every=10)
    job = executor(tmp_path / "submitit").submit(Requeueable(work, ckpt, requeue_limit=2))
    # Interrupt once the job is well under way: past its first periodic checkpoint.
    wait_for(lambda: latest_complete(ckpt), 60, "the first checkpoint")
    job._interrupt()  # submitit's test hook: scancel --signal TERM, then --signal USR2, like a preemption
    # The requeued job starts again about 31 s later (the dev cluster's cred_expire 30 + 1).
    wait_done(job, 120)
    result = job.result()
    events = read_events(ckpt)
    assert [e["event"] for e in events] == ["requeue"], events
    assert result.value == work.reference()
    assert result.restarts == 1
    assert 10 <= result.resumed_from == events[0]["step"] < 60  # resumed from the signal's save, not step 0
    assert sacct_state(job.job_id, until=["COMPLETED"]) == "COMPLETED"
    assert sacct_history(job.job_id) == ["REQUEUED", "COMPLETED"]  # one requeue, then the finished run


@pytest.mark.slurm
def test_requeue_limit_fails_clearly_instead_of_requeueing(slurm_cluster, tmp_path):
    submitit = pytest.importorskip("submitit")
    ckpt = tmp_path / "checkpoints"
    work = Recurrence(steps=400, sleep_s=0.05, save_every=10)
    job = executor(tmp_path / "submitit").submit(Requeueable(work, ckpt, requeue_limit=0))
    wait_for(lambda: latest_complete(ckpt), 60, "the first checkpoint")
    job._interrupt()
    wait_done(job, 60)
    with pytest.raises(submitit.core.utils.FailedJobError, match="RequeueLimitExceeded.*requeue_limit is 0"):
        job.result()
    assert [e["event"] for e in read_events(ckpt)] == ["limit"]
    assert latest_complete(ckpt).step == read_events(ckpt)[0]["step"] > 0  # saved before failing
    assert sacct_state(job.job_id, until=["FAILED"]) == "FAILED"
    assert "REQUEUED" not in sacct_history(job.job_id)
