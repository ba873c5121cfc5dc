"""The real local Slurm cluster (hpc.devcluster) as a pytest fixture, for every test that submits jobs.

    from slurm_fixtures import slurm_cluster   # noqa: F401  (tests/ is on sys.path)

    @pytest.mark.slurm
    def test_something(slurm_cluster):
        subprocess.run(["sbatch", "--wait", ...], check=True)   # SLURM_CONF is already set

`slurm_cluster` is session-scoped: the first test that asks for it brings the cluster up (installing
Debian's packages the first time, about 30 s; a few seconds after that), the end of the session brings
it down again. A cluster that was already up before the session is used as it is and left running.
The folder is hpc.devcluster's default (/tmp/cama-devcluster) unless CAMA_DEVCLUSTER_DIR names another.
Needs root, like `python -m hpc.devcluster up`.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Iterator, Sequence

import pytest

from hpc import devcluster


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[devcluster.DevCluster]:
    cluster = devcluster.up(nodes=3)
    saved = {k: os.environ.get(k) for k in cluster.env}
    os.environ.update(cluster.env)
    try:
        yield cluster
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if cluster.started:
            devcluster.down(cluster.dir)


def slurm(*args: str, timeout: float = 60, check: bool = True) -> str:
    """Run one of Slurm's commands (sinfo, sbatch, srun, sacct…) and return its stdout.

    A failure raises AssertionError with the command's stderr, which reads better in a test report
    than CalledProcessError.
    """
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {r.returncode}:\n{r.stderr}{r.stdout}")
    return r.stdout


def sacct_state(job_id: str | int, *, until: Sequence[str] = (), timeout: float = 20) -> str:
    """The job's state as sacct reports it (e.g. COMPLETED, FAILED); with `until`, poll until it is
    one of those (slurmctld sends job records to slurmdbd asynchronously)."""
    end = time.monotonic() + timeout
    while True:
        out = slurm("sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "State", check=False)
        state = out.split()[0].split()[0] if out.split() else ""
        if not until or state in until or time.monotonic() > end:
            return state
        time.sleep(0.3)
