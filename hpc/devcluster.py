"""A real, throw-away Slurm cluster on this one machine, for tests and for trying the suite.

    python -m hpc.devcluster up     [--nodes 3] [--dir /tmp/cama-devcluster] [--no-accounting]
    python -m hpc.devcluster status [--dir …]
    python -m hpc.devcluster down   [--dir …] [--wipe]

`up` installs Debian's Slurm 22.05 packages with apt when they are missing, writes the
configuration under `--dir`, and starts munged, MariaDB + slurmdbd (so `sacct` works), slurmctld and
one slurmd per emulated node n1…nN (`slurmd -N nX` on 127.0.0.1X: Debian builds slurmd with
MULTIPLE_SLURMD). Every daemon runs in the background with a pid file under `DIR/pids`; `down` stops
exactly those processes (never by name) and leaves the packages installed. Nodes are the debug
partition's, with 16 CPUs and 8 stand-in `gpu:v100` each (placeholder device files: Slurm 22.05 does
not accept count-only GPUs), so jobs written for the 3 × 8 V100 cluster schedule here (they see no
real device). Needs root.

The same from Python::

    from hpc import devcluster
    cluster = devcluster.up(nodes=3)        # fast no-op when it is already up and healthy
    subprocess.run(["sinfo"], env={**os.environ, **cluster.env})
    devcluster.status().healthy
    devcluster.down()

Adapted from the verified recipe in shared/reference/local-slurm (start_slurm.sh / stop_slurm.sh).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import stat
import string
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from common.atomic import atomic_path, write_text
from common.cli import Parser, run
from common.errors import UserError
from common.markers import read_marker

log = logging.getLogger("hpc.devcluster")

DEFAULT_DIR = Path(os.environ.get("CAMA_DEVCLUSTER_DIR", "/tmp/cama-devcluster"))
CLUSTER_NAME = "camadev"
PARTITION = "debug"
GPU_TYPE = "v100"
CTLD_PORT = 6817
DBD_PORT = 6819
DB_PORT = 13306
NODE_PORT_BASE = 17000
MAX_NODES = 9  # node i listens on 127.0.0.1<i>

BASE_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
ACCOUNTING_PACKAGES = ("slurmdbd", "mariadb-server")

# Package data: the configuration templates (string.Template, ${name} placeholders).
TEMPLATES = Path(__file__).resolve().with_name("devcluster")
MARK = "cama-devcluster"  # first line of every file we generate, and the /etc/hosts tag
ETC_LINK = Path("/etc/slurm/slurm.conf")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")

# daemon name -> the program its pid must still run (guards against pid reuse);
# Debian's daemons are really slurmctld-wlm / slurmd-wlm, hence a prefix match.
EXE = {"munged": "munged", "mariadb": "mariadbd", "slurmdbd": "slurmdbd", "slurmctld": "slurmctld"}
# Node states (sinfo %T) of a node that is up and takes jobs.
GOOD_STATES = {"idle", "mixed", "allocated", "completing", "planned", "reserved"}
DAEMON_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class DevClusterError(UserError, RuntimeError):
    """Something the user can act on: not root, apt failed, a daemon did not start (its log tail)."""


@dataclass(frozen=True)
class Settings:
    """What a running cluster was started with (DIR/settings.json)."""

    nodes: int = 3
    cpus: int = 16
    mem_mb: int = 6000
    gpus: int = 8
    accounting: bool = True

    def validate(self) -> None:
        if not 1 <= self.nodes <= MAX_NODES:
            raise DevClusterError(f"--nodes must be 1..{MAX_NODES} (node i listens on 127.0.0.1i), got {self.nodes}")
        if self.cpus < 1:
            raise DevClusterError(f"cpus per node must be at least 1, got {self.cpus}")
        if self.mem_mb < 100:
            raise DevClusterError(f"memory per node must be at least 100 MB, got {self.mem_mb}")
        if self.gpus < 0:
            raise DevClusterError(f"gpus per node must be 0 or more, got {self.gpus}")

    @property
    def node_names(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]

    def daemons(self) -> list[str]:
        names = ["munged"]
        if self.accounting:
            names += ["mariadb", "slurmdbd"]
        return names + ["slurmctld"] + [f"slurmd-{n}" for n in self.node_names]


@dataclass
class DevCluster:
    """A running dev cluster. `env` holds what Slurm's commands need (SLURM_CONF)."""

    dir: Path
    settings: Settings
    started: bool  # False: `up` found it already up and healthy and did nothing

    @property
    def conf(self) -> Path:
        return self.dir / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    @property
    def env_file(self) -> Path:
        return self.dir / "slurm.env"

    @property
    def nodes(self) -> list[str]:
        return self.settings.node_names

    @property
    def partition(self) -> str:
        return PARTITION

    @property
    def gpus_per_node(self) -> int:
        return self.settings.gpus


@dataclass
class Status:
    dir: Path
    settings: Settings | None
    daemons: dict[str, int | None] = field(default_factory=dict)  # name -> live pid or None
    nodes: dict[str, str] = field(default_factory=dict)  # node -> sinfo state
    sinfo: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.settings is not None and not self.problems

    def report(self) -> str:
        lines = [f"dev cluster in {self.dir}: {'healthy' if self.healthy else 'NOT healthy'}"]
        for name, pid in self.daemons.items():
            lines.append(f"  {name:<12} {'running, pid ' + str(pid) if pid else 'not running'}")
        if self.sinfo:
            lines += ["", self.sinfo.rstrip()]
        if self.problems:
            lines += [""] + [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


# ------------------------------------------------------------------------------- helpers ----


def _paths(d: Path) -> dict[str, Path]:
    return {
        "etc": d / "etc",
        "log": d / "log",
        "pids": d / "pids",
        "run": d / "run",
        "state": d / "state",
        "munge": d / "munge",
        "mysql": d / "mysql",
    }


def _render(template: str, **values: object) -> str:
    return string.Template((TEMPLATES / template).read_text()).substitute({k: str(v) for k, v in values.items()})


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"    ({path}: no such file)"
    return "\n".join(f"    {line}" for line in text[-lines:]) or f"    ({path} is empty)"


def _daemon_logs(d: Path, name: str) -> list[Path]:
    own = {
        "munged": "munged.log",
        "mariadb": "mariadb.err",
        "slurmdbd": "slurmdbd.log",
        "slurmctld": "slurmctld.log",
    }.get(name, f"{name}.log")  # slurmd-nX.log
    return [d / "log" / own, d / "log" / f"{name}.stdout"]


def _log_tails(d: Path, name: str) -> str:
    own, stdout = _daemon_logs(d, name)
    parts = [f"  {own}:\n{_tail(own)}"]
    try:  # Slurm's daemons in the foreground print their log to stdout too: show it only if it adds
        last = stdout.read_text(errors="replace").strip().splitlines()[-1].split(": ", 1)[-1]
        if last not in own.read_text(errors="replace"):
            parts.append(f"  {stdout}:\n{_tail(stdout)}")
    except (OSError, IndexError):
        pass
    return "\n".join(parts)


def _pid_alive(pid: int, exe: str) -> bool:
    """pid is a live (not zombie) process running `exe` (prefix match: slurmd -> slurmd-wlm)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        real = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return False
    state = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("State:")), "?")
    return state not in ("Z", "X") and real.startswith(exe)


def _exe_of(name: str) -> str:
    return "slurmd" if name.startswith("slurmd-") else EXE[name]


def _running_pid(d: Path, name: str) -> int | None:
    f = d / "pids" / f"{name}.pid"
    try:
        pid = int(f.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid, _exe_of(name)) else None


# Daemons started by this process: kept so that their Popen objects are not collected while they run.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _reap(pid: int) -> None:
    """Collect an exited daemon if it is our own child (started by up() in this process)."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is not None:
            del _CHILDREN[pid]
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _slurm_env(d: Path) -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(d / "etc" / "slurm.conf")}


def _daemon_env(d: Path) -> dict[str, str]:
    # A clean environment: nothing from the caller (a venv, pytest's variables) leaks into daemons.
    return {"PATH": DAEMON_PATH, "LANG": "C.UTF-8", "HOME": "/root", "SLURM_CONF": str(d / "etc" / "slurm.conf")}


def _run(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 15, input: str | None = None):
    return subprocess.run(
        list(cmd), env=env, capture_output=True, text=True, timeout=timeout, input=input, check=False
    )


def _ok(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 10, input: str | None = None) -> bool:
    try:
        return _run(cmd, env, timeout, input).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def load_settings(d: Path) -> Settings | None:
    values = read_marker(d / "settings.json")
    try:
        return Settings(**values) if values is not None else None
    except TypeError:  # written by another version of this module
        return None


# ------------------------------------------------------------------------------ install -----


def missing_packages(accounting: bool = True) -> list[str]:
    pkgs = BASE_PACKAGES + (ACCOUNTING_PACKAGES if accounting else ())
    missing = []
    for p in pkgs:
        r = _run(["dpkg-query", "-W", "-f=${Status}", p])
        if r.returncode != 0 or "install ok installed" not in r.stdout:
            missing.append(p)
    return missing


def install_packages(packages: Sequence[str], logfile: Path) -> None:
    """apt-get install, without letting maintainer scripts start system-wide daemons."""
    if not shutil.which("apt-get"):
        raise DevClusterError(f"missing packages {' '.join(packages)} and no apt-get: install them by hand")
    log.info("installing %s (log: %s)", " ".join(packages), logfile)
    added_policy = False
    if not POLICY_RC_D.exists():
        POLICY_RC_D.write_text("#!/bin/sh\n# cama-devcluster: keep apt from starting daemons\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
        added_policy = True
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
               "-o", "DPkg::Lock::Timeout=300", *packages]  # wait for another apt rather than fail
    try:
        with logfile.open("a") as out:
            ok = subprocess.run(install, env=env, stdout=out, stderr=subprocess.STDOUT).returncode == 0
            if not ok:  # stale package lists: refresh once and retry
                subprocess.run(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"],
                               env=env, stdout=out, stderr=subprocess.STDOUT)
                ok = subprocess.run(install, env=env, stdout=out, stderr=subprocess.STDOUT).returncode == 0
    finally:
        if added_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    if not ok:
        raise DevClusterError(
            f"apt-get install {' '.join(packages)} failed; install them by hand or fix apt. "
            f"Last lines of {logfile}:\n{_tail(logfile)}"
        )


# ------------------------------------------------------------------------------ daemons -----


def _start_daemon(d: Path, name: str, cmd: Sequence[str]) -> int:
    pid = _running_pid(d, name)
    if pid:
        log.info("%s already running (pid %d)", name, pid)
        return pid
    exe = shutil.which(cmd[0], path=DAEMON_PATH)
    if exe is None:
        raise DevClusterError(f"{cmd[0]} not found in {DAEMON_PATH}: is its package installed?")
    with (d / "log" / f"{name}.stdout").open("ab") as out:
        proc = subprocess.Popen(
            [exe, *cmd[1:]], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=_daemon_env(d), cwd=str(d), start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    write_text(d / "pids" / f"{name}.pid", f"{proc.pid}\n")  # `down` must never read half a pid
    log.info("started %s (pid %d)", name, proc.pid)
    return proc.pid


def _wait_for(d: Path, what: str, check: Callable[[], bool], timeout: float, daemons: Sequence[str],
              every: Callable[[], None] | None = None) -> None:
    """Poll `check` until true; fail at once (with its log) if one of `daemons` dies meanwhile."""
    end = time.monotonic() + timeout
    while True:
        if check():
            return
        for name in daemons:
            if _running_pid(d, name) is None:
                raise DevClusterError(f"{name} did not start (it exited). Its logs:\n{_log_tails(d, name)}")
        if time.monotonic() > end:
            logs = "\n".join(_log_tails(d, n) for n in daemons)
            raise DevClusterError(f"timed out after {timeout:.0f}s waiting for {what}. Logs:\n{logs}")
        if every:
            every()
        time.sleep(0.3)


def _node_states(d: Path) -> dict[str, str]:
    try:
        r = _run(["sinfo", "-h", "-N", "-o", "%N|%T"], _slurm_env(d), timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if r.returncode != 0:
        return {}
    states = {}
    for line in r.stdout.split():
        node, _, state = line.partition("|")
        states[node] = state
    return states


def _node_ok(state: str) -> bool:
    # "idle*" = not responding, "drained"/"down": not taking jobs; "+" flags (e.g. idle+drain) too.
    return state in GOOD_STATES


def _scheduler_has_run(d: Path) -> bool:
    """sdiag counts at least one main scheduling cycle."""
    try:
        out = _run(["sdiag"], _slurm_env(d), timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return True  # cannot tell: do not hold `up` back for it
    main = out.partition("Main schedule statistics")[2]
    for line in main.splitlines():
        if line.strip().startswith("Total cycles:"):
            return int(line.split(":")[1]) > 0
    return True


def _ctld_up(d: Path) -> bool:
    try:
        r = _run(["scontrol", "ping"], _slurm_env(d), timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "is UP" in r.stdout


# ------------------------------------------------------------------------------- status -----


def status(dir: str | Path = DEFAULT_DIR) -> Status:
    """Which daemons run, what sinfo says; `.healthy` only when everything is up and nodes take jobs."""
    d = Path(dir)
    settings = load_settings(d)
    st = Status(dir=d, settings=settings)
    if settings is None:
        st.problems.append(f"no dev cluster in {d} (run: python -m hpc.devcluster up --dir {d})")
        return st
    for name in settings.daemons():
        st.daemons[name] = _running_pid(d, name)
        if st.daemons[name] is None:
            st.problems.append(f"{name} is not running")
    if st.daemons.get("slurmctld") and _ctld_up(d):
        try:
            st.sinfo = _run(["sinfo"], _slurm_env(d)).stdout
        except (OSError, subprocess.TimeoutExpired):
            pass
        st.nodes = _node_states(d)
        for node in settings.node_names:
            state = st.nodes.get(node)
            if state is None:
                st.problems.append(f"node {node} is not in sinfo")
            elif not _node_ok(state):
                st.problems.append(f"node {node} is {state}")
    elif st.daemons.get("slurmctld"):
        st.problems.append("slurmctld runs but does not answer `scontrol ping`")
    return st


# ----------------------------------------------------------------------------------- up -----


def _configs(d: Path, s: Settings, db_password: str) -> dict[Path, tuple[str, int]]:
    """The files `up` writes for these settings: path -> (text, mode)."""
    host = socket.gethostname().split(".")[0]
    munge_socket = d / "run" / "munge.sock"
    nodes = []
    for i, n in enumerate(s.node_names, start=1):
        gres = f" Gres=gpu:{GPU_TYPE}:{s.gpus}" if s.gpus else ""
        nodes.append(
            f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1{i} Port={NODE_PORT_BASE + i} "
            f"CPUs={s.cpus} RealMemory={s.mem_mb}{gres} State=UNKNOWN"
        )
    if s.accounting:
        accounting = "\n".join([
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=localhost",
            f"AccountingStoragePort={DBD_PORT}",
            "# slurmctld takes the munge socket for slurmdbd connections from AccountingStoragePass",
            f"AccountingStoragePass={munge_socket}",
            "AccountingStorageTRES=gres/gpu",  # sacct's AllocTRES shows the GPUs a job got
            "JobAcctGatherType=jobacct_gather/linux",
            "JobAcctGatherFrequency=30",
        ])
    else:
        accounting = "AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none"
    etc = d / "etc"
    files = {
        etc / "slurm.conf": (_render(
            "slurm.conf.in", dir=d, cluster=CLUSTER_NAME, host=host, munge_socket=munge_socket,
            ctld_port=CTLD_PORT, first_node_port=NODE_PORT_BASE + 1, accounting=accounting,
            gres_types="GresTypes=gpu" if s.gpus else "", node_lines="\n".join(nodes), partition=PARTITION,
        ), 0o644),
    }
    gres_lines = []
    if s.gpus:
        dev = _gpu_device_expr(d, s.gpus)
        gres_lines = [f"NodeName={n} Name=gpu Type={GPU_TYPE} File={dev}" for n in s.node_names]
    files[etc / "gres.conf"] = (_render("gres.conf.in", gres_lines="\n".join(gres_lines)), 0o644)
    if s.accounting:
        # slurmdbd insists on 0600 (it holds the database password); it is found next to SLURM_CONF.
        files[etc / "slurmdbd.conf"] = (_render(
            "slurmdbd.conf.in", dir=d, munge_socket=munge_socket, dbd_port=DBD_PORT, db_port=DB_PORT,
            db_password=db_password,
        ), 0o600)
    files[d / "slurm.env"] = (f"# {MARK}: source this file\nexport SLURM_CONF={etc / 'slurm.conf'}\n", 0o644)
    files[d / "settings.json"] = (json.dumps(asdict(s), indent=1) + "\n", 0o644)
    return files


def _write_configs(d: Path, s: Settings, db_password: str) -> None:
    if s.gpus:
        _make_gpu_devices(d, s.gpus)
    for path, (text, mode) in _configs(d, s, db_password).items():
        with atomic_path(path) as tmp:
            tmp.touch(mode=0o600)  # the password files are never readable by others, not even briefly
            tmp.chmod(mode)
            tmp.write_text(text)


def _configs_current(d: Path, s: Settings) -> bool:
    """The files on disk are what this version of the code writes for `s` (else: restart needed)."""
    try:
        pw = (d / "etc" / "db.secret").read_text().strip()
        return all(path.read_text() == text for path, (text, _) in _configs(d, s, pw).items())
    except OSError:
        return False


def _gpu_device_expr(d: Path, count: int) -> str:
    """gres.conf's File= for `count` placeholder GPUs DIR/dev/nvidia0…"""
    dev = d / "dev"
    return str(dev / "nvidia0") if count == 1 else f"{dev}/nvidia[0-{count - 1}]"


def _make_gpu_devices(d: Path, count: int) -> None:
    """Placeholder GPU device files DIR/dev/nvidia0…

    Slurm 22.05 drops GPUs declared without File= (count-only), so every node would come up INVAL.
    It wants character or block devices: we make ones with /dev/null's major/minor (harmless if a
    job opens one). Where mknod is not allowed, empty regular files still work (slurmd logs an error).
    """
    dev = d / "dev"
    dev.mkdir(exist_ok=True)
    null = os.stat("/dev/null").st_rdev
    for i in range(count):
        f = dev / f"nvidia{i}"
        if f.is_char_device():
            continue
        f.unlink(missing_ok=True)
        try:
            os.mknod(f, 0o666 | stat.S_IFCHR, null)
        except OSError:
            f.touch()


def _link_etc(d: Path) -> None:
    """/etc/slurm/slurm.conf -> ours, so Slurm's commands work in any shell (if that path is free)."""
    conf = d / "etc" / "slurm.conf"
    try:
        ETC_LINK.parent.mkdir(parents=True, exist_ok=True)
        if ETC_LINK.is_symlink() or not ETC_LINK.exists():
            if ETC_LINK.is_symlink() and not _is_ours(ETC_LINK):
                log.info("%s is a link to something else; leaving it (use SLURM_CONF)", ETC_LINK)
                return
            tmp = ETC_LINK.with_name(".slurm.conf.cama-devcluster")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(conf)
            tmp.replace(ETC_LINK)
        else:
            log.info("%s exists and is not ours; leaving it (use SLURM_CONF)", ETC_LINK)
    except OSError as e:
        log.info("could not link %s (%s); use SLURM_CONF", ETC_LINK, e)


def _is_ours(link: Path) -> bool:
    target = Path(os.readlink(link))
    if target.name != "slurm.conf":
        return False
    try:
        return MARK in target.read_text().splitlines()[0]
    except (OSError, IndexError):
        return not target.exists()  # dangling: a dev cluster dir that was wiped


def _hosts_entries(s: Settings) -> None:
    """n1… resolve (to their own loopback address): MASTER_ADDR is the first host of the node list."""
    hosts = Path("/etc/hosts")
    try:
        lines = hosts.read_text().splitlines()
        known = {tuple(ln.split("#")[0].split()[:2]) for ln in lines}
        new = [f"127.0.0.1{i} {n} # {MARK}" for i, n in enumerate(s.node_names, 1)
               if (f"127.0.0.1{i}", n) not in known]
        if new:
            with hosts.open("a") as f:
                f.write("".join(line + "\n" for line in new))
    except OSError as e:
        log.info("could not add the nodes to /etc/hosts (%s): node names will not resolve", e)


def _start_accounting(d: Path) -> None:
    p = _paths(d)
    db_sock = p["run"] / "mysql.sock"
    if not (p["mysql"] / "mysql").is_dir():
        logf = p["log"] / "mariadb-install.log"
        with logf.open("a") as out:
            rc = subprocess.run(
                ["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={p['mysql']}",
                 "--auth-root-authentication-method=socket", "--skip-test-db"],
                stdout=out, stderr=subprocess.STDOUT, env=_daemon_env(d),
            ).returncode
        if rc != 0:
            raise DevClusterError(f"mariadb-install-db failed. Last lines of {logf}:\n{_tail(logf)}")
    _start_daemon(d, "mariadb", [
        "mariadbd", "--no-defaults", "--user=root", f"--datadir={p['mysql']}", f"--socket={db_sock}",
        f"--pid-file={p['run'] / 'mariadb.pid'}", "--bind-address=127.0.0.1", f"--port={DB_PORT}",
        "--innodb-buffer-pool-size=128M", "--innodb-log-file-size=64M", "--innodb-lock-wait-timeout=900",
        "--innodb-use-native-aio=0", f"--log-error={p['log'] / 'mariadb.err'}",
    ])
    _wait_for(d, "MariaDB", lambda: _ok(["mariadb-admin", "--no-defaults", f"--socket={db_sock}", "ping"]),
              60, ["mariadb"])
    pw = (p["etc"] / "db.secret").read_text().strip()
    sql = string.Template((TEMPLATES / "mariadb-init.sql.in").read_text()).substitute(db_password=pw)
    r = _run(["mariadb", "--no-defaults", f"--socket={db_sock}", "-u", "root"], input=sql, timeout=30)
    if r.returncode != 0:
        raise DevClusterError(f"could not create the slurm database user: {r.stderr.strip()}")
    _start_daemon(d, "slurmdbd", ["slurmdbd", "-D"])
    env = _slurm_env(d)
    _wait_for(d, "slurmdbd", lambda: _ok(["sacctmgr", "-n", "list", "cluster"], env), 60, ["slurmdbd"])
    r = _run(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"], env)
    if CLUSTER_NAME not in r.stdout.split():
        r = _run(["sacctmgr", "-i", "add", "cluster", CLUSTER_NAME], env, timeout=30)
        if r.returncode != 0:
            raise DevClusterError(f"sacctmgr add cluster {CLUSTER_NAME} failed: {(r.stdout + r.stderr).strip()}")


def up(
    nodes: int = 3,
    dir: str | Path = DEFAULT_DIR,
    accounting: bool = True,
    *,
    cpus: int = 16,
    mem_mb: int = 6000,
    gpus: int = 8,
    install: bool = True,
    timeout: float = 90,
) -> DevCluster:
    """Start the dev cluster (installing packages if needed) and wait until every node is idle.

    Returns at once, with `started=False`, when it is already up and healthy with these settings.
    """
    d = Path(dir).absolute()
    s = Settings(nodes=nodes, cpus=cpus, mem_mb=mem_mb, gpus=gpus, accounting=accounting)
    s.validate()
    if any(c.isspace() or c in "#'\"\\$=,;" for c in str(d)):
        raise DevClusterError(f"--dir {str(d)!r}: Slurm's config files cannot hold this path; "
                              "use one without spaces or any of # ' \" \\ $ = , ;")
    if os.geteuid() != 0:
        raise DevClusterError("the dev cluster must be started as root (it installs Debian packages and "
                              "runs Slurm's daemons as root): use sudo")
    old = load_settings(d)
    if old is not None:
        running = [n for n in old.daemons() if _running_pid(d, n)]
        if running and old != s:
            raise DevClusterError(
                f"a dev cluster with other settings ({asdict(old)}) is running in {d}: "
                f"stop it first with `python -m hpc.devcluster down --dir {d}`"
            )
        if running and not _configs_current(d, s):
            raise DevClusterError(
                f"the dev cluster running in {d} was configured by an older version of hpc.devcluster: "
                f"restart it with `python -m hpc.devcluster down --dir {d}` and `up` again"
            )
        if len(running) == len(s.daemons()) and status(d).healthy:
            log.info("dev cluster in %s is already up", d)
            return DevCluster(dir=d, settings=s, started=False)

    t0 = time.monotonic()
    p = _paths(d)
    d.mkdir(mode=0o755, parents=True, exist_ok=True)
    d.chmod(d.stat().st_mode | 0o111)  # munge clients must reach run/munge.sock
    for key in ("etc", "log", "pids", "run", "state"):
        p[key].mkdir(exist_ok=True)
    (p["state"] / "ctld").mkdir(exist_ok=True)
    for n in s.node_names:
        (p["state"] / f"slurmd-{n}").mkdir(exist_ok=True)
    p["run"].chmod(0o755)  # munged wants o+x on its socket's directory
    p["munge"].mkdir(mode=0o700, exist_ok=True)

    missing = missing_packages(accounting)
    if missing:
        if not install:
            raise DevClusterError(f"missing Debian packages: {' '.join(missing)} (apt-get install them)")
        install_packages(missing, p["log"] / "apt.log")
        log.info("packages installed in %.1fs", time.monotonic() - t0)

    # munge
    key = p["munge"] / "munge.key"
    if not key.exists() or key.stat().st_size == 0:
        r = _run(["mungekey", "-c", "-b", "1024", "-k", str(key)])
        if r.returncode != 0:
            raise DevClusterError(f"mungekey failed: {r.stderr.strip()}")
    key.chmod(0o600)
    sock = p["run"] / "munge.sock"
    _start_daemon(d, "munged", [
        "munged", "-F", f"--socket={sock}", f"--key-file={key}", f"--pid-file={p['run'] / 'munged.pid'}",
        f"--log-file={p['log'] / 'munged.log'}", f"--seed-file={p['munge'] / 'munged.seed'}",
    ])

    def munge_works() -> bool:
        try:
            cred = _run(["munge", "-S", str(sock), "-n"], timeout=5)
            return cred.returncode == 0 and _ok(["unmunge", "-S", str(sock)], input=cred.stdout, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return False

    _wait_for(d, "munged", munge_works, 20, ["munged"])

    # configuration
    secret = p["etc"] / "db.secret"
    if not secret.exists():
        with atomic_path(secret) as tmp:
            tmp.touch(mode=0o600)
            tmp.write_text(secrets.token_hex(16) + "\n")
    _write_configs(d, s, secret.read_text().strip())
    _link_etc(d)
    _hosts_entries(s)

    if accounting:
        _start_accounting(d)
        log.info("accounting up at %.1fs", time.monotonic() - t0)

    conf = str(p["etc"] / "slurm.conf")
    _start_daemon(d, "slurmctld", ["slurmctld", "-D", "-f", conf])
    _wait_for(d, "slurmctld", lambda: _ctld_up(d), 60, ["slurmctld"])
    for n in s.node_names:
        _start_daemon(d, f"slurmd-{n}", ["slurmd", "-D", "-f", conf, "-N", n])

    env = _slurm_env(d)

    def all_up() -> bool:
        states = _node_states(d)
        return all(_node_ok(states.get(n, "")) for n in s.node_names)

    def resume_stuck() -> None:  # nodes left down/drained by an earlier run
        states = _node_states(d)
        for n in s.node_names:
            st = states.get(n, "")
            if st.startswith(("down", "drain", "fail", "inval")) and not st.endswith("*") and _running_pid(d, f"slurmd-{n}"):
                _ok(["scontrol", "update", f"nodename={n}", "state=resume"], env)

    _wait_for(d, f"nodes {','.join(s.node_names)} to be idle", all_up, timeout,
              ["slurmctld"] + [f"slurmd-{n}" for n in s.node_names], every=resume_stuck)
    # slurmctld's first scheduling pass comes a few seconds after it starts; a batch job submitted
    # before it waits for it, and `sbatch --wait` then polls again only 8 s later.
    end = time.monotonic() + 15
    while not _scheduler_has_run(d) and time.monotonic() < end:
        time.sleep(0.2)
    log.info("dev cluster up in %.1fs: %d nodes in partition %s", time.monotonic() - t0, s.nodes, PARTITION)
    return DevCluster(dir=d, settings=s, started=True)


# --------------------------------------------------------------------------------- down -----


def _stop(d: Path, name: str) -> bool:
    f = d / "pids" / f"{name}.pid"
    try:
        pid = int(f.read_text().strip())
    except (OSError, ValueError):
        f.unlink(missing_ok=True)
        return False
    if not _pid_alive(pid, _exe_of(name)):
        _reap(pid)
        f.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 10
    while _pid_alive(pid, _exe_of(name)) and time.monotonic() < end:
        _reap(pid)
        time.sleep(0.05)
    if _pid_alive(pid, _exe_of(name)):
        log.info("%s (pid %d) ignored SIGTERM; sending SIGKILL", name, pid)
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    _reap(pid)
    f.unlink(missing_ok=True)
    log.info("stopped %s (pid %d)", name, pid)
    return True


def down(dir: str | Path = DEFAULT_DIR, *, cancel_jobs: bool = True, wipe: bool = False) -> list[str]:
    """Stop the daemons whose pid files `up` wrote (jobs are cancelled first). Returns their names."""
    d = Path(dir).absolute()
    if not (d / "pids").is_dir():
        return []
    env = _slurm_env(d)
    if cancel_jobs and _running_pid(d, "slurmctld") and _ctld_up(d):
        try:
            jobs = _run(["squeue", "-h", "-o", "%i"], env).stdout.split()
            if jobs:
                log.info("cancelling %d job(s)", len(set(jobs)))
                _run(["scancel", "--full", *sorted(set(jobs))], env)
                end = time.monotonic() + 30
                while time.monotonic() < end and _run(["squeue", "-h", "-t", "R,CG", "-o", "%i"], env).stdout.strip():
                    time.sleep(0.3)
        except (OSError, subprocess.TimeoutExpired):
            pass
    stopped = []
    slurmds = sorted(f.stem for f in (d / "pids").glob("slurmd-*.pid"))
    for name in [*slurmds, "slurmctld", "slurmdbd", "mariadb", "munged"]:
        if _stop(d, name):
            stopped.append(name)
    if ETC_LINK.is_symlink() and Path(os.readlink(ETC_LINK)) == d / "etc" / "slurm.conf":
        ETC_LINK.unlink(missing_ok=True)
    if wipe:
        for sub in ("state", "mysql", "log", "run", "pids", "etc", "munge", "dev"):
            shutil.rmtree(d / sub, ignore_errors=True)
        for f in ("settings.json", "slurm.env"):
            (d / f).unlink(missing_ok=True)
    return stopped


# ---------------------------------------------------------------------------------- CLI -----


def build_parser() -> Parser:
    ap = Parser(prog="python -m hpc.devcluster", description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, parser_class=Parser)
    shared = Parser(add_help=False)
    shared.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"state/config/log folder (default {DEFAULT_DIR})")
    p_up = sub.add_parser("up", parents=[shared], help="install if needed, start, wait until nodes are idle")
    p_up.add_argument("--nodes", type=int, default=3, help="emulated nodes n1..nN (1-9, default 3)")
    p_up.add_argument("--no-accounting", action="store_true", help="no MariaDB/slurmdbd (sacct will not work)")
    p_up.add_argument("--cpus", type=int, default=16, help="CPUs declared per node (default 16)")
    p_up.add_argument("--mem-mb", type=int, default=6000, help="memory declared per node in MB (default 6000)")
    p_up.add_argument("--gpus", type=int, default=8, help=f"stand-in gpu:{GPU_TYPE} per node (default 8, 0: none)")
    p_up.add_argument("--no-install", action="store_true", help="fail instead of running apt-get")
    p_down = sub.add_parser("down", parents=[shared], help="stop the daemons `up` started (by pid file)")
    p_down.add_argument("--wipe", action="store_true", help="also delete state, logs and the accounting DB")
    sub.add_parser("status", parents=[shared], help="daemons and sinfo; exit 0 only if healthy")
    return ap


def _up(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        c = up(args.nodes, args.dir, not args.no_accounting, cpus=args.cpus, mem_mb=args.mem_mb,
               gpus=args.gpus, install=not args.no_install)
    except DevClusterError as e:
        if (args.dir / "pids").is_dir():
            raise DevClusterError(f"{e}\n(daemons that did start keep running; stop them with "
                                  f"`python -m hpc.devcluster down --dir {args.dir}`)") from None
        raise
    print(f"# dev cluster {'started' if c.started else 'already up'} in {time.monotonic() - t0:.1f}s: "
          f"nodes {','.join(c.nodes)}, partition {PARTITION}"
          + (f", {c.gpus_per_node} x gpu:{GPU_TYPE} per node" if c.gpus_per_node else ""))
    print(f"# use it: source {c.env_file}")
    for k, v in c.env.items():
        print(f"export {k}={v}")
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = down(args.dir, wipe=args.wipe)
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running in {args.dir}")
    return 0


def _status(args: argparse.Namespace) -> int:
    st = status(args.dir)
    print(st.report())
    return 0 if st.healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[devcluster %(asctime)s] %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    command = {"up": _up, "down": _down, "status": _status}[args.command]
    return run("hpc.devcluster", lambda: command(args))


if __name__ == "__main__":
    sys.exit(main())
