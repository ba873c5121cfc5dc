"""A Slurm whose controller is down: a real slurm.conf naming a controller and a slurmdbd on a
loopback address and port where nothing listens, so Slurm's own commands fail the way they do when
the controller is down ("Unable to contact slurm controller (connect failure)", "Connection refused").

    from slurm_down import slurm_down   # noqa: F401  (fixture; tests/ is on sys.path)

    def test_x(slurm_down):             # SLURM_CONF points at it; retries wait 10 ms
        ...

Needs Slurm's client commands (Debian's slurm-client), not a running cluster; skipped without them.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

HOST = "127.0.0.77"  # no daemon of the dev cluster listens there (they use 127.0.0.1 and 127.0.0.1x)


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class SlurmDown:
    conf: Path
    ctld: str     # how slurm.conf names the controller nobody answers on: nowhere(HOST):PORT
    dbd: str      # HOST:PORT of the slurmdbd nobody answers on


def write_conf(folder: Path) -> SlurmDown:
    ctld, dbd = free_port(), free_port()
    conf = folder / "slurm.conf"
    conf.write_text(
        "ClusterName=down\n"
        f"SlurmctldHost=nowhere({HOST})\nSlurmctldPort={ctld}\n"
        "AuthType=auth/munge\n"
        "MessageTimeout=1\n"  # Slurm's own connect retries last MessageTimeout (default 10 s)
        f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost={HOST}\n"
        f"AccountingStoragePort={dbd}\n"
        "NodeName=n1 NodeAddr=127.0.0.78 CPUs=1 State=UNKNOWN\n"
        "PartitionName=debug Nodes=ALL Default=YES\n", encoding="utf-8")
    return SlurmDown(conf, f"nowhere({HOST}):{ctld}", f"{HOST}:{dbd}")


@pytest.fixture
def slurm_down(tmp_path, monkeypatch) -> SlurmDown:
    if not all(shutil.which(c) for c in ("sbatch", "squeue", "sacct", "scancel", "sinfo")):
        # Only the client commands are needed, but a fresh machine has none: install them as the dev
        # cluster would (never skip — these tests are the only check of the "controller down" errors).
        from hpc import devcluster

        missing = devcluster.missing_packages(accounting=False)
        if missing:
            devcluster.install_packages(missing, tmp_path / "apt.log")
    down = write_conf(tmp_path)
    monkeypatch.setenv("SLURM_CONF", str(down.conf))
    monkeypatch.setenv("CAMA_SLURM_BACKOFF_S", "0.01")
    monkeypatch.delenv("CAMA_SLURM_TRIES", raising=False)
    return down
