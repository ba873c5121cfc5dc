"""The slurm/*.sh batch scripts: they parse, the scheduler accepts their own #SBATCH shapes, and they
really run on the dev cluster with small overrides — quoting, hpc.dist plumbing, the USR2 → save →
requeue path, and the corpus array with its dependent merge job."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hpc import jobs
from hpc.dist import derive_port, expand_hostlist
from hpc.plan import Request, gpu_resources, resolve_time
from hpc.profiles import load_profile, parse_mem_mb, parse_time_min
from slurm_fixtures import sacct_state, slurm, slurm_cluster  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
SLURM_DIR = ROOT / "slurm"
# script -> (nodes, CPUs) of its own #SBATCH shape on the dev cluster, with each GPU task's CPUs and
# memory scaled to the dev nodes (16 CPUs / 8 GPUs: 2 per task): pretrain 3 nodes × 8 tasks × 2 CPUs,
# lora 8 × 2, sft like pretrain, recover one task of 2 CPUs, corpus one array task of 4 (a CPU job: not scaled).
SCRIPTS = {
    "pretrain_3x8v100.sh": (3, 48),
    "lora_1x8v100.sh": (1, 16),
    "sft_3x8v100.sh": (3, 48),
    "recover_gpu.sh": (1, 2),
    "corpus_array.sh": (1, 4),
}
# script -> the hpc.submit job kind whose shape on the cluster profile below it must request.
SCRIPT_KINDS = {"pretrain_3x8v100.sh": "pretrain", "lora_1x8v100.sh": "lora", "sft_3x8v100.sh": "sft",
                "recover_gpu.sh": "recover",
                "corpus_array.sh": "corpus"}
SCRIPT_PROFILE = "cama_3x8v100"
# A name and a path with spaces, double and single quotes: every script must pass them through intact.
AWKWARD = "cama \"quoted\" it's"


def sbatch_env(**extra: str) -> dict[str, str]:
    """The environment a user's shell would hand sbatch: the scripts find the checkout through
    CAMA_HOME and this interpreter through CAMA_VENV (or PATH, for a Python outside a venv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "CAMA_"))}
    env["CAMA_HOME"] = str(ROOT)
    if (Path(sys.prefix) / "bin" / "activate").exists():
        env["CAMA_VENV"] = sys.prefix
    else:
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return env | extra


def sbatch(*args: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["sbatch", "--parsable", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def job_id_of(r: subprocess.CompletedProcess) -> str:
    assert r.stdout.strip().split(";")[0].isdigit(), r.stderr
    return r.stdout.strip().split(";")[0]


def sacct_history(job_id: str) -> list[str]:
    out = slurm("sacct", "-n", "-X", "-P", "--duplicates", "-j", job_id, "-o", "State")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def workdir(tmp_path: Path) -> Path:
    """A job working directory with a space in its path and the logs/ folder the scripts write to."""
    work = tmp_path / "job dir"
    (work / "logs").mkdir(parents=True)
    return work


PROBE = """\
#!{python}
# Stands in for the entry point (CAMA_ENTRY): reports what it was given, and with CAMA_PROBE_DIR set,
# on its first run waits for USR2 and "saves" like a trainer would.
import json, os, signal, sys, time
from pathlib import Path
restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURMD_NODENAME", "NCCL_DEBUG")
row = {{"argv": sys.argv[1:], "parent": Path(f"/proc/{{os.getppid()}}/comm").read_text().strip(), "restart": restart,
       **{{k: os.environ.get(k) for k in keys}}}}
print("PROBE " + json.dumps(row), flush=True)
folder = os.environ.get("CAMA_PROBE_DIR")
if folder and restart == 0:
    rank = os.environ.get("RANK", "0")
    def save(signum, frame):
        Path(folder, f"saved-{{rank}}").write_text(str(restart))
        sys.exit(0)
    signal.signal(signal.SIGUSR2, save)
    Path(folder, f"ready-{{rank}}").write_text("")
    time.sleep(90)
    sys.exit(1)
"""


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    # A space in the folder, not in the file name: the file name becomes the process name (comm), and
    # the dev cluster's proctrack/linuxproc cannot parse /proc/PID/stat when comm has a space, so it
    # would never deliver the step's signals to the probe (a real entry point's process is `python`).
    path = tmp_path / "probe dir" / "entry_probe.py"
    path.parent.mkdir()
    path.write_text(PROBE.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def probe_rows(log: str) -> list[dict]:
    return [json.loads(line[len("PROBE "):]) for line in log.splitlines() if line.startswith("PROBE ")]


def the_log(work: Path) -> str:
    logs = list((work / "logs").iterdir())
    assert len(logs) == 1, logs
    return logs[0].read_text()


# --- static -----------------------------------------------------------------------------------------


def test_every_script_is_listed_and_parses():
    found = {p.name for p in SLURM_DIR.glob("*.sh")} - {"lib.sh"}
    assert found == set(SCRIPTS)
    for path in SLURM_DIR.glob("*.sh"):
        r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert r.returncode == 0, f"{path.name}: {r.stderr}"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_conventions(name):
    text = (SLURM_DIR / name).read_text()
    assert text.startswith("#!/bin/bash\n") and os.access(SLURM_DIR / name, os.X_OK)
    for line in ("set -euo pipefail", "#SBATCH --signal=B:USR2@", "#SBATCH --requeue",
                 "#SBATCH --open-mode=append", "#SBATCH --output=logs/%x-", 'cama_setup "$CONFIG"'):
        assert line in text, f"{name} lacks {line!r}"
    # The job YAML's path is only ever used quoted.
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    assert not re.search(r'(?<!")\$\{?CONFIG\b', code), f"{name}: unquoted $CONFIG"
    assert "torchrun" not in code  # torchrun does not forward USR2 (see hpc.dist)


def script_options(name: str) -> dict[str, str]:
    """The script's #SBATCH options (not the commented-out ##SBATCH ones), as sbatch reads them."""
    opts = {}
    for line in (SLURM_DIR / name).read_text().splitlines():
        if line.startswith("#SBATCH "):
            key, _, value = line[len("#SBATCH "):].strip().partition("=")
            opts[key] = value
    return opts


def planned_gpu_shape(kind_name: str, profile_name: str, **request):
    profile = load_profile(profile_name)
    kind = jobs.KINDS[kind_name]
    part_name = profile.default_partition
    part = profile.partition(part_name)
    minutes = resolve_time(None, kind, part_name, part)
    return profile, part, gpu_resources(kind, Request(**request), part_name, part, minutes)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_shape_is_the_cluster_profiles(name):
    """The #SBATCH defaults of each script are what `hpc.submit KIND --cluster cama_3x8v100` requests:
    nodes, tasks, GPUs, CPUs per task, memory, time and the signal's lead (--mem=0, all of a node's
    memory, stands for the profile's mem_per_node when the job takes every GPU of its nodes)."""
    opts = script_options(name)
    kind = jobs.KINDS[SCRIPT_KINDS[name]]
    profile = load_profile(SCRIPT_PROFILE)
    part_name = profile.default_partition if kind.gpus else (profile.cpu_partition or profile.default_partition)
    part = profile.partition(part_name)
    where = f"{name} vs configs/cluster/{SCRIPT_PROFILE}.yaml ({kind.name} kind)"
    assert opts.get("--signal") == f"B:USR2@{profile.signal_lead_s}", f"{where}: --signal"
    assert parse_time_min(opts["--time"]) == resolve_time(None, kind, part_name, part), f"{where}: --time"
    if not kind.gpus:
        return  # a CPU task's CPUs come from the job config's workers
    _, _, res = planned_gpu_shape(kind.name, SCRIPT_PROFILE)
    assert int(opts["--nodes"]) == res.nodes, f"{where}: --nodes"
    assert int(opts.get("--ntasks-per-node") or opts["--ntasks"]) == res.tasks_per_node, f"{where}: tasks per node"
    gpu_type, _, count = opts["--gpus-per-node"].rpartition(":")
    assert int(count) == res.gpus_per_node and gpu_type in ("", res.gpu_type), f"{where}: --gpus-per-node"
    assert int(opts["--cpus-per-task"]) == res.cpus_per_task, f"{where}: --cpus-per-task {res.cpus_per_task} expected"
    if opts["--mem"] == "0":
        assert res.gpus_per_node == part.gpus_per_node, f"{where}: --mem=0 (the whole node) for a part of a node"
    else:
        assert parse_mem_mb(opts["--mem"]) == parse_mem_mb(res.mem), f"{where}: --mem {res.mem} expected"


# --- the scheduler accepts the scripts' own shapes ---------------------------------------------------


@pytest.mark.slurm
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_scheduler_accepts_the_script_as_written(slurm_cluster, name, tmp_path):
    """Nodes, tasks, GPUs, time, array as written; a GPU task's CPUs and memory are the dev nodes'
    share (they have 16 CPUs and 6000M for 8 GPUs, the CaMA nodes 64 and 500G)."""
    nodes, cpus = SCRIPTS[name]
    scaled = []
    if jobs.KINDS[SCRIPT_KINDS[name]].gpus:
        opts = script_options(name)
        _, _, res = planned_gpu_shape(SCRIPT_KINDS[name], "dev", nodes=int(opts["--nodes"]),
                                      gpus_per_node=int(opts["--gpus-per-node"].rpartition(":")[2]))
        scaled = [f"--cpus-per-task={res.cpus_per_task}", f"--mem={'0' if opts['--mem'] == '0' else res.mem}"]
    r = subprocess.run(["sbatch", "--test-only", *scaled, str(SLURM_DIR / name), "configs/tiny/corpus.yaml"],
                       cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    m = re.search(r"to start at \S+ using (\d+) processors on nodes (\S+) in partition debug", r.stderr)
    assert m, r.stderr
    assert (len(expand_hostlist(m.group(2))), int(m.group(1))) == (nodes, cpus), r.stderr


# --- real runs ---------------------------------------------------------------------------------------


@pytest.mark.slurm
def test_pretrain_script_runs_two_nodes_through_hpc_dist(slurm_cluster, tmp_path, probe):
    work = workdir(tmp_path)
    config = work / f"{AWKWARD}.yaml"
    config.write_text("probe: true\n")
    r = sbatch("--wait", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--gpus-per-node=1",
               "--time=5", f"--job-name={AWKWARD}", f"--chdir={work}", str(SLURM_DIR / "pretrain_3x8v100.sh"),
               config.name, env=sbatch_env(CAMA_ENTRY=str(probe)))
    job = job_id_of(r)
    log_path = work / "logs" / f"{AWKWARD}-{job}.out"  # --output=logs/%x-%j.out, the name as given
    assert log_path.exists(), list((work / "logs").iterdir())
    log = log_path.read_text()
    assert r.returncode == 0, log
    rows = sorted(probe_rows(log), key=lambda row: row["RANK"])
    assert [(row["RANK"], row["SLURMD_NODENAME"], row["LOCAL_RANK"]) for row in rows] == [("0", "n1", "0"), ("1", "n2", "0")], log
    assert {(row["MASTER_ADDR"], row["MASTER_PORT"], row["WORLD_SIZE"]) for row in rows} == {("n1", str(derive_port(job)), "2")}
    assert all(row["argv"] == ["--config", config.name] for row in rows)  # the awkward path, intact
    # exec, not a child: the entry point's parent is slurmstepd, so Slurm's signals reach it directly.
    assert {row["parent"] for row in rows} == {"slurmstepd"} and {row["NCCL_DEBUG"] for row in rows} == {"WARN"}
    assert "[cama " in log and f"'{AWKWARD}'" in log
    assert sacct_state(job, until=["COMPLETED"]) == "COMPLETED"


@pytest.mark.slurm
@pytest.mark.parametrize("name,argv_head", [("lora_1x8v100.sh", []), ("recover_gpu.sh", ["apply"])])
def test_one_node_scripts_run_their_entry(slurm_cluster, tmp_path, probe, name, argv_head):
    work = workdir(tmp_path)
    config = work / f"{AWKWARD}.yaml"
    config.write_text("probe: true\n")
    # --mem: recover_gpu.sh asks for a CaMA GPU's share (64000M), more than a dev node has.
    r = sbatch("--wait", "--ntasks-per-node=1", "--ntasks=1", "--cpus-per-task=1", "--mem=500M", "--gpus-per-node=1", "--time=5",
               f"--chdir={work}", str(SLURM_DIR / name), str(config), env=sbatch_env(CAMA_ENTRY=str(probe)))
    log = the_log(work)
    assert r.returncode == 0, log
    rows = probe_rows(log)
    assert len(rows) == 1 and rows[0]["argv"] == [*argv_head, "--config", str(config)], log
    assert rows[0]["parent"] == "slurmstepd"


@pytest.mark.slurm
def test_bad_input_fails_the_job_with_a_clear_message(slurm_cluster, tmp_path):
    work = workdir(tmp_path)
    script = str(SLURM_DIR / "recover_gpu.sh")
    common = ("--wait", "--gpus-per-node=1", "--cpus-per-task=1", "--mem=500M", "--time=5", f"--chdir={work}")
    r = sbatch(*common, "--job-name=missing", script, "no such 'config'.yaml", env=sbatch_env())
    log = (work / "logs" / f"missing-{job_id_of(r)}.out").read_text()
    assert r.returncode != 0 and "error: job YAML not found: 'no such 'config'.yaml'" in log, log
    r = sbatch(*common, "--job-name=nohome", script, "x.yaml", env=sbatch_env(CAMA_HOME=str(tmp_path)))
    log = (work / "logs" / f"nohome-{job_id_of(r)}.out").read_text()
    assert r.returncode != 0 and "slurm/lib.sh' not found" in log and "export CAMA_HOME" in log, log
    assert sacct_state(job_id_of(r), until=["FAILED"]) == "FAILED"


def start_waiting_job(tmp_path: Path, probe: Path, *, max_requeues: str, name: str) -> tuple[str, Path, Path]:
    """Submit pretrain_3x8v100.sh (1 node × 2 tasks) whose probe waits for USR2 on its first run, and
    send the batch shell the time-limit signal as soon as both tasks are ready."""
    work = workdir(tmp_path)
    signals = tmp_path / "probe state"
    signals.mkdir()
    (work / "job.yaml").write_text("probe: true\n")
    r = sbatch("--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--gpus-per-node=2", "--time=5",
               f"--job-name={name}", f"--chdir={work}", str(SLURM_DIR / "pretrain_3x8v100.sh"), "job.yaml",
               env=sbatch_env(CAMA_ENTRY=str(probe), CAMA_PROBE_DIR=str(signals), CAMA_MAX_REQUEUES=max_requeues))
    job = job_id_of(r)
    end = time.monotonic() + 60
    while not all((signals / f"ready-{rank}").exists() for rank in (0, 1)):
        assert time.monotonic() < end, f"the job's tasks never got ready: {sacct_history(job)}"
        time.sleep(0.2)
    # What `--signal=B:USR2@120` does 120 s before the time limit (and how to preempt by hand).
    slurm("scancel", "--batch", "--signal=USR2", job)
    return job, work, signals


@pytest.mark.slurm
@pytest.mark.slow
def test_script_saves_and_requeues_on_the_signal(slurm_cluster, tmp_path, probe):
    job, work, signals = start_waiting_job(tmp_path, probe, max_requeues="2", name="requeue-me")
    # The requeued run starts about 31 s later (the dev cluster's cred_expire 30 + 1) and finishes at once.
    assert sacct_state(job, until=["COMPLETED", "FAILED", "CANCELLED"], timeout=100) == "COMPLETED", the_log(work)
    assert sacct_history(job) == ["REQUEUED", "COMPLETED"]
    assert sorted(p.name for p in signals.iterdir()) == ["ready-0", "ready-1", "saved-0", "saved-1"]
    log = the_log(work)  # --open-mode=append: both runs in one log
    assert "USR2: time limit or preemption ahead" in log and "requeuing job" in log and "(requeue 1 of at most 2)" in log
    assert sorted((row["restart"], row["RANK"]) for row in probe_rows(log)) == [(0, "0"), (0, "1"), (1, "0"), (1, "1")]


@pytest.mark.slurm
def test_script_stops_requeueing_at_the_limit(slurm_cluster, tmp_path, probe):
    job, work, signals = start_waiting_job(tmp_path, probe, max_requeues="0", name="no-requeue")
    assert sacct_state(job, until=["FAILED", "COMPLETED"], timeout=30) == "FAILED"
    assert "REQUEUED" not in sacct_history(job)
    assert {p.name for p in signals.iterdir()} >= {"saved-0", "saved-1"}  # the tasks still saved
    assert "after 0 requeue(s), and CAMA_MAX_REQUEUES is 0: not requeuing it again" in the_log(work)


def _corpus_deliverables(out: Path) -> dict[str, bytes]:
    """A corpus build's final files (per source .bin/.idx/.docs.jsonl and the mix's index), which must
    not depend on how the plan's tasks were split or where they ran."""
    keep = (".bin", ".idx", ".docs.jsonl")
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and "shards" not in p.parts and (p.name.endswith(keep) or p.name.startswith("blend."))
            and not p.name.endswith(".json")}


@pytest.mark.slurm
@pytest.mark.slow
def test_corpus_array_runs_the_plan_stage_after_stage_and_equals_a_single_build(slurm_cluster, tmp_path,
                                                                                tokenizer_path):
    """The driver (task 0 of the script's own array) submits one array job per stage of `corpus plan
    --json`, each afterok on the one before; the output equals one local `python -m corpus build`."""
    work = workdir(tmp_path)
    cfg = yaml.safe_load((ROOT / "configs" / "tiny" / "sources.yaml").read_text())
    keep = {"baike", "english", "github"}
    cfg.update(tokenizer=str(tokenizer_path), output_dir="out", filters=str(ROOT / cfg["filters"]),
               dedup={"threshold": 0.8, "scope": "global"}, shard_records=1,
               sources=[dict(s, paths=[str(ROOT / p) for p in s["paths"]]) for s in cfg["sources"] if s["name"] in keep])
    config = work / "tiny corpus.yaml"
    config.write_text(yaml.safe_dump(cfg))
    options = ["--tasks", "2", "--set", "band_tasks=2"]
    r = sbatch("--wait", "--array=0", "--cpus-per-task=1", "--job-name=corpus-test", f"--chdir={work}",
               str(SLURM_DIR / "corpus_array.sh"), config.name, *options, env=sbatch_env())
    driver = job_id_of(r)
    log = (work / "logs" / f"corpus-test-{driver}_0.out").read_text()
    assert r.returncode == 0, log
    stages = re.findall(r"stage (\w+): job (\d+) \((\d+) task", log)
    assert [(s, int(n)) for s, _, n in stages] == [("prepare", 6), ("bands", 2), ("dedup", 1), ("build", 3),
                                                   ("mix", 1)], log
    last = re.search(r"last job: (\d+)", log).group(1)
    assert last == stages[-1][1]
    state = sacct_state(last, until=["COMPLETED", "FAILED", "CANCELLED", "OUT_OF_MEMORY", "TIMEOUT"], timeout=300)
    logs = {p.name: p.read_text() for p in (work / "logs").iterdir()}
    assert state == "COMPLETED", logs
    # afterok: no task of a stage started before every task of the stage before it had ended.
    spans = []
    for _, job, _ in stages:
        rows = [line.split("|") for line in slurm("sacct", "-n", "-X", "-P", "-j", job, "-o", "Start,End,State")
                .splitlines() if line.strip()]
        assert rows and {row[2] for row in rows} == {"COMPLETED"}, (job, rows)
        spans.append((min(row[0] for row in rows), max(row[1] for row in rows)))
    assert all(spans[k + 1][0] >= spans[k][1] for k in range(len(spans) - 1)), spans
    assert len([n for n in logs if "corpus-test-prepare" in n]) == 6, sorted(logs)
    single = subprocess.run([sys.executable, "-m", "corpus", "build", "--config", config.name, "--output",
                             str(work / "single"), "--no-progress"],
                            cwd=work, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert single.returncode == 0, single.stderr
    got, want = _corpus_deliverables(work / "out"), _corpus_deliverables(work / "single")
    assert "github/github_text_document.docs.jsonl" in got, sorted(got)
    assert got == want and any(k.endswith(".bin") for k in got), sorted(set(got) ^ set(want))
