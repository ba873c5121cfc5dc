"""`python -m hpc.status`: the registry of submitted jobs, states from sacct/squeue, log tails, cancel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from hpc import status as hst
from hpc import submit as hs
from hpc.status import Record, read_registry, record_submission, registry_path, summarize, tail
from slurm_down import slurm_down  # noqa: F401  (fixture)
from slurm_fixtures import sacct_state, slurm, slurm_cluster  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent


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


# ---------------------------------------------------------------------------------------------
# A controller that does not answer (a real slurm.conf pointing where nothing listens)


def test_status_with_the_controller_down_says_so_not_unknown_job(slurm_down, capsys, tmp_path):
    rc, out, err = run_cli(capsys, "5", "--log-folder", tmp_path)
    assert rc == 2 and out == ""
    assert "no job" not in err
    assert f"squeue could not reach slurmctld at {slurm_down.ctld}" in err
    assert f"SLURM_CONF={slurm_down.conf}" in err and "Unable to contact slurm controller" in err
    assert f"sacct could not reach slurmdbd at {slurm_down.dbd}" in err and "Connection refused" in err
    assert "(3 tries over" in err  # the default policy: 3 tries
    assert err.count("Is it running?") == 1


def test_cancel_with_the_controller_down_names_scancel_and_the_tries(slurm_down, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CAMA_SLURM_TRIES", "2")
    rc, out, err = run_cli(capsys, "5", "--cancel", "--log-folder", tmp_path)
    assert rc == 2 and "cancelled" not in out
    assert err.startswith(f"hpc.status: error: scancel could not reach slurmctld at {slurm_down.ctld}")
    assert "(2 tries over" in err and "res_nsearch" not in err
    # The listing too: the registry's job cannot be looked up, and that is what it says.
    record_submission(tmp_path, Record("5", "x", "probe", "job", str(tmp_path)))
    rc, _, err = run_cli(capsys, "--log-folder", tmp_path)
    assert rc == 2 and "could not reach slurmctld" in err


def test_the_profile_sets_the_tries_and_the_environment_overrides_it(slurm_down, capsys, tmp_path, monkeypatch):
    profile = yaml.safe_load((ROOT / "configs/cluster/dev.yaml").read_text())
    profile.update(slurm_tries=1, log_folder=str(tmp_path / "logs"))
    path = tmp_path / "one-try.yaml"
    path.write_text(yaml.safe_dump(profile))
    rc, _, err = run_cli(capsys, "5", "--cancel", "--cluster", path)
    assert rc == 2 and "(1 try)" in err
    monkeypatch.setenv("CAMA_SLURM_TRIES", "4")
    rc, _, err = run_cli(capsys, "5", "--cancel", "--cluster", path)
    assert rc == 2 and "(4 tries over" in err
    monkeypatch.setenv("CAMA_SLURM_TRIES", "many")
    rc, _, err = run_cli(capsys, "5", "--cancel", "--cluster", path)
    assert rc == 2 and "$CAMA_SLURM_TRIES must be a whole number" in err


def test_no_slurm_configuration_at_all_is_named_not_a_dns_error(slurm_down, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "missing.conf"))
    rc, _, err = run_cli(capsys, "5", "--log-folder", tmp_path)
    assert rc == 2 and f"sacct: SLURM_CONF={tmp_path / 'missing.conf'} does not exist" in err
    if Path("/etc/slurm/slurm.conf").is_file():
        pytest.skip("this machine has a system-wide slurm.conf (the dev cluster links one while it is up)")
    monkeypatch.delenv("SLURM_CONF")
    rc, _, err = run_cli(capsys, "5", "--cancel", "--log-folder", tmp_path)
    assert rc == 2 and err.startswith("hpc.status: error: scancel: no Slurm configuration to find the controller by")
    assert "SLURM_CONF is unset" in err and "Point SLURM_CONF at the cluster's slurm.conf" in err


def test_retry_waits_double_and_are_bounded():
    from hpc.slurmcmd import Retry, SlurmError

    assert Retry().waits() == [1.0, 2.0] and Retry(4, 0.5).waits() == [0.5, 1.0, 2.0] and Retry(1).waits() == []
    assert Retry.of(None, {"CAMA_SLURM_TRIES": "5", "CAMA_SLURM_BACKOFF_S": "0"}) == Retry(5, 0.0)
    with pytest.raises(SlurmError, match="tries must be >= 1"):
        Retry.of(None, {"CAMA_SLURM_TRIES": "0"})


@pytest.mark.slurm
def test_a_controller_that_times_out_is_retried_except_by_sbatch(slurm_cluster, tmp_path, monkeypatch):
    """A "controller" that accepts connections and never answers (Slurm's client says "Socket timed
    out"): every try is a connection it sees. sbatch is not sent again (it may have made the job)."""
    import socket
    import threading

    from hpc import slurmcmd
    from hpc.submit import SubmitError, _sbatch
    from slurm_down import HOST

    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(16)
    seen: list[socket.socket] = []
    threading.Thread(target=lambda: [seen.append(listener.accept()[0]) for _ in iter(int, 1)], daemon=True).start()
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"ClusterName=silent\nSlurmctldHost=silent({HOST})\nSlurmctldPort={listener.getsockname()[1]}\n"
                    f"AuthType=auth/munge\nAuthInfo=socket={slurm_cluster.dir}/run/munge.sock\nMessageTimeout=1\n"
                    "NodeName=n1 NodeAddr=127.0.0.78 CPUs=1 State=UNKNOWN\nPartitionName=debug Nodes=ALL Default=YES\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    with pytest.raises(slurmcmd.ControllerUnreachable, match=r"Socket timed out on send/recv operation \(3 tries over"):
        slurmcmd.call(["sbatch", str(script)], retry=slurmcmd.Retry(3, 0.01))
    assert len(seen) == 3
    with pytest.raises(SubmitError, match=r"\(1 try\); the request may have reached it, so it was not sent again: "
                                          r"check `squeue --me`"):
        _sbatch(script, slurmcmd.Retry(3, 0.01))
    assert len(seen) == 4
    listener.close()
