"""`python -m hpc.submit`: plans checked before sbatch, our own sbatch scripts, jobs run for real.

The tests without the slurm mark need no cluster (dry runs, validation, local runs); the others
submit to the dev cluster (hpc.devcluster) through the same code the command line uses.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from corpus.plan import run_plan, source_prefix
from corpus.spec import load_corpus_config
from hpc import jobs, submit as hs
from hpc.status import read_registry, registry_path, status
from slurm_down import slurm_down  # noqa: F401  (fixture)
from slurm_fixtures import sacct_state, slurm, slurm_cluster  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "data" / "corpus"
# Spaces and both kinds of quotes: every path and name below must survive sbatch and the shell.
AWKWARD = "it's a \"job\" dir"


def sbatch_options(script: str) -> dict[str, str]:
    """#SBATCH lines as sbatch reads them (it unquotes them like a shell)."""
    opts = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH "):
            (arg,) = shlex.split(line[len("#SBATCH "):])
            key, _, value = arg.partition("=")
            opts[key] = value
    return opts


def scripts(rendered: str) -> list[str]:
    return ["#!/bin/bash" + part for part in rendered.split("#!/bin/bash")[1:]]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = hs.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def job_yaml(tmp_path):
    def make(data: dict, name: str = "job.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path
    return make


@pytest.fixture
def corpus_job(tmp_path, tokenizer_path):
    """The bundled samples split into six files (so there are several shards), and a job config."""
    root = tmp_path / AWKWARD
    inputs = root / "in"
    inputs.mkdir(parents=True)
    for src in sorted(SAMPLES.glob("*.jsonl")):
        lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
        half = len(lines) // 2
        (inputs / f"{src.stem}-0.jsonl").write_text("".join(lines[:half]), encoding="utf-8")
        (inputs / f"{src.stem}-1.jsonl").write_text("".join(lines[half:]), encoding="utf-8")
    # The JSON-lines build: one jsonl source, no steps, no dedup; a build task per file.
    cfg = {"output_dir": str(root / "out"), "tokenizer": str(tokenizer_path), "dedup": None, "shards_per_source": 6,
           "sources": [{"name": "corpus", "layout": "jsonl", "lang": "zh", "paths": [str(inputs)]}]}
    path = root / "corpus job.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def single_build(config: Path, output: Path) -> Path:
    """The same config run here in one task (one shard): the .bin/.idx prefix of its source."""
    cfg = load_corpus_config(config, {"output_dir": str(output), "shards_per_source": 1, "progress": False})
    run_plan(cfg)
    return source_prefix(cfg, cfg.sources[0])


def built_prefix(config: Path) -> Path:
    cfg = load_corpus_config(config)
    return source_prefix(cfg, cfg.sources[0])


def same_bytes(a: str | Path, b: str | Path) -> bool:
    return all(Path(f"{a}{ext}").read_bytes() == Path(f"{b}{ext}").read_bytes() for ext in (".bin", ".idx"))


# ---------------------------------------------------------------------------------------------
# Dry runs: the resource shape of each kind


def test_dry_run_pretrain_on_cama_is_3_nodes_x_8_tasks_x_8_gpus(capsys, job_yaml, tmp_path):
    rc, out, err = run_cli(capsys, "pretrain", "--config", ROOT / "configs/pretrain/cama13b_3x8v100.yaml",
                           "--cluster", "cama_3x8v100", "--dry-run", "--log-folder", tmp_path / "logs")
    assert rc == 0, err
    (script,) = scripts(out)
    opts = sbatch_options(script)
    assert opts["--nodes"] == "3" and opts["--ntasks-per-node"] == "8" and opts["--gpus-per-node"] == "v100:8"
    assert opts["--partition"] == "gpu" and opts["--mem"] == "500G" and opts["--cpus-per-task"] == "8"
    assert opts["--signal"] == "USR2@300" and opts["--time"] == "10080"
    assert "module load cuda/11.7 nccl/2.14" in script and "export HF_HUB_OFFLINE=1" in script
    assert f"export PYTHONPATH={shlex.quote(str(ROOT))}" in script
    assert "srun --unbuffered" in script and "submitit.core._submit" in script
    assert "hpc.dist.setup()" in out and "train.pretrain:main" in out
    assert "export CAMA_MAX_REQUEUES=5" in script  # the profile's requeue limit, for hpc.preempt
    assert not (tmp_path / "logs").exists()  # a dry run writes nothing


@pytest.mark.parametrize("kind, config, nodes, tasks, gpus, mem", [
    ("lora", "configs/lora/cama13b_lora_1x8v100.yaml", "1", "8", "v100:8", "500G"),
    ("recover", "configs/recover/cama_13b.yaml", "1", "1", "v100:1", "64000M"),
])
def test_dry_run_shapes_of_the_other_gpu_kinds(kind, config, nodes, tasks, gpus, mem):
    (script,) = scripts(hs.dry_run(kind, ROOT / config, "cama_3x8v100"))
    opts = sbatch_options(script)
    assert (opts["--nodes"], opts["--ntasks-per-node"], opts["--gpus-per-node"], opts["--mem"]) == (nodes, tasks, gpus, mem)


def test_dry_run_overrides_shape_within_the_partition(job_yaml):
    (script,) = scripts(hs.dry_run("pretrain", ROOT / "configs/tiny/pretrain.yaml", "dev", nodes=2, gpus_per_node=2,
                                   time="0:30:00"))
    opts = sbatch_options(script)
    assert (opts["--nodes"], opts["--ntasks-per-node"], opts["--gpus-per-node"]) == ("2", "2", "v100:2")
    # Each task gets one GPU's share of a node: 16 CPUs / 8 GPUs, 6000M / 8 GPUs.
    assert opts["--time"] == "30" and opts["--cpus-per-task"] == "2" and opts["--mem"] == "1500M"


@pytest.mark.parametrize("kind", ["lora", "pretrain"])
def test_tiny_configs_run_on_the_dev_profile_as_shipped(capsys, kind, tmp_path):
    """No shape flags: the dev partition's default shape (1 node × 2 GPUs) fits the tiny configs'
    batch (LoRA's 4 = micro batch 2 × 2 ranks), where all 8 GPUs of a node would not."""
    rc, out, err = run_cli(capsys, kind, "--config", ROOT / f"configs/tiny/{kind}.yaml", "--dry-run",
                           "--log-folder", tmp_path / "logs")
    assert rc == 0, err
    (script,) = scripts(out)
    opts = sbatch_options(script)
    assert (opts["--nodes"], opts["--ntasks-per-node"], opts["--gpus-per-node"]) == ("1", "2", "v100:2")
    assert (opts["--cpus-per-task"], opts["--mem"]) == ("2", "1500M")
    # The whole dev node is still there when asked for, and then LoRA's batch does not split.
    rc, _, err = run_cli(capsys, kind, "--config", ROOT / f"configs/tiny/{kind}.yaml", "--dry-run",
                         "--gpus-per-node", "8")
    assert (rc, "not a multiple of micro_batch_size × ranks = 2 × 8" in err) == ((2, True) if kind == "lora" else (0, False))


def test_profile_account_qos_and_cpu_partition_reach_sbatch(job_yaml, corpus_job, tmp_path):
    site = {
        "name": "site", "default_partition": "gpu", "cpu_partition": "cpu",
        "partitions": {
            "gpu": {"nodes": 4, "gpus_per_node": 4, "gpu_type": "a100", "cpus_per_node": 32,
                    "mem_per_node": "256G", "account": "lab-gpu", "qos": "high"},
            "cpu": {"nodes": 10, "cpus_per_node": 64, "mem_per_node": "128G", "time_limit": "2:00:00"},
        },
        "python": "/opt/site/venv/bin/python",
    }
    profile = job_yaml(site, "site.yaml")
    gpu = sbatch_options(scripts(hs.dry_run("pretrain", ROOT / "configs/tiny/pretrain.yaml", str(profile)))[0])
    assert (gpu["--account"], gpu["--qos"], gpu["--gpus-per-node"], gpu["--nodes"]) == ("lab-gpu", "high", "a100:4", "4")
    shards, merge = scripts(hs.dry_run("corpus", corpus_job, str(profile)))
    opts = sbatch_options(shards)
    assert opts["--partition"] == "cpu" and "--account" not in opts and opts["--mem"] == "2048M"
    assert opts["--time"] == "120"
    assert "/opt/site/venv/bin/python -u -m submitit.core._submit" in shards


def test_dry_run_corpus_is_an_array_and_a_dependent_mix(corpus_job):
    shards, merge = scripts(hs.dry_run("corpus", corpus_job, "dev"))
    s, m = sbatch_options(shards), sbatch_options(merge)
    assert s["--array"] == "0-5%6"  # the build stage: one task per shard
    assert s["--cpus-per-task"] == "1" and "--gpus-per-node" not in s
    assert "%A_%a_0_log.out" in s["--output"]
    assert m["--dependency"].startswith("afterok:") and m["--kill-on-invalid-dep"] == "yes"
    assert "--array" not in m and m["--job-name"] == "cama-corpus"
    assert s["--time"] == "60"  # the kind's 4 h default, capped by the dev partition's hour


def test_shards_request_sets_the_tasks_of_every_source(tmp_path, corpus_job):
    assert hs.plan("corpus", corpus_job, "dev").steps[0].array == 6
    assert hs.plan("corpus", corpus_job, "dev", hs.Request(shards=3)).steps[0].array == 3
    with pytest.raises(hs.ConfigError, match="build step would be 2000 array tasks"):
        hs.plan("corpus", corpus_job, "dev", hs.Request(shards=2000))


def test_names_and_paths_with_spaces_and_quotes_are_quoted(job_yaml, tmp_path):
    folder = tmp_path / AWKWARD / "logs"
    name = "it's a \"probe\"; rm -rf /"
    rendered = hs.dry_run("probe", job_yaml({"message": "x"}, "my job's config.yaml"), "dev",
                          job_name=name, log_folder=str(folder))
    (script,) = scripts(rendered)
    opts = sbatch_options(script)
    assert opts["--job-name"] == name
    assert opts["--output"].startswith(str(folder) + "/") and opts["--output"].endswith("/%j_0_log.out")
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    argv = shlex.split(srun)
    assert argv[argv.index("--output") + 1].startswith(str(folder) + "/")
    assert argv[-1].startswith(str(folder) + "/")  # submitit's folder argument, one word


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error, exit status 2, nothing submitted (no registry line)


@pytest.mark.parametrize("args, message", [
    (["--partition", "gpu"], "unknown partition 'gpu' in cluster profile 'dev' (it has: debug)"),
    (["--nodes", "4"], "--nodes 4: partition 'debug' has 3 node(s)"),
    (["--gpus-per-node", "9"], "--gpus-per-node 9: partition 'debug' has 8 GPU(s) per node"),
    (["--nodes", "0"], "--nodes: must be >= 1"),
    (["--time", "2:00:00"], "--time 2:00:00 (2:00:00) is longer than partition 'debug' allows (1:00:00)"),
    (["--time", "soon"], "--time: 'soon' is not a Slurm time"),
    (["--cluster", "nope"], "no cluster profile 'nope'"),
    (["--shards", "2"], "--shards: job kind 'probe-dist' is not sharded"),
])
def test_bad_requests_fail_before_submission(capsys, job_yaml, tmp_path, args, message):
    rc, out, err = run_cli(capsys, "probe-dist", "--config", job_yaml({}), "--log-folder", tmp_path / "logs", *args)
    assert rc == 2 and message in err, err
    assert not registry_path(tmp_path / "logs").exists() and out == ""


def test_missing_and_invalid_job_configs_are_named(capsys, job_yaml, corpus_job, tmp_path):
    logs = ["--log-folder", tmp_path / "logs"]
    rc, _, err = run_cli(capsys, "corpus", "--config", tmp_path / "nope.yaml", *logs)
    assert rc == 2 and f"job config file not found: {tmp_path / 'nope.yaml'}" in err
    cfg = yaml.safe_load(corpus_job.read_text())
    rc, _, err = run_cli(capsys, "corpus", "--config", job_yaml({**cfg, "seq_len": 10}), *logs)
    assert rc == 2 and "unknown key 'seq_len'" in err and "job.yaml" in err
    missing = {**cfg, "sources": [{**cfg["sources"][0], "paths": [str(tmp_path / "none")]}]}
    rc, _, err = run_cli(capsys, "corpus", "--config", job_yaml(missing), *logs)
    assert rc == 2 and "sources[0] (corpus)" in err and "none" in err
    rc, _, err = run_cli(capsys, "corpus", "--config", job_yaml({**cfg, "tokenizer": str(tmp_path / "t.model")}), *logs)
    assert rc == 2 and "key 'tokenizer': file not found" in err
    rc, _, err = run_cli(capsys, "corpus", "--config", job_yaml({"input": ["x.jsonl"], "output": "o", "tokenizer": "t"}),
                         *logs)
    assert rc == 2 and "key 'input': a JSON-lines build is now a source" in err
    rc, _, err = run_cli(capsys, "corpus", "--config", job_yaml({**cfg, "workers": 17}), *logs)
    assert rc == 2 and "17 CPUs per task, but partition 'debug' has 16" in err
    rc, _, err = run_cli(capsys, "corpus", "--config", corpus_job, "--nodes", "2", *logs)
    assert rc == 2 and "runs one task per job on one node" in err
    rc, _, err = run_cli(capsys, "probe", "--config", job_yaml({"fail": "yes"}), *logs)
    assert rc == 2 and "key 'fail': expected true or false" in err
    assert not registry_path(tmp_path / "logs").exists()


def test_a_bad_training_config_fails_before_submission(capsys, job_yaml, tmp_path):
    rc, out, err = run_cli(capsys, "pretrain", "--config", job_yaml({"data": "x", "output_dir": "y", "tokenizer": "t",
                                                                     "model": "m", "micro_batch": 4}),
                           "--log-folder", tmp_path / "logs")
    assert rc == 2 and "unknown key 'micro_batch'" in err and out == ""
    rc, out, err = run_cli(capsys, "lora", "--config", job_yaml({"data": "x", "output_dir": "y"}),
                           "--log-folder", tmp_path / "logs")
    assert rc == 2 and "missing required key 'base'" in err
    assert not registry_path(tmp_path / "logs").exists()


def test_every_kind_has_a_resolvable_shape():
    for kind in jobs.KINDS.values():
        assert ":" in kind.entry and (kind.config is None or ":" in kind.config)
        if not kind.gpus:
            assert kind.nodes == 1
    assert set(jobs.public_kinds()) == {"corpus", "pretrain", "lora", "sft", "recover", "pipeline"}
    for kind in jobs.KINDS.values():  # every name in the table resolves
        for ref in (kind.entry, kind.config, kind.planner, kind.loader, kind.view):
            if ref is not None:
                assert jobs.resolve(ref) is not None, ref


def test_set_overrides_and_print_config(capsys, job_yaml, corpus_job, sources_job, tmp_path):
    rc, out, err = run_cli(capsys, "probe", "--config", job_yaml({"message": "from the file"}),
                           "--set", "message=from --set", "--print-config")
    assert rc == 0, err
    assert "message: from --set  # default: hello from hpc.tasks.probe" in out and "fail: false" in out
    assert hs.plan("probe", job_yaml({}), "dev", sets=["sleep_s=2"]).config.sleep_s == 2.0
    rc, _, err = run_cli(capsys, "probe", "--config", job_yaml({}), "--set", "sleep=2")
    assert rc == 2 and "hpc.submit: error: --set sleep=2: unknown key 'sleep' (did you mean 'sleep_s'?" in err
    rc, out, err = run_cli(capsys, "corpus", "--config", corpus_job, "--set", "seq_length=64", "--print-config")
    assert rc == 0 and "seq_length: 64  # default: 1024" in out, err
    # The old kind of the raw-source build names the one it is now.
    rc, _, err = run_cli(capsys, "sources", "--config", sources_job("x.yaml"), "--dry-run")
    assert rc == 2 and "job kind 'sources' is now 'corpus'" in err


def test_no_abbreviated_options(capsys, job_yaml):
    with pytest.raises(SystemExit) as stop:
        hs.main(["probe", "--config", str(job_yaml({})), "--dry"])
    assert stop.value.code == 2 and "unrecognized arguments: --dry" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Without Slurm: the same steps, here


def test_without_sbatch_corpus_runs_locally_and_matches_a_single_build(capsys, corpus_job, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    rc, out, err = run_cli(capsys, "corpus", "--config", corpus_job, "--shards", "3", "--log-folder", tmp_path / "l")
    assert rc == 0, err
    assert "no sbatch/srun on PATH: running corpus here" in err
    assert "samples from corpus" in out
    assert same_bytes(built_prefix(corpus_job), single_build(corpus_job, tmp_path / "single"))
    assert not registry_path(tmp_path / "l").exists()  # nothing went to Slurm


@pytest.fixture
def sources_job(tmp_path, tokenizer_path):
    """configs/tiny/sources.yaml with absolute paths, plus overrides: a raw-source (pipeline) job."""
    def make(name: str = "sources job.yaml", **overrides) -> Path:
        spec = yaml.safe_load((ROOT / "configs" / "tiny" / "sources.yaml").read_text())
        spec.update(tokenizer=str(tokenizer_path), output_dir=str(tmp_path / name / "out"),
                    filters=str(ROOT / spec["filters"]), **overrides)
        for source in spec["sources"]:
            source["paths"] = [str(ROOT / p) for p in source["paths"]]
        path = tmp_path / name / "job.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
        return path
    return make


def _shape(p: hs.Plan) -> list[tuple]:
    return [(s.label, s.array, s.after, s.fn.__name__, s.resources.cpus_per_task) for s in p.steps]


def test_raw_source_plan_is_one_array_job_per_stage(sources_job):
    # Every stage of the plan an array job after the previous one; hpc knows only "task T of stage S".
    assert _shape(hs.plan("corpus", sources_job("a.yaml", workers=2), "dev")) == [
        ("prepare", 8, None, "corpus_task", 1), ("bands", 8, 0, "corpus_task", 1), ("dedup", 8, 1, "corpus_task", 2),
        ("build", 8, 2, "corpus_task", 2), ("mix", None, 3, "corpus_task", 1)]
    sharded = sources_job("b.yaml", workers=2, shards_per_source=3, band_tasks=4)
    assert [s[:2] for s in _shape(hs.plan("corpus", sharded, "dev"))] == [
        ("prepare", 24), ("bands", 32), ("dedup", 8), ("build", 8), ("mix", None)]
    p = hs.plan("corpus", sources_job("c.yaml", dedup={"scope": "global"}, band_tasks=2), "dev", hs.Request(shards=2))
    assert [s[:2] for s in _shape(p)] == [("prepare", 16), ("bands", 2), ("dedup", None), ("build", 8), ("mix", None)]
    assert p.steps[0].calls[3][1:] == ("prepare", 3)
    assert {c[0].shards_per_source for c in p.steps[0].calls} == {2}
    global_job = sources_job("d.yaml", dedup={"scope": "global"}, band_tasks=2)
    prepare, bands, dedup, build, mix = scripts(hs.dry_run("corpus", global_job, "dev"))
    assert sbatch_options(prepare)["--array"] == "0-7%8" and sbatch_options(prepare)["--job-name"] == "cama-corpus-prepare"
    for later in (bands, dedup, build, mix):
        assert sbatch_options(later)["--dependency"].startswith("afterok:")
        assert sbatch_options(later)["--kill-on-invalid-dep"] == "yes"
    too_many = sources_job("e.yaml", shards_per_source=200)
    with pytest.raises(hs.ConfigError, match="prepare step would be 1600 array tasks"):
        hs.plan("corpus", too_many, "dev")


def test_pipeline_local_run_of_every_step_matches_one_process(capsys, sources_job, tmp_path, monkeypatch):
    one = load_corpus_config(sources_job("one.yaml"))
    run_plan(one)
    job = sources_job("many.yaml", shards_per_source=2, shard_records=1, band_tasks=3, dedup={"scope": "global"})
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    rc, out, err = run_cli(capsys, "corpus", "--config", job, "--log-folder", tmp_path / "l")
    assert rc == 0, err
    assert "corpus prepare: done; 16 array tasks" in out and "corpus dedup: done" in out and "corpus mix:" in out
    many = Path(yaml.safe_load(job.read_text())["output_dir"])
    for name in ("baike", "web", "github"):
        for ext in (".bin", ".idx"):
            prefix = f"{name}/{name}_text_document{ext}"
            assert (many / prefix).read_bytes() == (Path(one.output_dir) / prefix).read_bytes()
        assert (many / name / "docs.jsonl").read_bytes() == (Path(one.output_dir) / name / "docs.jsonl").read_bytes()
    for npy in ("blend.mix.dataset_index.npy", "blend.mix.dataset_sample_index.npy"):
        assert (many / npy).read_bytes() == (Path(one.output_dir) / npy).read_bytes()


def test_local_failure_is_an_error_not_a_success(job_yaml):
    with pytest.raises(hs.JobFailed, match="probe failed \\(local run\\): RuntimeError: probe asked to fail: local boom"):
        hs.submit("probe", job_yaml({"fail": True, "message": "local boom"}), "dev", local=True)
    ok = hs.submit("probe", job_yaml({"message": "fine"}), "dev", local=True)
    assert ok.wait()[0][0]["message"] == "fine"


# ---------------------------------------------------------------------------------------------
# A controller that does not answer (tests/slurm_down.py: a real slurm.conf, nothing listening)


def test_submit_with_the_controller_down_names_it_and_submits_nothing(slurm_down, capsys, job_yaml, tmp_path):
    logs = tmp_path / "logs"
    rc, out, err = run_cli(capsys, "probe", "--config", job_yaml({"message": "x"}), "--log-folder", logs)
    assert rc == 2 and out == ""
    assert f"sinfo could not reach slurmctld at {slurm_down.ctld}" in err and "(3 tries over" in err
    assert "--local" in err and not registry_path(logs).exists()


def test_sbatch_retries_a_controller_it_cannot_connect_to_and_says_how_often(slurm_down, job_yaml, tmp_path,
                                                                              monkeypatch):
    monkeypatch.setenv("CAMA_SLURM_TRIES", "4")
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    with pytest.raises(hs.SubmitError) as err:
        hs._sbatch(script)
    # A connect failure proves the request never arrived: sending it again cannot make a second job.
    assert f"sbatch could not reach slurmctld at {slurm_down.ctld}" in str(err.value)
    assert "Unable to contact slurm controller (connect failure) (4 tries over" in str(err.value)


# ---------------------------------------------------------------------------------------------
# On the dev cluster


@pytest.mark.slurm
def test_single_job_with_awkward_name_and_paths(slurm_cluster, capsys, tmp_path):
    config = tmp_path / AWKWARD / "probe job's.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(yaml.safe_dump({"message": "hello 'quoted' \"world\""}))
    logs = tmp_path / AWKWARD / "logs"
    name = f"probe it's \"{uuid.uuid4().hex[:6]}\""
    rc, out, err = run_cli(capsys, "probe", "--config", config, "--job-name", name, "--log-folder", logs, "--follow")
    assert rc == 0, err
    (record,) = read_registry(logs)
    assert f"submitted probe as job {record.job_id}" in out and f"stdout: {record.log_paths()[0]}" in out
    assert "hello 'quoted'" in out
    result = json.loads(out.split("result: ", 1)[1].splitlines()[0])
    assert result["job_name"] == name and result["job_id"] == record.job_id and result["node"] in {"n1", "n2", "n3"}
    assert result["python"] == sys.executable
    assert sacct_state(record.job_id, until=("COMPLETED",)) == "COMPLETED"
    assert "probe: {" in record.log_paths()[0].read_text()
    # The resolved config the job ran with, and the very script sbatch got, are in the job's folder.
    frozen = json.loads((Path(record.folder) / "config.json").read_text())
    assert frozen["kind"] == "probe" and frozen["config"]["message"] == "hello 'quoted' \"world\""
    submitted = (Path(record.folder) / f"{record.job_id}_submission.sh").read_text()
    assert sbatch_options(submitted)["--job-name"] == name and "submitit.core._submit" in submitted


@pytest.mark.slurm
def test_sbatch_accepts_the_rendered_scripts(slurm_cluster, corpus_job, tmp_path):
    """`sbatch --test-only` on what --dry-run prints: the CaMA 3 × 8 GPU shape (on the dev cluster's
    3 × 8 stand-in V100s) and a corpus array."""
    rendered = [*scripts(hs.dry_run("pretrain", ROOT / "configs/tiny/pretrain.yaml", "dev", nodes=3, gpus_per_node=8,
                                    log_folder=str(tmp_path / "logs"))),
                scripts(hs.dry_run("corpus", corpus_job, "dev", log_folder=str(tmp_path / "logs")))[0]]
    for i, text in enumerate(rendered):
        path = tmp_path / f"script-{i}.sh"
        path.write_text(text)
        r = subprocess.run(["sbatch", "--test-only", str(path)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "to start at" in r.stderr, r.stderr
        if i == 0:  # every node, all 16 CPUs of each (8 tasks × 2)
            assert re.search(r"using 48 processors on nodes n\[1-3\]", r.stderr), r.stderr


@pytest.mark.slurm
def test_corpus_array_and_dependent_merge_match_a_single_build(slurm_cluster, corpus_job, tmp_path):
    logs = tmp_path / AWKWARD / "logs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "hpc.submit", "corpus", "--config", str(corpus_job), "--shards", "3",
                        "--log-folder", str(logs), "--follow"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    shards, merge = read_registry(logs)
    assert (shards.step, shards.array, merge.step, merge.after) == ("build", 3, "mix", shards.job_id)
    assert f"as job {shards.job_id} (array of 3 tasks)" in r.stdout and "samples from corpus" in r.stdout
    assert same_bytes(built_prefix(corpus_job), single_build(corpus_job, tmp_path / "single"))
    assert sacct_state(merge.job_id, until=("COMPLETED",)) == "COMPLETED"
    # The merge started only once every shard had ended (afterok).
    # slurmdbd receives job records asynchronously: wait until it lists the three tasks as ended.
    tasks = [f"{shards.job_id}_{i}" for i in range(3)]
    end = time.monotonic() + 20
    while True:
        rows = slurm("sacct", "-n", "-P", "-X", "-j", f"{shards.job_id},{merge.job_id}", "-o", "JobID,State,Start,End")
        table = {row.split("|")[0]: row.split("|")[1:] for row in rows.splitlines()}
        if all(table.get(t, [""])[0] == "COMPLETED" for t in tasks) or time.monotonic() > end:
            break
        time.sleep(0.3)
    assert [table.get(t, ["missing"])[0] for t in tasks] == ["COMPLETED"] * 3, rows
    assert table[merge.job_id][1] >= max(table[f"{shards.job_id}_{i}"][2] for i in range(3))
    # hpc.status sees the array task by task.
    st = status(shards.job_id, logs, tail_lines=5)
    assert st.summary == "COMPLETED×3" and len(st.states) == 3
    assert any("Job completed successfully" in "\n".join(lines or []) for lines in st.logs.values())


@pytest.mark.slurm
def test_failing_array_task_is_a_clear_error_and_cancels_the_merge(slurm_cluster, capsys, corpus_job, tmp_path):
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"this is not a sentencepiece model\n")  # exists, so it passes the checks before sbatch
    cfg = {**yaml.safe_load(corpus_job.read_text()), "tokenizer": str(garbage)}
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(cfg))
    logs = tmp_path / "logs"
    rc, out, err = run_cli(capsys, "corpus", "--config", config, "--shards", "2", "--log-folder", logs, "--follow")
    shards, merge = read_registry(logs)
    assert rc == 1
    assert f"job failed: corpus build (Slurm job {shards.job_id}_0" in err
    assert "(2 of 2 array tasks failed): corpus.tokenizer.TokenizerError:" in err and "not a sentencepiece model" in err
    assert "Traceback" in err and f"Dependent job(s) {merge.job_id} will not run" in err
    assert sacct_state(merge.job_id, until=("CANCELLED",)) == "CANCELLED"
    assert not list(Path(cfg["output_dir"]).rglob("*.bin"))


@pytest.mark.slurm
def test_failing_job_raises_from_the_api(slurm_cluster, job_yaml, tmp_path):
    sub = hs.submit("probe", job_yaml({"fail": True, "message": "cluster boom"}), "dev",
                    log_folder=str(tmp_path / "logs"))
    assert not sub.local and len(sub.job_ids) == 1
    with pytest.raises(hs.JobFailed) as err:
        sub.wait()
    text = str(err.value)
    assert "RuntimeError: probe asked to fail: cluster boom" in text.splitlines()[0]
    assert "hpc/tasks.py" in text  # the job's own traceback
    assert sacct_state(sub.job_ids[0], until=("FAILED",)) == "FAILED"


@pytest.mark.slurm
def test_rejected_request_submits_nothing(slurm_cluster, capsys, job_yaml, tmp_path):
    name = f"never-{uuid.uuid4().hex[:8]}"
    rc, _, err = run_cli(capsys, "probe-dist", "--config", job_yaml({}), "--nodes", "4", "--job-name", name,
                         "--log-folder", tmp_path / "logs")
    assert rc == 2 and "partition 'debug' has 3 node(s)" in err
    assert slurm("squeue", "-h", "-n", name) == ""
    assert slurm("sacct", "-n", "-X", "--name", name, "-S", "now-1hour") == ""


@pytest.mark.slurm
def test_gpu_shaped_job_runs_one_task_per_gpu_with_distributed_env(slurm_cluster, job_yaml, tmp_path):
    sub = hs.submit("probe-dist", job_yaml({}), "dev", nodes=2, gpus_per_node=2, log_folder=str(tmp_path / "l"))
    (ranks,) = sub.wait()[0]
    assert sorted(int(r["rank"]) for r in ranks) == [0, 1, 2, 3]
    assert {r["world_size"] for r in ranks} == {"4"}
    assert len({(r["master_addr"], r["master_port"]) for r in ranks}) == 1
    assert sorted((r["node"], r["local_rank"]) for r in ranks) == sorted(
        (node, str(i)) for node in {r["node"] for r in ranks} for i in range(2))
    assert all(r["cuda_visible_devices"] for r in ranks)
