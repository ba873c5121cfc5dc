"""bench/gpu_check.sh: the one-GPU check runs end to end in its --cpu smoke mode (so it cannot rot where
no GPU is), and the GPU run's job configs are ones the entry points accept, with the GPU settings."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import from_dict
from train.lora import LoraConfig
from train.pretrain import PretrainConfig
from train.sft import SftConfig

ROOT = Path(__file__).resolve().parent.parent


def gpu_check_module():
    sys.path.insert(0, str(ROOT / "bench"))  # gpu_check imports its neighbour train_throughput
    spec = importlib.util.spec_from_file_location("bench_gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_jobs_are_valid_configs_of_a_1b_model_in_bf16_with_zero3_on_the_gpu(tmp_path):
    gc = gpu_check_module()
    jobs = gc.job_configs(gc.SIZES["gpu"], tmp_path, tmp_path / "tokenizer.model", tmp_path / "data" / "random",
                          tmp_path / "records.jsonl", nproc=1, cpu=False)
    pretrain = from_dict(PretrainConfig, jobs["pretrain"], "pretrain")
    lora = from_dict(LoraConfig, jobs["lora"], "lora")
    sft = from_dict(SftConfig, jobs["sft"], "sft")
    for cfg in (pretrain, lora, sft):
        assert (cfg.cpu, cfg.precision, cfg.deepspeed, cfg.gradient_checkpointing) == (False, "bf16", "zero3", False)
        assert cfg.offload == "none" and cfg.peak_tflops is None  # MFU against the GPU's own entry in PEAK_TFLOPS
    assert lora.base == sft.base == str(tmp_path / "pretrain" / "final")  # tuned from the pretraining's export
    assert (lora.data, lora.cutoff_len, lora.batch_size) == (sft.data, sft.cutoff_len, sft.batch_size)
    assert lora.verify_adapter and not (lora.load_in_8bit or lora.load_in_4bit)
    m = pretrain.model_config
    head_dim = m.hidden_size // m.num_attention_heads
    per_layer = (2 * m.hidden_size * m.num_attention_heads * head_dim + 2 * m.hidden_size * m.num_key_value_heads * head_dim
                 + 3 * m.hidden_size * m.intermediate_size)
    assert 0.9e9 < m.num_hidden_layers * per_layer + 2 * 3000 * m.hidden_size < 1.2e9  # "~1B" with the 3000 pieces
    assert (pretrain.seq_length, pretrain.micro_batch_size, m.max_position_embeddings) == (2048, 8, 2048)
    assert gc.launcher(1, "train.pretrain", tmp_path / "p.yaml")[1:6] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m"]


@pytest.mark.slow
def test_the_cpu_smoke_run_writes_every_figure(tmp_path):
    out = tmp_path / "results.json"
    run = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), "--cpu", "--out", str(out), "--workdir",
                          str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHON": sys.executable})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    r = json.loads(out.read_text())
    assert (r["mode"], r["precision"], r["failed"]) == ("cpu", "fp32", [])
    for name in ("pretrain", "lora", "sft"):
        assert r[name]["tokens_per_s_per_gpu"] > 0 and 0 < r[name]["mfu"] < 1, r[name]
        assert r[name]["timed_steps"] == {"pretrain": 6}.get(name, 4), r[name]
    assert r["pretrain"]["params"] > 0
    gen = r["generate_bf16"]
    assert gen["tokens_per_s"] > 0 and gen["new_tokens"] > 0 and gen["timed_batches"] == 1
    assert "8-bit kernels need a CUDA GPU" in r["generate_8bit"]["skipped"]
    assert "generate_8bit: SKIPPED" in run.stdout
    assert r["adapter"]["atol"] == 1e-4 and 0 <= r["adapter"]["max_abs_diff"] <= 1e-4
    assert r["lora"]["adapter_max_abs_diff_in_run"] <= 1e-4
    # The summary names every figure; the big checkpoints are gone, the exports stay (--workdir keeps them).
    for line in ("pretrain", "lora", "sft", "generate_bf16", "generate_8bit", "adapter", "max |Δ|", "tokens/s/GPU"):
        assert line in run.stdout, line
    work = tmp_path / "work"
    assert not list(work.glob("*/checkpoint-*")) and (work / "lora" / "adapter" / "adapter_config.json").is_file()
