"""hpc.dist: Slurm's hostlist and task notations, the torch.distributed environment, and a real
3-node × 2-task rendezvous on the dev cluster."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from hpc import dist
from hpc.dist import (
    DistEnvError, MissingSlurmVariable, PortInUseError, derive_port, dist_env, expand_hostlist,
    expand_tasks_per_node, nccl_env, torch_env,
)
from slurm_fixtures import sacct_state, slurm, slurm_cluster  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
RESERVED_PORTS = {6817, 6819, 13306, *range(17000, 17010)}

# What srun really gave task 3 of a 3-node × 2-task step on the dev cluster (sbatch -N3 --ntasks-per-node=2).
STEP_ENV = {
    "SLURM_JOB_ID": "20", "SLURM_STEP_ID": "0", "SLURM_JOB_NODELIST": "n[1-3]", "SLURM_NODELIST": "n[1-3]",
    "SLURM_STEP_NODELIST": "n[1-3]", "SLURM_JOB_NUM_NODES": "3", "SLURM_NNODES": "3", "SLURM_STEP_NUM_NODES": "3",
    "SLURM_NTASKS": "6", "SLURM_STEP_NUM_TASKS": "6", "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_TASKS_PER_NODE": "2(x3)", "SLURM_STEP_TASKS_PER_NODE": "2(x3)",
    "SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
}
# …and what the batch script itself sees: SLURM_PROCID=0 but no step.
BATCH_ENV = {k: v for k, v in STEP_ENV.items() if not k.startswith("SLURM_STEP_")} | {
    "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}


# --- notations -------------------------------------------------------------------------------------

HOSTLISTS = {
    "n1": ["n1"],
    "n[1-3]": ["n1", "n2", "n3"],
    "gpu[01-04,07]": ["gpu01", "gpu02", "gpu03", "gpu04", "gpu07"],
    "a1,b[2-3]": ["a1", "b2", "b3"],
    "n[8-10]": ["n8", "n9", "n10"],
    "n[08-10]": ["n08", "n09", "n10"],
    "node[007]": ["node007"],
    "r[1-2]-n[01-02]": ["r1-n01", "r1-n02", "r2-n01", "r2-n02"],
    "gpu-a100-[1,3],cpu.example[9-10]": ["gpu-a100-1", "gpu-a100-3", "cpu.example9", "cpu.example10"],
    "z9,a[1-2],m": ["z9", "a1", "a2", "m"],  # order kept, not sorted
}


@pytest.mark.parametrize("text,hosts", HOSTLISTS.items())
def test_expand_hostlist(text, hosts):
    assert expand_hostlist(text) == hosts


@pytest.mark.parametrize("text,message", [
    ("", "empty host list"), ("  ", "empty host list"), ("n[1-2", "unbalanced '\\['"),
    ("n1-2]", "unbalanced '\\]'"), ("n[3-1]", "descending range"), ("n[a-b]", "bad range"),
    ("n[1-]", "bad range"), ("n[]", "bad range"), ("a,,b", "empty host name"), ("n[[1]]", "nested"),
    ("n[1,,2]", "bad range"), ("bad host", "bad host name"),
])
def test_expand_hostlist_errors(text, message):
    with pytest.raises(DistEnvError, match=message):
        expand_hostlist(text)


@pytest.mark.slurm
def test_expand_hostlist_agrees_with_scontrol(slurm_cluster):
    for text, hosts in HOSTLISTS.items():
        if text == "gpu-a100-[1,3],cpu.example[9-10]":
            continue
        assert slurm("scontrol", "show", "hostnames", text).split() == hosts == expand_hostlist(text)


@pytest.mark.parametrize("spec,counts", [
    ("8", [8]), ("2(x3)", [2, 2, 2]), ("8,8,4", [8, 8, 4]), ("2(x2),1", [2, 2, 1]), ("1,3(x2)", [1, 3, 3]),
])
def test_expand_tasks_per_node(spec, counts):
    assert expand_tasks_per_node(spec) == counts


@pytest.mark.parametrize("spec", ["", "x", "2(3)", "2(x)", "-1", "2,,2", "2 (x3)"])
def test_expand_tasks_per_node_errors(spec):
    with pytest.raises(DistEnvError, match="tasks-per-node"):
        expand_tasks_per_node(spec)


# --- the derivation --------------------------------------------------------------------------------


def test_torch_env_of_a_real_step_task():
    env = torch_env(STEP_ENV)
    assert env == {"MASTER_ADDR": "n1", "MASTER_PORT": str(derive_port("20", 0)), "RANK": "3", "WORLD_SIZE": "6",
                   "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "NODE_RANK": "1", "GROUP_RANK": "1"}
    d = dist_env(STEP_ENV)
    assert (d.num_nodes, d.hosts, d.is_rank0) == (3, ("n1", "n2", "n3"), False)


def test_a_step_on_part_of_the_allocation_uses_the_step_variables():
    # Real values of `srun -N2 -r1 -n3` inside a 3-node job: the step runs on n[2-3], the job's node
    # list and --ntasks-per-node are inherited and wrong for it.
    step = STEP_ENV | {"SLURM_STEP_ID": "1", "SLURM_STEP_NODELIST": "n[2-3]", "SLURM_NNODES": "2",
                       "SLURM_STEP_NUM_NODES": "2", "SLURM_NTASKS": "3", "SLURM_STEP_NUM_TASKS": "3",
                       "SLURM_TASKS_PER_NODE": "2,1", "SLURM_STEP_TASKS_PER_NODE": "2,1"}
    first = torch_env(step | {"SLURM_PROCID": "1", "SLURM_LOCALID": "1", "SLURM_NODEID": "0"})
    last = torch_env(step | {"SLURM_PROCID": "2", "SLURM_LOCALID": "0", "SLURM_NODEID": "1"})
    assert first["MASTER_ADDR"] == last["MASTER_ADDR"] == "n2"
    assert (first["LOCAL_WORLD_SIZE"], last["LOCAL_WORLD_SIZE"]) == ("2", "1")
    assert first["MASTER_PORT"] == last["MASTER_PORT"] == str(derive_port("20", 1)) != torch_env(STEP_ENV)["MASTER_PORT"]


def test_minimal_job_level_variables_are_enough():
    env = {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_NODELIST": "gpu[01-03]", "SLURM_NTASKS": "24",
           "SLURM_NTASKS_PER_NODE": "8", "SLURM_PROCID": "23", "SLURM_LOCALID": "7", "SLURM_NODEID": "2"}
    assert torch_env(env) | {"MASTER_PORT": ""} == {
        "MASTER_ADDR": "gpu01", "MASTER_PORT": "", "RANK": "23", "WORLD_SIZE": "24", "LOCAL_RANK": "7",
        "LOCAL_WORLD_SIZE": "8", "NODE_RANK": "2", "GROUP_RANK": "2"}


def test_uneven_layout_and_a_user_port():
    env = STEP_ENV | {"SLURM_STEP_TASKS_PER_NODE": "8,8,4", "SLURM_STEP_NUM_TASKS": "20", "SLURM_PROCID": "17",
                      "SLURM_NODEID": "2", "SLURM_LOCALID": "1", "MASTER_PORT": "29400",
                      "MASTER_ADDR": "stale-from-login-shell", "RANK": "99"}
    out = torch_env(env)
    assert (out["LOCAL_WORLD_SIZE"], out["MASTER_PORT"], out["MASTER_ADDR"], out["RANK"]) == ("4", "29400", "n1", "17")


@given(st.integers(min_value=1, max_value=2**32), st.integers(min_value=0, max_value=200))
def test_derived_ports_are_in_range_and_clear_of_the_cluster(job, step):
    port = derive_port(str(job), step)
    assert port in dist.PORT_RANGE and port not in RESERVED_PORTS
    assert port == derive_port(str(job), step)
    assert derive_port(str(job), step) != derive_port(str(job + 1), step)
    if step < dist.STEP_SLOTS - 1:
        assert port != derive_port(str(job), step + 1)


def test_array_task_job_ids():
    assert derive_port("1234") == derive_port("1234_7") == 18000 + (1234 % 625) * 16


@pytest.mark.parametrize("change,message", [
    ({}, "SLURM_STEP_ID is not set: hpc.dist must run inside an srun step"),  # the batch script
    ({"SLURM_STEP_ID": "4294967291"}, "SLURM_STEP_ID=4294967291 is Slurm's batch or extern step, not an srun step"),
])
def test_outside_a_step_is_a_clear_error(change, message):
    with pytest.raises(DistEnvError, match=message):
        torch_env(BATCH_ENV | change)


@pytest.mark.parametrize("missing", ["SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID", "SLURM_JOB_ID"])
def test_missing_variable_is_named(missing):
    with pytest.raises(MissingSlurmVariable) as err:
        torch_env({k: v for k, v in STEP_ENV.items() if k != missing})
    assert err.value.name == missing and str(err.value).startswith(f"{missing} is not set") and "srun" in str(err.value)


def test_missing_layout_names_all_candidates():
    env = {k: v for k, v in STEP_ENV.items() if k not in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")}
    with pytest.raises(MissingSlurmVariable, match=r"SLURM_STEP_NODELIST is not set.*\(Looked for SLURM_JOB_NODELIST and SLURM_NODELIST too.\)"):
        torch_env(env)
    env = {k: v for k, v in STEP_ENV.items() if "TASKS_PER_NODE" not in k}
    with pytest.raises(MissingSlurmVariable, match="SLURM_NTASKS_PER_NODE"):
        torch_env(env)


@pytest.mark.parametrize("change,message", [
    ({"SLURM_PROCID": "6"}, "SLURM_PROCID=6 is not below the world size 6"),
    ({"SLURM_LOCALID": "2"}, "SLURM_LOCALID=2 is not below this node's task count 2"),
    ({"SLURM_NODEID": "3"}, "SLURM_NODEID=3"),
    ({"SLURM_PROCID": "x"}, "SLURM_PROCID='x' is not an integer"),
    ({"SLURM_PROCID": "-1"}, "negative"),
    ({"SLURM_STEP_TASKS_PER_NODE": "2(x2)"}, "describes 2 nodes but SLURM_STEP_NODELIST='n\\[1-3\\]' has 3"),
    ({"SLURM_STEP_TASKS_PER_NODE": "3(x3)"}, "adds up to 9 tasks, not the world size 6"),
    ({"MASTER_PORT": "70000"}, "not a TCP port"),
    ({"SLURM_JOB_ID": "abc"}, "not a job number"),
    ({"SLURM_STEP_NODELIST": "n[1-3"}, "unbalanced"),
    ({"SLURM_PROCID": "0", "SLURM_NODEID": "1"}, "rank 0 is not the first task"),
])
def test_inconsistent_environment_is_a_clear_error(change, message):
    with pytest.raises(DistEnvError, match=message):
        torch_env(STEP_ENV | change)


def test_nccl_defaults_never_override_the_user():
    assert nccl_env({}) == {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "NCCL_ASYNC_ERROR_HANDLING": "1", "NCCL_DEBUG": "WARN"}
    mine = {"NCCL_DEBUG": "INFO", "CAMA_SOCKET_IFNAME": "ib0", "GLOO_SOCKET_IFNAME": "eth0", "SLURM_CPUS_PER_TASK": "6"}
    assert nccl_env(mine) == {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "NCCL_ASYNC_ERROR_HANDLING": "1",
                              "NCCL_SOCKET_IFNAME": "ib0", "OMP_NUM_THREADS": "6"}
    assert "NCCL_SOCKET_IFNAME" not in nccl_env({"SLURM_CPUS_PER_TASK": "2"})


@pytest.fixture
def clean_environ():
    """setup() writes os.environ: restore it whole afterwards. A leaked MASTER_PORT would travel into
    later tests' jobs through sbatch's default --export=ALL (and set their port)."""
    saved = dict(os.environ)
    for k in list(os.environ):
        if k.startswith(("MASTER_", "NCCL_", "TORCH_NCCL_", "GLOO_")) or k in ("RANK", "WORLD_SIZE", "OMP_NUM_THREADS"):
            del os.environ[k]
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_setup_applies_env_and_rank0_checks_the_port(clean_environ):
    rank0 = STEP_ENV | {"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen(1)
        port = held.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"MASTER_PORT {port} is already in use.*export MASTER_PORT="):
            dist.setup(rank0 | {"MASTER_PORT": str(port)})
        # Only rank 0 listens, so only rank 0 checks.
        env = dist.setup(STEP_ENV | {"MASTER_PORT": str(port)})
    assert env.rank == 3 and os.environ["RANK"] == "3" and os.environ["MASTER_PORT"] == str(port)
    assert os.environ["NCCL_DEBUG"] == "WARN" and os.environ["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    assert dist.setup(rank0).master_port == derive_port("20")  # the derived port is free here


# --- the CLI ---------------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "NCCL_", "TORCH_NCCL_"))}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "hpc.dist", *args], env=base | env, capture_output=True,
                          text=True, timeout=30)


def test_cli_prints_exports_or_json():
    r = run_cli(env=STEP_ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# hpc.dist: rank 3/6 local 1/2 node 1/3 master n1:")
    assert "export WORLD_SIZE=6\n" in r.stdout and "export NCCL_DEBUG=WARN\n" in r.stdout
    r = run_cli("--json", env=STEP_ENV)
    data = json.loads(r.stdout)
    assert data["env"]["RANK"] == "3" and data["hosts"] == ["n1", "n2", "n3"] and data["world_size"] == 6


def test_cli_outside_slurm_fails_with_the_variable_name():
    r = run_cli(env={})
    assert r.returncode == 2 and "SLURM_STEP_ID is not set" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("exec", "--", "true", env=BATCH_ENV)
    assert r.returncode == 2 and "inside an srun step" in r.stderr


def test_cli_exec_replaces_itself_with_the_command():
    code = "import os; print(os.getpid(), os.environ['RANK'], os.environ['MASTER_ADDR'], os.environ['NCCL_DEBUG'])"
    r = run_cli("exec", "--no-port-check", "--", sys.executable, "-c", code, env=STEP_ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1:] == ["3", "n1", "WARN"]
    assert "hpc.dist: rank 3/6" in r.stderr
    r = run_cli("exec", "--", "/nonexistent/cmd", env=STEP_ENV)
    assert r.returncode == 127 and "cannot exec '/nonexistent/cmd'" in r.stderr


# --- a real rendezvous on the dev cluster -----------------------------------------------------------

PROBE = textwrap.dedent("""\
    import json, os, sys
    from datetime import timedelta
    import torch, torch.distributed as td
    from hpc import dist
    env = dist.setup()
    td.init_process_group("gloo", timeout=timedelta(seconds=90))
    t = torch.tensor([float(env.rank + 1)])
    td.all_reduce(t)
    td.barrier()
    row = {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    row.update(node=os.environ["SLURMD_NODENAME"], sum=t.item(), nccl_debug=os.environ["NCCL_DEBUG"])
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (json.dumps(row) + "\\n").encode())   # one O_APPEND write per rank: lines never interleave
    os.close(fd)
    td.destroy_process_group()
    """)


@pytest.mark.slurm
@pytest.mark.slow
def test_three_nodes_two_tasks_meet_at_one_rendezvous(slurm_cluster, tmp_path):
    pytest.importorskip("torch")
    work = tmp_path / "dist run's folder"  # spaces on purpose, in every path the job sees
    work.mkdir()
    probe = work / "probe it.py"
    probe.write_text(PROBE)
    rows_path = work / "ranks out.jsonl"
    script = work / "rendezvous job.sh"
    script.write_text(
        "#!/bin/bash\nset -euo pipefail\n"
        f"export PYTHONPATH={shlex.quote(str(ROOT))}\n"
        'srun "$CAMA_TEST_PYTHON" "$1" "$2"\n'
    )
    job = slurm(
        "sbatch", "--parsable", "--nodes=3", "--ntasks-per-node=2", "--cpus-per-task=1",
        "--job-name=rendezvous", "-o", str(work / "job %j.out"), "-D", str(work),
        f"--export=ALL,CAMA_TEST_PYTHON={sys.executable}", str(script), str(probe), str(rows_path),
    ).strip()
    # Polling sacct answers within a second of the end; `sbatch --wait` polls every 8 s here.
    state = sacct_state(job, until=["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"], timeout=150)
    log = (work / f"job {job}.out").read_text()
    assert state == "COMPLETED", log
    assert rows_path.exists(), log
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert sorted(int(r["RANK"]) for r in rows) == list(range(6)), log
    assert {r["WORLD_SIZE"] for r in rows} == {"6"} and {r["LOCAL_WORLD_SIZE"] for r in rows} == {"2"}
    by_node: dict[str, list[str]] = {}
    for r in rows:
        by_node.setdefault(r["node"], []).append(r["LOCAL_RANK"])
    assert {n: sorted(v) for n, v in by_node.items()} == {"n1": ["0", "1"], "n2": ["0", "1"], "n3": ["0", "1"]}
    assert {(r["MASTER_ADDR"], r["MASTER_PORT"]) for r in rows} == {("n1", str(derive_port(job, 0)))}
    assert {r["sum"] for r in rows} == {21.0}  # 1 + 2 + … + 6
    assert {r["nccl_debug"] for r in rows} == {"WARN"}
