"""The main job end to end (hpc.chain): on the dev Slurm cluster as dependent jobs with 2 nodes for
pretraining, then rerun here with every finished stage skipped; bad pipeline configs fail first."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from train_helpers import ROOT, assert_same_weights

CHAIN = ROOT / "configs" / "tiny" / "pipeline.yaml"


def small_pipeline(tmp: Path, **over) -> Path:
    """configs/tiny/pipeline.yaml with short training, writing into tmp/run."""
    cfg = yaml.safe_load(CHAIN.read_text())
    tiny = ROOT / "configs" / "tiny"
    cfg.update(run_dir=str(tmp / "run"),
               tokenizer={"train_from": str(ROOT / "examples/data/corpus"), "vocab_size": 3000})
    for stage in ("corpus", "pretrain", "lora"):
        cfg[stage]["config"] = str(tiny / cfg[stage]["config"])
    cfg["pretrain"].update(max_steps=6, save_steps=3)
    cfg["lora"].update(max_steps=4, save_steps=2)
    cfg["generate"].update(cases=str(ROOT / "examples/cases/general.jsonl"), max_new_tokens=8)
    cfg.update(over)
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.slurm
@pytest.mark.slow
def test_pipeline_on_slurm_as_dependent_jobs_then_rerun_here_skips_every_stage(slurm_cluster, tmp_path):
    from hpc import chain, submit
    from slurm_fixtures import sacct_state, slurm

    config = small_pipeline(tmp_path, slurm={"pretrain": {"nodes": 2, "gpus_per_node": 1},
                                             "lora": {"nodes": 1, "gpus_per_node": 1},
                                             "corpus": {"shards": 2}})
    sub = submit.submit("pipeline", config, "dev", log_folder=str(tmp_path / "logs"))
    labels = [s.step.label for s in sub.steps]
    assert labels == ["tokenizer", "corpus-shards", "corpus", "pretrain", "lora", "recover", "generate", "report"]
    results = sub.wait()
    run = tmp_path / "run"
    cfg = chain.load_chain_config(config)
    markers = {s: json.loads(chain.marker_path(cfg, s).read_text()) for s in chain.STAGES}
    # Every stage ran in its own Slurm job, in order.
    job_ids = [markers[s]["job_id"] for s in chain.STAGES]
    assert all(job_ids) and len(set(job_ids)) == len(job_ids)
    pretrain_job = sub.steps[labels.index("pretrain")].job_id
    sacct_state(pretrain_job, until=["COMPLETED"])
    assert slurm("sacct", "-n", "-X", "-P", "-j", pretrain_job, "-o", "NNodes").split() == ["2"]
    ranks = results[labels.index("pretrain")][0]
    assert isinstance(ranks, list) and len(ranks) == 2  # one result per rank, each on its own node
    # The restored model is the tuned one, bit for bit (checked against the diff's manifest by the
    # stage, and here tensor by tensor); the report shows the plots and the samples.
    assert markers["recover"]["result"]["verified"]["matches"] == ["tuned"]
    assert_same_weights(run / "tuned", run / "restored")
    page = (run / "report.md").read_text(encoding="utf-8")
    assert "![loss and throughput](report-training.png)" in page and (run / "report-training.png").stat().st_size > 5000
    assert "![sample lengths](report-corpus-lengths.png)" in page
    generations = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    assert len(generations) == 12 and all(g["finish"] in ("eos", "length") for g in generations)

    # Here, without Slurm: every stage is complete, so nothing runs again.
    started = time.monotonic()
    again = chain.run_local(cfg)
    assert [r["skipped"] for r in again] == [True] * len(chain.STAGES)
    assert time.monotonic() - started < 30

    # One stage alone: drop its marker and only it runs again.
    chain.marker_path(cfg, "generate").unlink()
    again = chain.run_local(cfg)
    assert [r["stage"] for r in again if not r["skipped"]] == ["generate"]


def test_bad_pipeline_configs_fail_before_anything_runs(tmp_path):
    from common.config import ConfigError
    from hpc import chain, submit

    bad = small_pipeline(tmp_path, pretrain={"config": str(ROOT / "configs/tiny/pretrain.yaml"), "max_step": 3})
    with pytest.raises(ConfigError, match=r"pretrain \(.*pretrain.yaml\): unknown key 'max_step'"):
        chain.load_chain_config(bad)
    bad = small_pipeline(tmp_path, slurm={"pretrain": {"nodez": 2}})
    with pytest.raises(ConfigError, match="slurm': pretrain: unknown key 'nodez'"):
        chain.load_chain_config(bad)
    bad = small_pipeline(tmp_path, generate={"cases": str(ROOT / "examples/cases/general.jsonl"), "top_p": 1.5})
    with pytest.raises(Exception, match="top_p"):
        chain.load_chain_config(bad)
    with pytest.raises(ConfigError, match="own shapes"):
        submit.plan("pipeline", small_pipeline(tmp_path), "dev", submit.Request(nodes=2))
    assert not (tmp_path / "run").exists()


def test_a_batch_that_does_not_split_over_the_ranks_is_refused_at_planning(tmp_path):
    from common.config import ConfigError
    from hpc import submit

    # LoRA's batch 4 over micro batch 2 × 8 ranks (a full dev-cluster node) cannot be split.
    config = small_pipeline(tmp_path, slurm={"lora": {"nodes": 1, "gpus_per_node": 8}})
    with pytest.raises(ConfigError, match=r"lora stage: batch_size 4 is not a multiple of micro_batch_size × ranks = 2 × 8"):
        submit.plan("pipeline", config, "dev")
    assert submit.plan("pipeline", small_pipeline(tmp_path, slurm={"lora": {"nodes": 1, "gpus_per_node": 2}}), "dev")
