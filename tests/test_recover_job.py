"""The recover job kind: its configs load into ApplyConfig, and hpc.submit runs apply (+ merge) on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from corpus.config import ConfigError, load_config
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


def test_hpc_submit_runs_apply_here_without_slurm(tmp_path, tokenizer_path, monkeypatch):
    raw = tiny_model(0, torch.float16)
    save(raw, tmp_path / "raw", tokenizer_path)
    save(tuned_from(raw), tmp_path / "tuned", tokenizer_path)
    make_diff(MakeDiffConfig(raw=str(tmp_path / "raw"), tuned=str(tmp_path / "tuned"), out=str(tmp_path / "diff"),
                             progress=False))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"raw": str(tmp_path / "raw"), "diff": str(tmp_path / "diff"),
                                   "out": str(tmp_path / "out"), "progress": False}))
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    sub = hs.submit("recover", job, "dev", log_folder=str(tmp_path / "logs"))
    (result,) = sub.wait()[0]
    assert result["command"] == "apply" and result["checked"]["tuned_sha256"]
    assert_bitwise_equal(read_all(tmp_path / "out"), read_all(tmp_path / "tuned"))
