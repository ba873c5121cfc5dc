"""LoRA tuning under ZeRO-3 on the CPU (2 processes over gloo): a complete adapter that reproduces the
trained model on its base, resume from a LoRA checkpoint, and the errors before the first step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from train_helpers import (ROOT, assert_same_weights, env, launch, lora_config, run_ranks, signal_rank, tail,
                           tiny_base, wait_all, wait_for_file)

slow = pytest.mark.slow  # real ZeRO-3 tuning; the checks before step one below are fast


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer_path) -> Path:
    return tiny_base(tmp_path_factory.mktemp("base"), tokenizer_path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, base) -> Path:
    tmp = tmp_path_factory.mktemp("lora-ref")
    cfg = lora_config(tmp, base, tmp / "run")
    assert run_ranks("train.lora", cfg, 2, tmp / "logs") == [0, 0], tail(tmp / "logs")
    assert "adapter verified" in tail(tmp / "logs", 10**6)
    return tmp / "run"


@slow
def test_the_saved_adapter_is_complete_and_reproduces_the_trained_logits(reference, base):
    import torch
    from safetensors.torch import load_file

    from train.lora import verify_adapter

    adapter = reference / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert sorted(config["target_modules"]) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    weights = load_file(adapter / "adapter_model.safetensors")
    # 2 layers × 7 modules × (A, B), full shapes (not ZeRO-3's empty partitions), and trained: B ≠ 0.
    assert len(weights) == 28
    a = next(v for k, v in weights.items() if "q_proj.lora_A" in k)
    assert a.shape == (4, 32)
    assert all(float(v.abs().sum()) > 0 for k, v in weights.items() if "lora_B" in k)
    assert verify_adapter(base, adapter) < 1e-4
    # The base by its fingerprint (generate --lora finds it after a move), and the training log.
    from train.base_identity import base_fingerprint

    record = json.loads((adapter / "base_model.json").read_text())
    assert record["fingerprint"] == base_fingerprint(base)["fingerprint"] and record["path"] == str(base.resolve())
    steps = [json.loads(line)["step"] for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))

    # The check has teeth: an adapter with B zeroed no longer reproduces the trained logits.
    broken = reference / "broken-adapter"
    broken.mkdir(exist_ok=True)
    for f in adapter.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    from safetensors.torch import save_file

    save_file({k: torch.zeros_like(v) if "lora_B" in k else v for k, v in weights.items()},
              str(broken / "adapter_model.safetensors"))
    from train.config import TrainError

    with pytest.raises(TrainError, match="does not reproduce the trained model's logits"):
        verify_adapter(base, broken)


@slow
def test_resume_from_a_lora_checkpoint_ends_with_the_same_adapter(tmp_path, base, reference):
    cfg = lora_config(tmp_path, base, tmp_path / "run")
    logs = tmp_path / "logs"
    procs = launch("train.lora", cfg, 2, logs)
    wait_for_file(tmp_path / "run" / "checkpoint-3" / "COMPLETE.json", procs, logs)
    signal_rank(procs, 0)
    assert wait_all(procs, logs) == [0, 0], tail(logs)
    assert "preempted at step" in tail(logs, 10**6)
    assert not (tmp_path / "run" / "adapter").exists()
    assert run_ranks("train.lora", cfg, 2, logs) == [0, 0], tail(logs)
    assert "resuming from" in tail(logs, 10**6)
    assert_same_weights(reference / "adapter", tmp_path / "run" / "adapter")


@slow
def test_lora_on_conversations_trains_the_assistant_turns_only(tmp_path, base):
    """The bundled multi-turn sample (messages and ShareGPT records) on 2 ranks under ZeRO-3: the adapter's
    tokenizer stores the chat template, and the examples it trained on — the probe rows, rebuilt from
    that tokenizer — have labels on the assistant turns (text and EOS) only, cut at cutoff_len."""
    from safetensors.torch import load_file

    from train.chat import IGNORE_INDEX, load_chat_template, tokenize_conversations
    from train.prompts import InstructionDataset, load_template
    from train.tokenizer import load_tokenizer

    data = ROOT / "examples/data/chat/chat.jsonl"
    cfg = lora_config(tmp_path, base, tmp_path / "run", data=data, chat_template="alpaca_chat", max_steps=3,
                      save_steps=3)
    logs = tmp_path / "logs"
    assert run_ranks("train.lora", cfg, 2, logs) == [0, 0], tail(logs)
    assert "adapter verified" in tail(logs, 10**6) and "skipped" not in tail(logs, 10**6)
    adapter = tmp_path / "run" / "adapter"
    template = load_chat_template("alpaca_chat")[0]
    assert json.loads((adapter / "tokenizer_config.json").read_text(encoding="utf-8"))["chat_template"] == template
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert len(losses) == 3 and all(0 < x < 20 for x in losses)

    tok = load_tokenizer(adapter)
    ds = InstructionDataset(data, tok, load_template("alpaca"), cutoff_len=128)
    assert len(ds) == 32 and not ds.skipped
    probe = load_file(str(adapter / "probe.safetensors"))
    for k, (row, mask) in enumerate(zip(probe["input_ids"], probe["attention_mask"])):
        ex = ds[k]
        assert row[mask.bool()].tolist() == ex["input_ids"]
        full = tokenize_conversations(tok, [ds.records[k]["messages"]], cutoff_len=4096)[0]
        answers = [m["content"] for m in ds.records[k]["messages"] if m["role"] == "assistant"]
        trained, whole = [], []
        for labels, out in ((ex["labels"], trained), (full["labels"], whole)):
            for position, label in enumerate(labels):
                if label != IGNORE_INDEX:
                    if not out or out[-1][-1][0] != position - 1:
                        out.append([])
                    out[-1].append((position, label))
        # Uncut, each run of trained tokens is one assistant turn and its EOS; cut, a prefix of those.
        assert [tok.decode([t for _, t in run]) for run in whole] == [a + "</s>" for a in answers]
        assert trained and all(run == whole[j][:len(run)] for j, run in enumerate(trained))
        assert len(ex["input_ids"]) == min(128, len(full["input_ids"]))


def one_process(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "train.lora", "--config", str(cfg)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)


@slow
def test_bad_instruction_data_and_templates_fail_before_training(tmp_path, base):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    run = one_process(lora_config(tmp_path, base, tmp_path / "a", data=empty, deepspeed=None))
    assert run.returncode == 2 and "empty.jsonl" in run.stderr and "Traceback" not in run.stderr, run.stderr[-2000:]

    template = tmp_path / "t.json"
    template.write_text(json.dumps({"prompt_input": "{instruction}\n### Response:", "prompt_no_input": "{instruction}\n### Response:",
                                    "response_split": "### Response:"}))
    run = one_process(lora_config(tmp_path, base, tmp_path / "b", template=str(template), deepspeed=None))
    assert run.returncode == 2 and "t.json" in run.stderr and "{input}" in run.stderr, run.stderr[-2000:]

    run = one_process(lora_config(tmp_path, base, tmp_path / "c", lora_target_modules=["qkv_proj"], deepspeed=None))
    assert run.returncode == 2 and "qkv_proj" in run.stderr, run.stderr[-2000:]

    run = one_process(lora_config(tmp_path, base, tmp_path / "d", load_in_8bit=True))
    assert run.returncode == 2 and "8-/4-bit loading needs a GPU and no DeepSpeed" in run.stderr, run.stderr[-2000:]


def test_a_tokenizer_other_than_the_base_models_is_refused_before_torch(tmp_path):
    """LoRA data is text: the tokenizer a job names must be the one saved with its base model."""
    import yaml

    from common.markers import file_sha256
    from train.config import TrainError
    from train.fingerprint import check_base_tokenizer

    base = tmp_path / "base"
    base.mkdir()
    (base / "tokenizer.model").write_bytes(b"the base's pieces")
    other = tmp_path / "other.model"
    other.write_bytes(b"other pieces")
    same = tmp_path / "same" / "tokenizer.model"
    same.parent.mkdir()
    same.write_bytes(b"the base's pieces")
    assert check_base_tokenizer(None, base) is None                          # the base's own: nothing to compare
    assert check_base_tokenizer(same.parent, base) == file_sha256(same)      # a copy of it is fine
    with pytest.raises(TrainError, match="is not the one saved with the base model"):
        check_base_tokenizer(other, base)

    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({"base": str(base), "data": "d.jsonl", "tokenizer": str(other),
                                   "output_dir": str(tmp_path / "run"), "cpu": True}))
    script = ("import runpy, sys; sys.argv = ['train.lora', '--config', sys.argv[1]]\n"
              "try:\n    runpy.run_module('train.lora', run_name='__main__')\n"
              "except SystemExit as exc:\n    print('torch' in sys.modules); sys.exit(exc.code)\n")
    run = subprocess.run([sys.executable, "-c", script, str(cfg)], cwd=ROOT, env=env(), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"train.lora: error: tokenizer {other} (sha256 {file_sha256(other)})")
    assert str(base / "tokenizer.model") in run.stderr and run.stdout.strip() == "False"


@pytest.mark.parametrize("case", ["missing", "no-config"])
def test_a_missing_base_model_is_named_as_such_before_torch(tmp_path, case):
    """Not "tokenizer not found": the folder the job names as its base is what is missing."""
    import yaml

    base = tmp_path / "pretrain" / "final"
    if case == "no-config":
        base.mkdir(parents=True)
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({"base": str(base), "data": str(ROOT / "examples/data/instructions/en.jsonl"),
                                   "output_dir": str(tmp_path / "run"), "cpu": True}))
    script = ("import runpy, sys; sys.argv = ['train.lora', '--config', sys.argv[1]]\n"
              "try:\n    runpy.run_module('train.lora', run_name='__main__')\n"
              "except SystemExit as exc:\n    print('torch' in sys.modules); sys.exit(exc.code)\n")
    run = subprocess.run([sys.executable, "-c", script, str(cfg)], cwd=ROOT, env=env(), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    expect = (f"the base model folder {base} does not exist" if case == "missing" else
              f"{base} has no config.json: not a Hugging Face checkpoint folder")
    assert run.stderr.strip() == f"train.lora: error: base: {expect}" + run.stderr.strip().split(expect, 1)[1]
    assert "tokenizer" not in run.stderr and run.stdout.strip() == "False"
