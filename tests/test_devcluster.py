"""The local dev cluster is a real Slurm: nodes, batch and interactive jobs, accounting, GPUs."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpc import devcluster
from slurm_fixtures import sacct_state, slurm, slurm_cluster  # noqa: F401  (fixture)

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parent.parent


def node_states() -> dict[str, str]:
    out = slurm("sinfo", "-h", "-N", "-p", "debug", "-o", "%N %T")
    return dict(line.split() for line in out.splitlines())


def test_sinfo_shows_three_idle_nodes(slurm_cluster):
    end = time.monotonic() + 15  # nodes a previous test's job just left may still be completing
    while (states := node_states()) != {"n1": "idle", "n2": "idle", "n3": "idle"} and time.monotonic() < end:
        time.sleep(0.5)
    assert states == {"n1": "idle", "n2": "idle", "n3": "idle"}
    assert slurm_cluster.nodes == ["n1", "n2", "n3"]
    part = slurm("scontrol", "show", "partition", "debug")
    assert "Default=YES" in part and "MaxTime=UNLIMITED" in part and "Nodes=n[1-3]" in part
    assert re.search(r"^JobRequeue\s*=\s*1$", slurm("scontrol", "show", "config"), re.M)


def test_sbatch_wait_job_writes_its_output(slurm_cluster, tmp_path):
    script = tmp_path / "hello job.sh"  # a space in the path, on purpose
    script.write_text(
        "#!/bin/bash\n#SBATCH --job-name=hello\n#SBATCH --ntasks=1\n"
        'echo "hello from $SLURMD_NODENAME job $SLURM_JOB_ID partition $SLURM_JOB_PARTITION"\n'
    )
    out = tmp_path / "out %j.txt"
    job = slurm("sbatch", "--wait", "--parsable", "-o", str(out), "-D", str(tmp_path), str(script)).strip()
    text = (tmp_path / f"out {job}.txt").read_text()
    assert re.fullmatch(rf"hello from n[123] job {job} partition debug\n", text), text
    assert sacct_state(job, until=["COMPLETED"]) == "COMPLETED"


def test_srun_spans_three_nodes(slurm_cluster):
    out = slurm("srun", "-N3", "--ntasks-per-node=2", "bash", "-c",
                'echo "$SLURMD_NODENAME $SLURM_PROCID $SLURM_LOCALID"')
    rows = sorted(tuple(line.split()) for line in out.splitlines())
    assert {r[0] for r in rows} == {"n1", "n2", "n3"}
    assert sorted(int(r[1]) for r in rows) == list(range(6))
    assert sorted(r[2] for r in rows) == ["0", "0", "0", "1", "1", "1"]


def test_sacct_records_a_failed_job(slurm_cluster, tmp_path):
    job = slurm("sbatch", "--parsable", "-o", str(tmp_path / "fail.out"), "--wrap", "exit 3").strip()
    assert sacct_state(job, until=["FAILED"]) == "FAILED"
    assert slurm("sacct", "-n", "-X", "-P", "-j", job, "-o", "ExitCode").strip() == "3:0"


def test_gpu_jobs_schedule_like_on_the_v100_cluster(slurm_cluster, tmp_path):
    assert slurm_cluster.gpus_per_node == 8
    assert slurm("sinfo", "-h", "-N", "-o", "%G").split() == ["gpu:v100:8"] * 3
    # The shape of the real pretraining job: 3 nodes x 8 tasks, one GPU each.
    script = tmp_path / "gpus.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --nodes=3\n#SBATCH --ntasks-per-node=8\n#SBATCH --gpus-per-node=8\n"
        "#SBATCH --gpus-per-task=1\n#SBATCH --cpus-per-task=2\n"
        'srun bash -c \'echo "$SLURMD_NODENAME $SLURM_PROCID $CUDA_VISIBLE_DEVICES"\'\n'
    )
    out = tmp_path / "gpus.out"
    job = slurm("sbatch", "--wait", "--parsable", "-o", str(out), str(script)).strip()
    rows = [line.split() for line in out.read_text().splitlines()]
    assert sorted(int(r[1]) for r in rows) == list(range(24))
    for node in ("n1", "n2", "n3"):
        assert sorted(r[2] for r in rows if r[0] == node) == [str(i) for i in range(8)]
    assert sacct_state(job, until=["COMPLETED"]) == "COMPLETED"
    assert "gres/gpu=24" in slurm("sacct", "-n", "-X", "-P", "-j", job, "-o", "AllocTRES")
    # --gres=gpu:8 (the other spelling) on one node sees all eight.
    out = slurm("srun", "-N1", "--gres=gpu:8", "bash", "-c", "echo $CUDA_VISIBLE_DEVICES")
    assert out.strip() == "0,1,2,3,4,5,6,7"
    # More GPUs than a node has is refused at submission.
    r = subprocess.run(["sbatch", "--gres=gpu:9", "--wrap", "true"], capture_output=True, text=True)
    assert r.returncode != 0 and "Requested node configuration is not available" in r.stderr


def test_up_again_is_a_fast_noop(slurm_cluster):
    before = devcluster.status(slurm_cluster.dir).daemons
    t0 = time.monotonic()
    again = devcluster.up(nodes=3, dir=slurm_cluster.dir)
    assert time.monotonic() - t0 < 2
    assert not again.started and again.env == slurm_cluster.env
    assert devcluster.status(slurm_cluster.dir).daemons == before
    # The CLI says the same, and prints the environment to use.
    r = subprocess.run([sys.executable, "-m", "hpc.devcluster", "up", "--dir", str(slurm_cluster.dir)],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0, r.stderr
    assert f"export SLURM_CONF={slurm_cluster.conf}" in r.stdout and "already up" in r.stdout
    assert f"SLURM_CONF={slurm_cluster.conf}" in slurm_cluster.env_file.read_text()


def test_up_with_other_settings_asks_for_down_first(slurm_cluster):
    with pytest.raises(devcluster.DevClusterError, match="down"):
        devcluster.up(nodes=2, dir=slurm_cluster.dir)


def test_status_is_healthy(slurm_cluster):
    st = devcluster.status(slurm_cluster.dir)
    assert st.healthy, st.report()
    assert set(st.daemons) == {"munged", "mariadb", "slurmdbd", "slurmctld", "slurmd-n1", "slurmd-n2", "slurmd-n3"}
    assert all(st.daemons.values())
    r = subprocess.run([sys.executable, "-m", "hpc.devcluster", "status", "--dir", str(slurm_cluster.dir)],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "healthy" in r.stdout and "debug*" in r.stdout and "slurmd-n3" in r.stdout


def test_status_of_an_empty_folder_is_not_healthy(tmp_path):
    st = devcluster.status(tmp_path)
    assert not st.healthy and "no dev cluster" in st.problems[0]
    r = subprocess.run([sys.executable, "-m", "hpc.devcluster", "status", "--dir", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 1 and "NOT healthy" in r.stdout
