"""`python -m hpc.status`: the registry of submitted jobs, states from sacct/squeue, log tails, cancel."""

from __future__ import annotations

import time

import pytest
import yaml

from hpc import status as hst
from hpc import submit as hs
from hpc.status import Record, read_registry, record_submission, registry_path, summarize, tail
from slurm_fixtures import sacct_state, slurm, slurm_cluster  # noqa: F401  (fixture)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = hst.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_registry_round_trip_skips_damaged_lines(tmp_path):
    folder = tmp_path / "logs dir"
    a = Record("12", "it's \"a\"", "probe", "job", str(folder / "f"), cluster="dev", submitted=hst.now_iso())
    b = Record("13", "x", "corpus", "shards", str(folder / "f"), array=3)
    record_submission(folder, a)
    with registry_path(folder).open("a") as f:
        f.write('{"job_id": "99", "trunc')  # a submitter killed mid-write
        f.write("\n")
    record_submission(folder, b)
    assert read_registry(folder) == [a, b]
    assert hst.find_record(folder, "13_2") == b and hst.find_record(folder, "14") is None
    assert read_registry(tmp_path / "nothing") == []


def test_log_paths_follow_submitit_naming(tmp_path):
    single = Record("12", "n", "probe", "job", str(tmp_path))
    assert single.log_paths() == (tmp_path / "12_0_log.out", tmp_path / "12_0_log.err")
    array = Record("13", "n", "corpus", "shards", str(tmp_path), array=3)
    assert array.task_ids() == ["13_0", "13_1", "13_2"]
    assert array.log_paths("13_2")[0] == tmp_path / "13_2_0_log.out"


def test_tail_reads_the_end_of_big_files(tmp_path):
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(50_000)))
    assert tail(path, 3) == ["line 49997", "line 49998", "line 49999"]
    assert tail(path, 0) == []
    assert tail(tmp_path / "missing", 3) is None
    (tmp_path / "short").write_text("only\n")
    assert tail(tmp_path / "short", 5) == ["only"]


def test_summarize_counts_array_states():
    states = [hst.TaskState(f"1_{i}", s) for i, s in enumerate(["COMPLETED", "FAILED", "COMPLETED"])]
    assert summarize(states) == "COMPLETED×2 FAILED×1"
    assert summarize(states[:1]) == "COMPLETED" and summarize([]) == "UNKNOWN"


def test_bad_job_ids_and_empty_registry(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "12; rm -rf /", "--log-folder", tmp_path)
    assert rc == 2 and "is not a Slurm job id" in err
    rc, out, _ = run_cli(capsys, "--log-folder", tmp_path)
    assert rc == 0 and f"no jobs in {registry_path(tmp_path)}" in out
    rc, _, err = run_cli(capsys, "--cancel", "--log-folder", tmp_path)
    assert rc == 2 and "--cancel needs a JOB_ID" in err


@pytest.mark.slurm
def test_status_shows_state_and_log_tail_and_lists_recent_jobs(slurm_cluster, capsys, tmp_path):
    config = tmp_path / "probe.yaml"
    config.write_text(yaml.safe_dump({"message": "status-probe-marker"}))
    logs = tmp_path / "my logs"
    sub = hs.submit("probe", config, "dev", log_folder=str(logs))
    sub.wait()
    (job_id,) = sub.job_ids
    sacct_state(job_id, until=("COMPLETED",))
    rc, out, err = run_cli(capsys, job_id, "--log-folder", logs, "--tail", "5")
    assert rc == 0, err
    assert out.startswith(f"job {job_id}: COMPLETED  [probe job, 'cama-probe', 1 task(s), dev/debug")
    assert f"--- {logs}" in out and "status-probe-marker" in out and "Job completed successfully" in out
    rc, out, _ = run_cli(capsys, "--log-folder", logs)
    assert rc == 0 and f"{job_id:<10} probe     job     COMPLETED" in out


@pytest.mark.slurm
def test_cancel_stops_a_running_job(slurm_cluster, capsys, tmp_path):
    config = tmp_path / "sleep.yaml"
    config.write_text(yaml.safe_dump({"sleep_s": 120}))
    sub = hs.submit("probe", config, "dev", log_folder=str(tmp_path / "logs"))
    (job_id,) = sub.job_ids
    end = time.monotonic() + 20
    while hst.status(job_id, tmp_path / "logs", 0).summary not in ("RUNNING",) and time.monotonic() < end:
        time.sleep(0.3)
    rc, out, err = run_cli(capsys, job_id, "--cancel", "--log-folder", tmp_path / "logs", "--tail", "0")
    assert rc == 0, err
    assert out.startswith(f"cancelled job {job_id}")
    assert sacct_state(job_id, until=("CANCELLED",)) == "CANCELLED"
    for job in sub.steps[0].jobs:
        # submitit waits 15 s for a result file a slow shared filesystem may still deliver; here none comes.
        job._results_timeout_s = 1
    with pytest.raises(hs.JobFailed) as err:
        sub.wait()
    assert "ended without a result (Slurm state CANCELLED" in str(err.value).splitlines()[0]


@pytest.mark.slurm
def test_unknown_job_and_job_outside_the_registry(slurm_cluster, capsys, tmp_path):
    rc, _, err = run_cli(capsys, "987654", "--log-folder", tmp_path)
    assert rc == 2 and "no job 987654: sacct and squeue do not know it" in err
    # A job submitted without hpc.submit: its state, and why there are no logs.
    job_id = slurm("sbatch", "--parsable", "--wait", "-o", "/dev/null", "--wrap", "true").strip().split(";")[0]
    sacct_state(job_id, until=("COMPLETED",))
    rc, out, _ = run_cli(capsys, job_id, "--log-folder", tmp_path)
    assert rc == 0 and f"job {job_id}: COMPLETED  (not in the registry" in out
