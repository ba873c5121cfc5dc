"""Shared by the training tests: a tiny corpus, tiny job configs, and a 2-process launcher.

The launcher starts the ranks itself (RANK, WORLD_SIZE, MASTER_ADDR… in each one's environment), the
way srun + hpc.dist do on a cluster, so a test can signal one rank directly (torchrun would not
forward SIGUSR2 to its workers).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent

TINY_MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 128, "tie_word_embeddings": False}


def build_corpus(tmp: Path, tokenizer: Path, seq_length: int = 128) -> Path:
    """The bundled sample documents as a .bin/.idx pair with short samples (many of them): one
    JSON-lines source of the corpus config, no dedup; returns the pair's prefix."""
    cfg = {"output_dir": str(tmp / "corpus"), "tokenizer": str(tokenizer), "dedup": None, "seq_length": seq_length,
           "min_tokens": 8, "workers": 1,
           "sources": [{"name": "corpus", "layout": "jsonl", "lang": "zh", "paths": [str(ROOT / "examples/data/corpus")]}]}
    path = tmp / "corpus.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "corpus", "build", "--config", str(path)], cwd=ROOT,
                         capture_output=True, text=True, env=env())
    assert run.returncode == 0, run.stderr
    prefix = tmp / "corpus" / "corpus" / "corpus_text_document"
    assert prefix.with_suffix(".idx").is_file(), run.stdout + run.stderr
    return prefix


def pretrain_config(tmp: Path, data: Path, tokenizer: Path, out: Path, **over: Any) -> Path:
    cfg = {"data": str(data), "tokenizer": str(tokenizer), "output_dir": str(out), "model_config": TINY_MODEL,
           "seq_length": 128, "cpu": True, "deepspeed": "zero3", "micro_batch_size": 2,
           "gradient_accumulation_steps": 2, "learning_rate": 2e-3, "warmup_steps": 2, "max_steps": 8,
           "save_steps": 4, "logging_steps": 1, "gradient_checkpointing": False, "dataloader_workers": 0,
           "report_to": [], "seed": 7, "eval_samples": 8, "eval_steps": 4, **over}
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", **extra)
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(module: str, config: Path, nproc: int, log_dir: Path, *args: str) -> list[subprocess.Popen]:
    """``nproc`` ranks of ``python -m module --config config``, each logging to log_dir/rank-N.log."""
    port = str(free_port())
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for r in range(nproc):
        rank_env = env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        log = (log_dir / f"rank-{r}.log").open("ab")
        procs.append(subprocess.Popen([sys.executable, "-m", module, "--config", str(config), *args], cwd=ROOT,
                                      env=rank_env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_all(procs: list[subprocess.Popen], log_dir: Path, timeout: float = 600) -> list[int]:
    end = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(end - time.monotonic(), 1)))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"training did not finish in {timeout} s:\n{tail(log_dir)}") from None
    return codes


def run_ranks(module: str, config: Path, nproc: int, log_dir: Path, *args: str, timeout: float = 600) -> list[int]:
    return wait_all(launch(module, config, nproc, log_dir, *args), log_dir, timeout)


def tail(log_dir: Path, n: int = 4000) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}" for p in sorted(log_dir.glob("*.log")))


def wait_for_file(path: Path, procs: list[subprocess.Popen], log_dir: Path, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if any(p.poll() is not None for p in procs):
            raise AssertionError(f"a rank exited before {path} appeared:\n{tail(log_dir)}")
        if time.monotonic() > end:
            raise AssertionError(f"{path} did not appear in {timeout} s:\n{tail(log_dir)}")
        time.sleep(0.2)


def signal_rank(procs: list[subprocess.Popen], r: int, sig: int = signal.SIGUSR2) -> None:
    procs[r].send_signal(sig)


def state_dict(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    tensors: dict[str, Any] = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(f))
    assert tensors, f"no safetensors in {folder}"
    return tensors


def assert_same_weights(a: Path, b: Path) -> None:
    import torch

    sa, sb = state_dict(a), state_dict(b)
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}: " + ", ".join(
        f"{k} max |Δ| {float((sa[k].float() - sb[k].float()).abs().max()):.3g}" for k in different[:3])


def log_records(folder: Path) -> list[dict[str, Any]]:
    """The Trainer's log history of the latest checkpoint under ``folder``."""
    states = sorted(folder.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    return json.loads(states[-1].read_text())["log_history"] if states else []


def tiny_base(folder: Path, tokenizer: Path) -> Path:
    """A tiny LLaMA (random weights) saved as a Hugging Face checkpoint with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from train.tokenizer import load_tokenizer, save_tokenizer

    tok = load_tokenizer(tokenizer)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **TINY_MODEL))
    model.save_pretrained(folder)
    save_tokenizer(tok, folder)
    return folder


def lora_config(tmp: Path, base: Path, out: Path, data: Path | None = None, **over: Any) -> Path:
    """Micro batch 1 × 2 ranks × accumulation 2 over the 10 records that fit cutoff_len: 3 optimizer
    steps per epoch (2 + 2 + 1 batches per rank), so a stop after step 3 resumes inside epoch 1."""
    cfg = {"base": str(base), "data": str(data or ROOT / "examples/data/instructions/en.jsonl"),
           "output_dir": str(out), "cutoff_len": 128, "cpu": True, "deepspeed": "zero3", "lora_r": 4,
           "lora_alpha": 8, "micro_batch_size": 1, "batch_size": 4, "learning_rate": 1e-2, "warmup_steps": 1,
           "max_steps": 6, "save_steps": 3, "logging_steps": 1, "dataloader_workers": 0, "report_to": [],
           "seed": 11, **over}
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path
