"""The recover job kind: its configs load into ApplyConfig, and hpc.submit runs apply (+ merge) on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from common.config import ConfigError, load_config
from hpc import jobs, submit as hs
from recover.apply import ApplyConfig
from recover.diff import MakeDiffConfig, make_diff
from test_recover_lib import assert_bitwise_equal, read_all, save, tiny_model, tuned_from

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "recover").glob("*.yaml")) + [ROOT / "configs" / "tiny" / "recover.yaml"],
                         ids=lambda p: p.name)
def test_bundled_configs_load(path):
    cfg = jobs.load_job_config(jobs.KINDS["recover"], path)
    assert isinstance(cfg, ApplyConfig) and cfg.raw and cfg.diff and cfg.out


def test_bad_job_config_fails_before_submission(tmp_path):
    bad = tmp_path / "job.yaml"
    bad.write_text(yaml.safe_dump({"raw": "r", "diff": "d", "out": "o", "merge_lora": "adapter"}))
    with pytest.raises(ConfigError, match="merge_lora needs merge_out"):
        jobs.load_job_config(jobs.KINDS["recover"], bad)
    bad.write_text(yaml.safe_dump({"raw": "r", "diff": "d"}))
    with pytest.raises(ConfigError, match="missing required key 'out'"):
        load_config(ApplyConfig, bad)


def published(tmp_path: Path, tokenizer_path: Path) -> None:
    """tmp_path/raw, tmp_path/tuned (float16, with the tokenizer) and tmp_path/diff between them."""
    raw = tiny_model(0, torch.float16)
    save(raw, tmp_path / "raw", tokenizer_path)
    save(tuned_from(raw), tmp_path / "tuned", tokenizer_path)
    make_diff(MakeDiffConfig(raw=str(tmp_path / "raw"), tuned=str(tmp_path / "tuned"), out=str(tmp_path / "diff"),
                             progress=False))


def test_hpc_submit_runs_apply_here_without_slurm(tmp_path, tokenizer_path, monkeypatch):
    published(tmp_path, tokenizer_path)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"raw": str(tmp_path / "raw"), "diff": str(tmp_path / "diff"),
                                   "out": str(tmp_path / "out"), "progress": False}))
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    sub = hs.submit("recover", job, "dev", log_folder=str(tmp_path / "logs"))
    (result,) = sub.wait()[0]
    assert result["command"] == "apply" and result["checked"]["tuned_sha256"]
    assert_bitwise_equal(read_all(tmp_path / "out"), read_all(tmp_path / "tuned"))


@pytest.mark.slurm
def test_recover_runs_on_the_cluster_by_script_and_by_hpc_submit(slurm_cluster, tmp_path, tokenizer_path):
    """slurm/recover_gpu.sh with the real entry point (no CAMA_ENTRY), and hpc.submit's recover kind with
    a LoRA merge after the apply: both on a dev-cluster node, on its CPU."""
    from test_slurm_scripts import sbatch, sbatch_env

    published(tmp_path, tokenizer_path)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"raw": str(tmp_path / "raw"), "diff": str(tmp_path / "diff"),
                                   "out": str(tmp_path / "by-script"), "progress": False}))
    (tmp_path / "logs").mkdir()
    # --mem: the script asks for a CaMA GPU's share (64000M), more than a dev node has.
    r = sbatch("--wait", "--gpus-per-node=1", "--cpus-per-task=1", "--mem=3000M", "--time=5", f"--chdir={tmp_path}",
               str(ROOT / "slurm" / "recover_gpu.sh"), str(job), env=sbatch_env(), timeout=300)
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.out"))
    assert r.returncode == 0, r.stderr + logs
    assert_bitwise_equal(read_all(tmp_path / "by-script"), read_all(tmp_path / "tuned"))

    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(tmp_path / "tuned", dtype=torch.float32)
    torch.manual_seed(3)
    adapter = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    for name, p in adapter.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    adapter.save_pretrained(tmp_path / "adapter")
    job.write_text(yaml.safe_dump({"raw": str(tmp_path / "raw"), "diff": str(tmp_path / "diff"),
                                   "out": str(tmp_path / "by-submit"), "merge_lora": str(tmp_path / "adapter"),
                                   "merge_out": str(tmp_path / "merged"), "device": "cpu", "progress": False}))
    sub = hs.submit("recover", job, "dev", log_folder=str(tmp_path / "submitit"))
    (result,) = sub.wait()[0]
    assert_bitwise_equal(read_all(tmp_path / "by-submit"), read_all(tmp_path / "tuned"))
    assert (tmp_path / "merged" / "config.json").exists()
    assert "merge" in str(result)
