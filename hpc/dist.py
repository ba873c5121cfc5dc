"""Slurm's environment → torch.distributed's: the one place in the suite that does this.

Every task of a distributed step is started by ``srun`` (one task per GPU), and each derives its own
rendezvous variables from what Slurm gave it:

    MASTER_ADDR        first host of the step's node list (rank 0 always runs there)
    MASTER_PORT        derived from the job id (and step id), unless already set
    RANK, WORLD_SIZE   SLURM_PROCID, SLURM_STEP_NUM_TASKS / SLURM_NTASKS
    LOCAL_RANK         SLURM_LOCALID
    LOCAL_WORLD_SIZE   this node's entry of SLURM_STEP_TASKS_PER_NODE / SLURM_TASKS_PER_NODE ("2(x3)", "8,8,4")
    NODE_RANK          SLURM_NODEID (relative to the step)

No ssh, pdsh or hostfile is involved (CaMA's DeepSpeed launcher needed passwordless ssh between
nodes): srun starts every worker, and ``torch.distributed.init_process_group("nccl")`` meets at
MASTER_ADDR:MASTER_PORT through the env:// rendezvous.

Three ways to use it:

    srun python -m hpc.dist exec -- python -m train.pretrain --config job.yaml   # in sbatch scripts
    srun python -m hpc.dist                                                     # print what each task derives
    hpc.dist.setup()                                                            # from Python, inside a task

``exec`` replaces itself with the command (``os.execvp``), so Slurm's signals (``--signal=USR2@120``,
``scancel --signal``) reach the worker itself. Do not put torchrun between srun and the workers:
torchrun's agent does not forward SIGUSR1/SIGUSR2, so the preemption checkpoint (hpc.preempt) would
never run, and it would start a second layer of processes per node that Slurm already started.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import socket
import sys
from dataclasses import asdict, dataclass
from typing import Mapping, MutableMapping, Sequence

from common.cli import Parser, run
from common.errors import UserError

# MASTER_PORT = PORT_BASE + (job_id % PORT_SLOTS) * STEP_SLOTS + (step_id % STEP_SLOTS): 18000–27999.
# Below Linux's ephemeral range (32768+, where outgoing connections get their ports) and clear of the
# dev cluster's daemons (slurmctld 6817, slurmdbd 6819, MariaDB 13306, slurmd 17001–17009). Consecutive
# jobs land 16 ports apart, and up to 16 concurrent steps of one job get distinct ports.
PORT_BASE = 18000
STEP_SLOTS = 16
PORT_SLOTS = 625
PORT_RANGE = range(PORT_BASE, PORT_BASE + PORT_SLOTS * STEP_SLOTS)

# Slurm's special step ids (batch script, extern container, …) are 0xFFFFFFF0 and above: not an srun step.
_FIRST_SPECIAL_STEP_ID = 0xFFFFFFF0

# The user's way to pin the network interface NCCL and Gloo use (see nccl_env).
SOCKET_IFNAME_VAR = "CAMA_SOCKET_IFNAME"


class DistEnvError(UserError, RuntimeError):
    """The Slurm environment cannot be turned into torch.distributed's; the message says what to fix."""


class MissingSlurmVariable(DistEnvError):
    """A variable srun sets is missing: the caller is not a task of an srun step."""

    def __init__(self, name: str, hint: str = "") -> None:
        self.name = name
        super().__init__(
            f"{name} is not set: hpc.dist must run inside an srun step, as one of its tasks "
            f"(e.g. `srun python -m hpc.dist exec -- python -m train.pretrain --config JOB.yaml`), "
            f"not in the batch script itself or on a login node.{(' ' + hint) if hint else ''}"
        )


class PortInUseError(DistEnvError):
    """MASTER_PORT is taken on rank 0's node."""


# ---------------------------------------------------------------------------------------------
# Slurm's compact notations


_BRACKET = re.compile(r"\[([^\[\]]*)\]")


def expand_hostlist(hostlist: str) -> list[str]:
    """Expand Slurm's hostlist syntax, in order: ``n[1-3]`` → n1 n2 n3, ``gpu[01-04,07]`` keeps the
    zero padding (gpu01…gpu04 gpu07), ``a1,b[2-3]`` → a1 b2 b3, ``r[1-2]-n[1-2]`` → the product.

    Same semantics as ``scontrol show hostnames``, without calling it (it is not on every compute node's
    PATH and would cost a round trip to slurmctld per task)."""
    if not hostlist or not hostlist.strip():
        raise DistEnvError("empty host list: expected Slurm's notation, e.g. 'n[1-3]' or 'a1,b[2-3]'")
    hosts: list[str] = []
    for part in _split_top_level(hostlist.strip(), hostlist):
        hosts.extend(_expand_one(part, hostlist))
    return hosts


def _split_top_level(text: str, whole: str) -> list[str]:
    """Split at commas outside brackets (commas inside brackets separate ranges)."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "[":
            depth += 1
            if depth > 1:
                raise DistEnvError(f"nested '[' in host list {whole!r}")
        elif c == "]":
            depth -= 1
            if depth < 0:
                raise DistEnvError(f"unbalanced ']' in host list {whole!r}")
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise DistEnvError(f"unbalanced '[' in host list {whole!r}")
    parts.append(text[start:])
    for p in parts:
        if not p.strip():
            raise DistEnvError(f"empty host name in host list {whole!r}")
    return [p.strip() for p in parts]


def _expand_one(pattern: str, whole: str) -> list[str]:
    m = _BRACKET.search(pattern)
    if m is None:
        if "[" in pattern or "]" in pattern or any(c.isspace() for c in pattern):
            raise DistEnvError(f"bad host name {pattern!r} in host list {whole!r}")
        return [pattern]
    head, tail = pattern[: m.start()], pattern[m.end():]
    if "[" in head or "]" in head:
        raise DistEnvError(f"bad host name {pattern!r} in host list {whole!r}")
    rests = _expand_one(tail, whole) if tail else [""]
    return [head + item + rest for item in _expand_ranges(m.group(1), whole) for rest in rests]


def _expand_ranges(body: str, whole: str) -> list[str]:
    """'01-04,07' → 01 02 03 04 07. The width of a range's lower bound is kept (Slurm's rule)."""
    out: list[str] = []
    for item in body.split(","):
        item = item.strip()
        lo, sep, hi = item.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise DistEnvError(f"bad range {item!r} in host list {whole!r}: expected N or N-M with digits")
        if not sep:
            out.append(lo)
            continue
        a, b = int(lo), int(hi)
        if b < a:
            raise DistEnvError(f"descending range {item!r} in host list {whole!r}")
        out.extend(f"{n:0{len(lo)}d}" for n in range(a, b + 1))
    return out


_TASKS_ITEM = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")


def expand_tasks_per_node(spec: str) -> list[int]:
    """Slurm's tasks-per-node notation → one count per node: ``2(x3)`` → [2, 2, 2], ``8,8,4`` → [8, 8, 4],
    ``2(x2),1`` → [2, 2, 1]."""
    counts: list[int] = []
    for item in spec.split(","):
        m = _TASKS_ITEM.match(item.strip())
        if m is None:
            raise DistEnvError(f"bad tasks-per-node value {spec!r}: expected e.g. '8', '2(x3)' or '8,8,4'")
        counts.extend([int(m.group(1))] * int(m.group(2) or 1))
    return counts


# ---------------------------------------------------------------------------------------------
# The derivation (pure)


@dataclass(frozen=True)
class DistEnv:
    """What one task of a distributed step is: its ranks, the world, and where the rendezvous is."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    num_nodes: int
    master_addr: str
    master_port: int
    job_id: str
    step_id: int
    hosts: tuple[str, ...]

    @property
    def is_rank0(self) -> bool:
        return self.rank == 0

    def as_environ(self) -> dict[str, str]:
        """The variables torch.distributed's env:// rendezvous (and DeepSpeed, HF Trainer) read."""
        return {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "NODE_RANK": str(self.node_rank),
            "GROUP_RANK": str(self.node_rank),  # torchrun's name for NODE_RANK; some libraries read it
        }

    def summary(self) -> str:
        return (f"rank {self.rank}/{self.world_size} local {self.local_rank}/{self.local_world_size} "
                f"node {self.node_rank}/{self.num_nodes} master {self.master_addr}:{self.master_port} "
                f"job {self.job_id} step {self.step_id}")


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name)
        if value not in (None, ""):
            return name, value
    return None


def _require(environ: Mapping[str, str], *names: str) -> tuple[str, str]:
    found = _first(environ, *names)
    if found is None:
        raise MissingSlurmVariable(names[0], f"(Looked for {' and '.join(names[1:])} too.)" if len(names) > 1 else "")
    return found


def _int(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise DistEnvError(f"{name}={value!r} is not an integer") from None
    if n < 0:
        raise DistEnvError(f"{name}={value!r} is negative")
    return n


def derive_port(job_id: str, step_id: int = 0) -> int:
    """MASTER_PORT for a job's step: deterministic, so every task computes the same one without talking
    to the others, in PORT_RANGE (18000–27999)."""
    digits = re.match(r"\d+", job_id)
    if digits is None:
        raise DistEnvError(f"SLURM_JOB_ID={job_id!r} is not a job number")
    return PORT_BASE + (int(digits.group()) % PORT_SLOTS) * STEP_SLOTS + step_id % STEP_SLOTS


def dist_env(environ: Mapping[str, str]) -> DistEnv:
    """Derive this task's DistEnv from Slurm's variables (pure; raises DistEnvError).

    Step variables win over job variables: a step may use part of the allocation (``srun -N2 -r1`` in
    a 3-node job runs on n[2-3] while SLURM_JOB_NODELIST still says n[1-3], and the inherited
    SLURM_NTASKS_PER_NODE is the job's), and rank 0 runs on the step's first node, not the job's."""
    _, step = _require(environ, "SLURM_STEP_ID")
    step_id = _int("SLURM_STEP_ID", step)
    if step_id >= _FIRST_SPECIAL_STEP_ID:
        raise DistEnvError(f"SLURM_STEP_ID={step} is Slurm's batch or extern step, not an srun step: run it as "
                           f"`srun python -m hpc.dist exec -- …`")
    _, job_id = _require(environ, "SLURM_JOB_ID", "SLURM_JOBID")
    rank = _int(*_require(environ, "SLURM_PROCID"))
    world = _int(*_require(environ, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_NPROCS"))
    local_rank = _int(*_require(environ, "SLURM_LOCALID"))
    node_rank = _int(*_require(environ, "SLURM_NODEID"))
    nodes_var, nodelist = _require(environ, "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    hosts = tuple(expand_hostlist(nodelist))

    tpn = _first(environ, "SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    if tpn is not None:
        per_node = expand_tasks_per_node(tpn[1])
        if len(per_node) != len(hosts):
            raise DistEnvError(f"{tpn[0]}={tpn[1]!r} describes {len(per_node)} nodes but "
                               f"{nodes_var}={nodelist!r} has {len(hosts)}")
        if sum(per_node) != world:
            raise DistEnvError(f"{tpn[0]}={tpn[1]!r} adds up to {sum(per_node)} tasks, not the world size {world}")
        if node_rank >= len(per_node):
            raise DistEnvError(f"SLURM_NODEID={node_rank} but the step has {len(per_node)} nodes ({nodes_var}={nodelist!r})")
        local_world = per_node[node_rank]
    else:
        name, value = _require(environ, "SLURM_NTASKS_PER_NODE")
        local_world = _int(name, value)
        if local_world * len(hosts) != world:
            raise DistEnvError(f"SLURM_NTASKS_PER_NODE={value} × {len(hosts)} nodes ≠ world size {world}; "
                               f"set SLURM_TASKS_PER_NODE (srun does) for uneven layouts")

    if rank >= world:
        raise DistEnvError(f"SLURM_PROCID={rank} is not below the world size {world}")
    if local_rank >= local_world:
        raise DistEnvError(f"SLURM_LOCALID={local_rank} is not below this node's task count {local_world}")
    if node_rank >= len(hosts):
        raise DistEnvError(f"SLURM_NODEID={node_rank} but {nodes_var}={nodelist!r} has {len(hosts)} nodes")
    if rank == 0 and (node_rank, local_rank) != (0, 0):
        raise DistEnvError("rank 0 is not the first task of the step's first node (an arbitrary task "
                           "distribution?): MASTER_ADDR would point at the wrong host; set MASTER_ADDR yourself")

    port_value = environ.get("MASTER_PORT")
    if port_value:
        port = _int("MASTER_PORT", port_value)
        if not 0 < port < 65536:
            raise DistEnvError(f"MASTER_PORT={port_value!r} is not a TCP port")
    else:
        port = derive_port(job_id, step_id)
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world,
                   node_rank=node_rank, num_nodes=len(hosts), master_addr=hosts[0], master_port=port,
                   job_id=job_id, step_id=step_id, hosts=hosts)


def torch_env(environ: Mapping[str, str]) -> dict[str, str]:
    """MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK (and
    GROUP_RANK) for this task, from Slurm's variables in ``environ``. Pure: reads nothing else."""
    return dist_env(environ).as_environ()


def nccl_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The suite's NCCL/Gloo/OpenMP defaults — every one of them is decided here and nowhere else.
    A variable the user already set is never overridden (returned dict holds only what to add).

    - TORCH_NCCL_ASYNC_ERROR_HANDLING=1 (NCCL_ASYNC_ERROR_HANDLING for torch < 2.2): when one rank dies
      or a collective times out, the others abort their communicators and exit instead of hanging
      in a collective until the wall-clock limit; Slurm then ends the step and the job can be requeued.
    - NCCL_DEBUG=WARN: NCCL says why it failed (INFO floods 24 ranks' logs).
    - NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME from CAMA_SOCKET_IFNAME, only when the user sets it:
      interface names differ per cluster (ib0, eno1…), and NCCL's own choice is right on most of them;
      set it when the bootstrap picks docker0 or a management network.
    - OMP_NUM_THREADS=SLURM_CPUS_PER_TASK: each task uses the CPUs Slurm gave it, not every core of the
      node (torchrun used to set it to 1 for the same reason).
    """
    add: dict[str, str] = {}

    def default(name: str, value: str) -> None:
        if not environ.get(name):
            add[name] = value

    default("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    default("NCCL_ASYNC_ERROR_HANDLING", "1")
    default("NCCL_DEBUG", "WARN")
    ifname = environ.get(SOCKET_IFNAME_VAR)
    if ifname:
        default("NCCL_SOCKET_IFNAME", ifname)
        default("GLOO_SOCKET_IFNAME", ifname)
    cpus = environ.get("SLURM_CPUS_PER_TASK")
    if cpus and cpus.isdigit():
        default("OMP_NUM_THREADS", cpus)
    return add


# ---------------------------------------------------------------------------------------------
# Applying it


def check_port_free(port: int, host: str = "") -> None:
    """Raise PortInUseError when nothing could listen on ``port`` here. Only rank 0 calls it: it is the
    one that listens (torch's TCPStore). SO_REUSEADDR, like TCPStore, so a port in TIME_WAIT from a
    previous run of the same job (a requeue) does not count as taken. Nothing falls back to another
    port: the other nodes computed this one and cannot learn a different one without a rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError as e:
            raise PortInUseError(
                f"MASTER_PORT {port} is already in use on {socket.gethostname()} (rank 0's node): {e.strerror}. "
                f"Another job or process holds it; export MASTER_PORT=<a free port in {PORT_RANGE.start}–"
                f"{PORT_RANGE.stop - 1}> in the sbatch script and resubmit") from None


def setup(environ: MutableMapping[str, str] | None = None, *, check_port: bool = True) -> DistEnv:
    """Derive this task's DistEnv from ``environ`` (default os.environ), write the torch.distributed and
    NCCL variables into os.environ, and on rank 0 check that MASTER_PORT is free. Call it before
    ``torch.distributed.init_process_group()`` (env:// rendezvous)."""
    source = os.environ if environ is None else environ
    env = dist_env(source)
    if check_port and env.is_rank0:
        check_port_free(env.master_port)
    os.environ.update(env.as_environ())
    os.environ.update(nccl_env(os.environ))
    return env


# ---------------------------------------------------------------------------------------------
# CLI


def _print_env(env: DistEnv, as_json: bool) -> None:
    values = {**env.as_environ(), **nccl_env(os.environ)}
    if as_json:
        print(json.dumps({"env": values, **{k: v for k, v in asdict(env).items() if k != "hosts"},
                          "hosts": list(env.hosts)}, sort_keys=True), flush=True)
    else:
        print(f"# hpc.dist: {env.summary()}")
        for k, v in values.items():
            print(f"export {k}={shlex.quote(v)}")
        sys.stdout.flush()


def build_parser() -> Parser:
    p = Parser(
        prog="python -m hpc.dist",
        description="torch.distributed environment from Slurm's, for one srun task. Without a command: "
                    "print the derived variables (as `export` lines, or --json).")
    p.add_argument("--json", action="store_true", help="one JSON object per task instead of export lines")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    e = sub.add_parser("exec", help="set the environment, then replace this process with COMMAND (os.execvp) "
                                    "so Slurm's signals reach it directly")
    e.add_argument("--quiet", action="store_true", help="do not log the task's layout to stderr")
    e.add_argument("--no-port-check", action="store_true", help="skip rank 0's MASTER_PORT check")
    e.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")
    return p


def _exec(args: argparse.Namespace) -> int:
    cmd = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    env = setup(check_port=not args.no_port_check)
    if not args.quiet:
        print(f"hpc.dist: {env.summary()} on {socket.gethostname()}: exec {shlex.join(cmd)}",
              file=sys.stderr, flush=True)
    try:
        os.execvp(cmd[0], cmd)
    except OSError as err:
        # 127, as a shell says for a command it cannot run: not a Slurm environment problem.
        print(f"hpc.dist: cannot exec {cmd[0]!r}: {err.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached: execvp does not return


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.command == "exec":
        if not (args.argv[1:] if args.argv[:1] == ["--"] else args.argv):
            p.error("exec needs a command: python -m hpc.dist exec -- python -m train.pretrain --config JOB.yaml")
        return run("hpc.dist", lambda: _exec(args))
    return run("hpc.dist", lambda: _print_env(dist_env(os.environ), args.json))


if __name__ == "__main__":
    raise SystemExit(main())
