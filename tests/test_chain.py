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
    for stage in ("corpus", "pretrain", "lora", "sft"):
        cfg[stage]["config"] = str(tiny / cfg[stage]["config"])
    cfg["pretrain"].update(max_steps=6, save_steps=3)
    cfg["lora"].update(max_steps=4, save_steps=2)
    cfg["sft"].update(max_steps=4, save_steps=2)
    cfg["generate"].update(cases=str(ROOT / "examples/cases/general.jsonl"), max_new_tokens=8)
    cfg.update(over)
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.slurm
@pytest.mark.slow
def test_pipeline_on_slurm_as_dependent_jobs_then_rerun_here_skips_every_stage(slurm_cluster, tmp_path):
    from hpc import submit
    from hpc.chain import config as chain_config, markers, stages
    from slurm_fixtures import sacct_state, slurm

    config = small_pipeline(tmp_path, slurm={"pretrain": {"nodes": 2, "gpus_per_node": 1},
                                             "lora": {"nodes": 1, "gpus_per_node": 1},
                                             "corpus": {"shards": 2}})
    sub = submit.submit("pipeline", config, "dev", log_folder=str(tmp_path / "logs"))
    labels = [s.step.label for s in sub.steps]
    # The corpus plan's stages (raw sources, global dedup, 2 tasks a source) as array jobs, then its mix.
    assert labels == ["tokenizer", "corpus-prepare", "corpus-bands", "corpus-dedup", "corpus-build", "corpus",
                      "pretrain", "lora", "recover", "generate", "report"]
    results = sub.wait()
    run = tmp_path / "run"
    cfg = chain_config.load_chain(config)
    done = {s: json.loads(markers.marker_path(run, s).read_text()) for s in markers.STAGES}
    # Every stage ran in its own Slurm job, in order.
    job_ids = [done[s]["job_id"] for s in markers.STAGES]
    assert all(job_ids) and len(set(job_ids)) == len(job_ids)
    pretrain_job = sub.steps[labels.index("pretrain")].job_id
    sacct_state(pretrain_job, until=["COMPLETED"])
    assert slurm("sacct", "-n", "-X", "-P", "-j", pretrain_job, "-o", "NNodes").split() == ["2"]
    ranks = results[labels.index("pretrain")][0]
    assert isinstance(ranks, list) and len(ranks) == 2  # one result per rank, each on its own node
    # The restored model is the tuned one, bit for bit (checked against the diff's manifest by the
    # stage, and here tensor by tensor); the report shows the plots and the samples.
    assert done["recover"]["result"]["verified"]["matches"] == ["tuned"]
    assert_same_weights(run / "tuned", run / "restored")
    page = (run / "report.md").read_text(encoding="utf-8")
    assert "![loss and throughput](report-training.png)" in page and (run / "report-training.png").stat().st_size > 5000
    assert "![sample lengths](report-corpus-lengths.png)" in page
    generations = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    assert len(generations) == 12 and all(g["finish"] in ("eos", "length") for g in generations)

    # Here, without Slurm: every stage is complete, so nothing runs again.
    started = time.monotonic()
    again = stages.run_local(cfg)
    assert [r["skipped"] for r in again] == [True] * len(markers.STAGES)
    assert time.monotonic() - started < 30

    # One stage alone: drop its marker and only it runs again.
    markers.marker_path(run, "generate").unlink()
    again = stages.run_local(cfg)
    assert [r["stage"] for r in again if not r["skipped"]] == ["generate"]


def test_bad_pipeline_configs_fail_before_anything_runs(tmp_path):
    from common.config import ConfigError
    from hpc import submit
    from hpc.chain.config import load_chain

    # An override typo in pipeline.yaml is pipeline.yaml's, with the key path; the stage's file is fine.
    bad = small_pipeline(tmp_path, pretrain={"config": str(ROOT / "configs/tiny/pretrain.yaml"), "max_step": 3})
    with pytest.raises(ConfigError, match=r"pipeline\.yaml: pretrain: unknown key 'max_step' \(did you mean 'max_steps'") as err:
        load_chain(bad)
    assert "configs/tiny/pretrain.yaml" not in str(err.value)
    bad = small_pipeline(tmp_path, corpus={"config": str(ROOT / "configs/tiny/corpus.yaml"), "seq_length": "long"})
    with pytest.raises(ConfigError, match=r"pipeline\.yaml: corpus: key 'seq_length': expected an integer"):
        load_chain(bad)
    # A typo in the stage's own file is that file's.
    stage_file = tmp_path / "my pretrain.yaml"
    stage_file.write_text((ROOT / "configs/tiny/pretrain.yaml").read_text() + "warmup_stepz: 2\n", encoding="utf-8")
    bad = small_pipeline(tmp_path, pretrain={"config": str(stage_file), "max_steps": 3})
    with pytest.raises(ConfigError, match=r"my pretrain\.yaml: unknown key 'warmup_stepz'"):
        load_chain(bad)
    bad = small_pipeline(tmp_path, slurm={"pretrain": {"nodez": 2}})
    with pytest.raises(ConfigError, match="slurm': pretrain: unknown key 'nodez'"):
        load_chain(bad)
    bad = small_pipeline(tmp_path, recover={"diff_dtyp": "float16"})
    with pytest.raises(ConfigError, match=r"pipeline\.yaml: recover: unknown key 'diff_dtyp' \(did you mean 'diff_dtype'"):
        load_chain(bad)
    bad = small_pipeline(tmp_path, generate={"cases": str(ROOT / "examples/cases/general.jsonl"), "top_p": 1.5})
    with pytest.raises(Exception, match="top_p"):
        load_chain(bad)
    with pytest.raises(ConfigError, match="own shapes"):
        submit.plan("pipeline", small_pipeline(tmp_path), "dev", submit.Request(nodes=2))
    assert not (tmp_path / "run").exists()


def test_set_overrides_a_stage_and_a_typo_in_it_is_named(tmp_path):
    from common.config import ConfigError
    from hpc.chain.config import load_chain, stage_config

    path = small_pipeline(tmp_path)
    chain = load_chain(path, ["pretrain.max_steps=2", "corpus.min_tokens=5"])
    assert stage_config(chain, "pretrain").max_steps == 2 and stage_config(chain, "corpus").min_tokens == 5
    with pytest.raises(ConfigError, match=r"pretrain: unknown key 'max_stepz'"):
        load_chain(path, ["pretrain.max_stepz=2"])


def test_each_job_runs_with_the_configs_frozen_at_submission(tmp_path, monkeypatch):
    """Planning resolves every stage's config; editing the stage YAML afterwards changes nothing
    for the submitted jobs: they rebuild the config from the frozen copy in their pickle."""
    import pickle

    from hpc import submit
    from hpc.chain import markers
    from hpc.chain.config import stage_config

    corpus_yaml = tmp_path / "corpus.yaml"
    corpus_yaml.write_text((ROOT / "configs/tiny/corpus.yaml").read_text(), encoding="utf-8")
    tokenizer = tmp_path / "run" / "tokenizer.model"
    config = small_pipeline(tmp_path, corpus={"config": str(corpus_yaml), "seq_length": 64, "min_tokens": 8})
    p = submit.plan("pipeline", config, "dev", submit.Request(log_folder=str(tmp_path / "logs")))
    # After submission: the stage file and the pipeline change under the jobs' feet.
    corpus_yaml.write_text(corpus_yaml.read_text().replace("seq_length: 1024", "seq_length: 999") + "min_tokenz: 1\n")
    config.write_text(config.read_text().replace("seq_length: 64", "seq_length: 32"))
    # The corpus plan's stages (a JSON-lines build: build, then the mix) are the chain's corpus steps.
    tokenizer_step, build_step, corpus_step = p.steps[0], p.steps[1], p.steps[2]
    assert (build_step.label, corpus_step.label) == ("corpus-build", "corpus")
    (args,) = corpus_step.calls
    chain = pickle.loads(pickle.dumps(args[1]))  # what the job unpickles
    assert stage_config(chain, "corpus").seq_length == 64
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    for step in (tokenizer_step, build_step, corpus_step):
        step.fn(*step.calls[0], **step.local_kwargs)
    built = json.loads((tmp_path / "run" / "corpus" / "report.json").read_text())
    assert built["config"]["seq_length"] == 64
    assert markers.read(tmp_path / "run", "corpus")["result"]["samples"] == built["mix"]["samples"] > 0
    assert tokenizer.is_file()


def test_a_batch_that_does_not_split_over_the_ranks_is_refused_at_planning(tmp_path):
    from common.config import ConfigError
    from hpc import submit

    # LoRA's batch 4 over micro batch 2 × 8 ranks (a full dev-cluster node) cannot be split.
    config = small_pipeline(tmp_path, slurm={"lora": {"nodes": 1, "gpus_per_node": 8}})
    with pytest.raises(ConfigError, match=r"lora stage: batch_size 4 is not a multiple of micro_batch_size × ranks = 2 × 8"):
        submit.plan("pipeline", config, "dev")
    assert submit.plan("pipeline", small_pipeline(tmp_path, slurm={"lora": {"nodes": 1, "gpus_per_node": 2}}), "dev")


# --- tuning: full (the sft stage instead of LoRA) ---------------------------------------------------


def test_full_tuning_plans_the_sft_stage_in_loras_place_and_bad_tuning_configs_fail_first(tmp_path):
    from common.config import ConfigError
    from hpc import submit
    from hpc.chain.config import load_chain, resolved

    p = submit.plan("pipeline", small_pipeline(tmp_path, tuning="full"), "dev")
    labels = [s.label for s in p.steps]
    assert labels == ["tokenizer", "corpus-prepare", "corpus-bands", "corpus-dedup", "corpus-build", "corpus",
                      "pretrain", "sft", "recover", "generate", "report"]
    sft = p.steps[labels.index("sft")]
    assert (sft.resources.nodes, sft.resources.tasks) == (2, 2)   # pipeline.yaml's slurm: sft shape
    chain = p.config
    assert chain.stages[3] == "sft" and chain.lora is None
    cfg = resolved(chain).sft
    assert (cfg.base, cfg.output_dir, cfg.max_steps) == \
        (str(tmp_path / "run/pretrain/final"), str(tmp_path / "run/sft"), 4)
    # The default stays LoRA, and its plan is what it was.
    lora = load_chain(small_pipeline(tmp_path))
    assert lora.tuning == "lora" and "lora" in lora.stages and lora.sft is None

    with pytest.raises(ConfigError, match=r"pipeline\.yaml: key 'tuning': 'fulll' is not one of lora, full"):
        load_chain(small_pipeline(tmp_path, tuning="fulll"))
    no_sft = small_pipeline(tmp_path, tuning="full")
    values = yaml.safe_load(no_sft.read_text())
    del values["sft"]
    no_sft.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match=r"key 'sft': missing, and tuning: full runs the sft stage"):
        load_chain(no_sft)
    with pytest.raises(ConfigError, match=r"pipeline\.yaml \(with --set sft\.lora_r=8\): sft: unknown key 'lora_r'"):
        load_chain(small_pipeline(tmp_path, tuning="full"), ["sft.lora_r=8"])
    # batch 4 over micro batch 2 × 8 ranks: refused at planning, as for LoRA.
    wide = small_pipeline(tmp_path, tuning="full", slurm={"sft": {"gpus_per_node": 8}})
    with pytest.raises(ConfigError, match=r"sft stage: batch_size 4 is not a multiple of micro_batch_size × ranks = 2 × 8"):
        submit.plan("pipeline", wide, "dev")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_pipeline_with_full_tuning_publishes_the_sft_model_as_a_diff_and_restores_it_bit_exact(tmp_path):
    """Here, stage after stage (the Slurm side of the chain is the LoRA test's above): the sft stage tunes
    every weight of the pretrained model, and recover diffs that model against it (no merge)."""
    from hpc.chain import markers, stages
    from hpc.chain.config import load_chain
    from train_helpers import state_dict

    chain = load_chain(small_pipeline(tmp_path, tuning="full"))
    results = stages.run_local(chain)
    assert [r["stage"] for r in results] == list(markers.stages_for("full"))
    run = tmp_path / "run"
    sft = markers.read(run, "sft")["result"]
    assert sft["status"] == "completed" and sft["step"] == 4 and sft["export"] == str(run / "sft" / "final")
    recover = markers.read(run, "recover")["result"]
    assert recover["merged"] is None and recover["verified"]["matches"] == ["tuned"]
    assert_same_weights(run / "sft" / "final", run / "restored")
    tuned, base = state_dict(run / "sft" / "final"), state_dict(run / "pretrain" / "final")
    import torch

    assert tuned.keys() == base.keys() and not [k for k in base if torch.equal(tuned[k], base[k])]
    assert not (run / "lora").exists() and not (run / "tuned").exists()
    page = (run / "report.md").read_text(encoding="utf-8")
    assert "| sft |" in page and "| lora |" not in page and "- sft: 4 logged steps" in page
    assert f"`{run / 'sft' / 'final'}`" in page
    generations = [json.loads(line) for line in (run / "generations.jsonl").read_text().splitlines()]
    assert len(generations) == 12
    again = stages.run_local(chain)
    assert [r["skipped"] for r in again] == [True] * len(markers.STAGES)
