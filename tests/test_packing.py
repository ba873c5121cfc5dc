"""Packing for instruction tuning (train.packing): the packs, and that no example attends to another.

The exactness tests run a tiny LLaMA on the CPU in fp32 through the inputs the Trainer hands the model
(``PackingCollator.model_inputs``): every example's logits inside a packed batch equal its logits run
alone, the packed loss and gradients equal the unpacked ones, and the same checks fail when the
packed path is switched off (a 2-D mask, a KV cache) — so they can tell. Then a 2-rank ZeRO-3 LoRA run
with packing completes, counts real tokens only, and resumes to the same adapter.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from train.packing import IGNORE_INDEX, PackedDataset, PackingCollator, pack
from train_helpers import (ROOT, TINY_MODEL, assert_same_weights, launch, lora_config, run_ranks, signal_rank,
                           tail, tiny_base, wait_all, wait_for_file)

slow = pytest.mark.slow
INSTRUCTIONS = ROOT / "examples" / "data" / "instructions"


# --------------------------------------------------------------------------------------------
# The packs


def test_best_fit_decreasing_puts_each_example_into_the_fullest_pack_it_fits():
    #            0   1   2   3   4   5   6
    lengths = [60, 50, 40, 30, 20, 10, 45]
    # 60 → A; 50 → B (no room in A); 45 → B (95: fuller than a new pack); 40 → A (100); 30 → C;
    # 20 → C (50); 10 → C (60), the only pack left with room.
    assert pack(lengths, 100) == [[0, 2], [1, 6], [3, 4, 5]]
    assert pack([30, 30, 71, 69], 100) == [[2], [3, 0], [1]]  # 30 into 69's pack (31 free), not 71's (29)
    assert pack([5, 5, 5], 5) == [[0], [1], [2]]
    assert pack([], 8) == []
    with pytest.raises(ValueError, match="example 1 has 9 tokens"):
        pack([3, 9], 8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 64), max_size=200), st.integers(64, 160))
def test_packs_partition_the_examples_fit_and_waste_little(lengths, capacity):
    packs = pack(lengths, capacity)
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    loads = [sum(lengths[i] for i in p) for p in packs]
    assert all(load <= capacity for load in loads)
    # Any-fit packing opens a pack only for an example that fits no open one: so at most one pack is
    # at most half full, and there are fewer than 2 × tokens / capacity + 1 packs.
    assert sum(load <= capacity / 2 for load in loads) <= 1
    assert len(packs) <= 2 * sum(lengths) / capacity + 1
    assert pack(list(lengths), capacity) == packs  # deterministic


class _Examples:
    def __init__(self, examples):
        self.examples = examples

    @property
    def lengths(self):
        return np.array([len(e["input_ids"]) for e in self.examples])

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]


def test_a_packed_sequence_restarts_positions_and_never_predicts_the_next_examples_first_token():
    a = {"input_ids": [1, 11, 12, 13, 2], "labels": [-100, -100, 12, 13, 2]}
    b = {"input_ids": [1, 21, 22, 2], "labels": [1, 21, 22, 2]}          # train_on_inputs: every label set
    c = {"input_ids": [1, 31, 2], "labels": [-100, 31, 2]}
    ds = PackedDataset(_Examples([a, b, c]), 9)
    assert ds.packs == [[0, 1], [2]] and ds.lengths.tolist() == [9, 3] and ds.num_examples == 3
    row = ds[0]
    assert row["input_ids"] == [1, 11, 12, 13, 2, 1, 21, 22, 2]
    assert row["position_ids"] == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    assert row["labels"] == [-100, -100, 12, 13, 2, -100, 21, 22, 2]
    # The model predicts labels[t + 1] at t: a's last token (EOS) predicts nothing, not b's BOS.
    shifted = row["labels"][1:] + [-100]
    assert shifted[4] == IGNORE_INDEX
    assert ds.attention_length == round((25 + 16 + 9) / 12)

    batch = PackingCollator(pad_id=0)([ds[0], ds[1]])
    assert batch["input_ids"].tolist() == [row["input_ids"], [1, 31, 2, 0, 0, 0, 0, 0, 0]]
    assert batch["labels"][1].tolist() == [-100, 31, 2] + [-100] * 6
    assert batch["position_ids"][1].tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5]  # padding: a run of its own
    assert batch["attention_mask"].sum().item() == 12                        # real tokens, for counting
    inputs = PackingCollator.model_inputs(batch)
    assert "attention_mask" not in inputs and inputs["use_cache"] is False
    flat = PackingCollator.model_inputs(batch, "flash_attention_2")  # varlen: one row, real tokens only
    assert flat["input_ids"].tolist() == [row["input_ids"] + [1, 31, 2]]
    assert flat["position_ids"].tolist() == [row["position_ids"] + [0, 1, 2]]


# --------------------------------------------------------------------------------------------
# No attention across examples, for a tiny LLaMA on the CPU


@pytest.fixture(scope="module")
def tokenizer(tokenizer_path):
    from train.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer_path)


@pytest.fixture(scope="module")
def examples(tokenizer):
    from train.prompts import InstructionDataset, load_template

    template = load_template("alpaca")
    both = [InstructionDataset(INSTRUCTIONS / f"{lang}.jsonl", tokenizer, template, 512, train_on_inputs=lang == "zh")
            for lang in ("en", "zh")]
    return _Examples(both[0].examples[:7] + both[1].examples[:7])


def tiny_llama(tokenizer, attn_implementation: str):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), **{**TINY_MODEL, "max_position_embeddings": 512})
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation, dtype=torch.float32)
    assert model.config.use_cache  # the default: model_inputs must switch the cache off itself
    return model.eval()


@pytest.mark.parametrize("layout", ["sdpa", "eager", "sdpa-one-row"])
def test_each_example_in_a_packed_batch_has_the_logits_it_has_alone(tokenizer, examples, layout):
    import torch

    model = tiny_llama(tokenizer, layout.split("-")[0])
    packed = PackedDataset(examples, 400)
    assert len(packed) < len(examples) and max(len(p) for p in packed.packs) >= 3
    collate = PackingCollator(pad_id=tokenizer.pad_token_id)
    rows = list(range(len(packed)))
    batch = collate([packed[i] for i in rows])
    # "sdpa-one-row" is the flash-attention layout (one row of real tokens) run through sdpa.
    inputs = collate.model_inputs(batch, "flash_attention_2" if layout.endswith("one-row") else layout)
    with torch.no_grad():
        logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits
        if layout.endswith("one-row"):
            logits = torch.zeros(*batch["input_ids"].shape, logits.shape[-1]).masked_scatter(
                batch["attention_mask"].bool()[..., None], logits[0])
        worst = 0.0
        for r in rows:
            offset = 0
            for j in packed.examples(r):
                ids = torch.tensor(examples[j]["input_ids"])[None]
                alone = model(input_ids=ids).logits[0]
                here = logits[r, offset:offset + ids.shape[1]]
                worst = max(worst, float((here - alone).abs().max()))
                offset += ids.shape[1]
        assert worst < 1e-5, worst

        # The check can tell: with the 2-D mask (or a KV cache) the later examples see the earlier ones.
        for leaky in ({**inputs, "use_cache": True},
                      {**collate.model_inputs(batch, layout), "attention_mask": batch["attention_mask"]}):
            if layout.endswith("one-row") and "attention_mask" in leaky:
                continue
            out = model(**{k: v for k, v in leaky.items() if k != "labels"}).logits
            r = next(r for r in rows if len(packed.examples(r)) > 1)
            first, second = packed.examples(r)[:2]
            n, m = len(examples[first]["input_ids"]), len(examples[second]["input_ids"])
            alone = model(input_ids=torch.tensor(examples[second]["input_ids"])[None]).logits[0]
            if out.shape[0] == 1 and layout.endswith("one-row"):
                out = torch.zeros(*batch["input_ids"].shape, out.shape[-1]).masked_scatter(
                    batch["attention_mask"].bool()[..., None], out[0])
            assert float((out[r, n:n + m] - alone).abs().max()) > 1e-3


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_the_packed_loss_and_gradients_are_the_unpacked_ones(tokenizer, examples, attn_implementation):
    """Same normalisation: the mean over trained tokens, and the same tokens trained."""
    import torch

    from train.data import Collator

    model = tiny_llama(tokenizer, attn_implementation).train()
    model.config.use_cache = False
    packed = PackedDataset(examples, 400)
    packed_batch = PackingCollator(pad_id=tokenizer.pad_token_id)([packed[i] for i in range(len(packed))])
    plain_batch = Collator(pad_id=tokenizer.pad_token_id)([examples[i] for i in range(len(examples))])
    # What the Trainer normalises by (num_items_in_batch): labels[..., 1:] that are not -100.
    assert int((packed_batch["labels"][:, 1:] != -100).sum()) == int((plain_batch["labels"][:, 1:] != -100).sum())
    assert int(packed_batch["attention_mask"].sum()) == int(plain_batch["attention_mask"].sum())
    assert packed_batch["input_ids"].numel() < plain_batch["input_ids"].numel()

    def loss_and_grads(inputs):
        model.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    packed_loss, packed_grads = loss_and_grads(PackingCollator.model_inputs(packed_batch, attn_implementation))
    plain_loss, plain_grads = loss_and_grads(plain_batch)
    assert abs(float(packed_loss) - float(plain_loss)) < 1e-5, (float(packed_loss), float(plain_loss))
    for name, grad in plain_grads.items():
        assert torch.allclose(packed_grads[name], grad, atol=1e-5, rtol=1e-4), name
    # With the mask (packing switched off), the loss is another one.
    leaky = {**PackingCollator.model_inputs(packed_batch), "attention_mask": packed_batch["attention_mask"]}
    with torch.no_grad():
        assert abs(float(model(**leaky).loss) - float(plain_loss)) > 1e-4


# --------------------------------------------------------------------------------------------
# instruction_data and the config


def test_instruction_data_packs_the_training_and_validation_sets(tmp_path, tokenizer):
    from train.instruct import InstructionConfig, instruction_data

    cfg = InstructionConfig(base="unused", data=str(INSTRUCTIONS / "zh.jsonl"), output_dir=str(tmp_path),
                            cutoff_len=256, packing=True, group_by_length=True, val_set_size=3, seed=5)
    args = SimpleNamespace(process_index=0, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                           world_size=1)
    data = instruction_data(cfg, tokenizer, args, "test")
    assert isinstance(data.train_set, PackedDataset) and isinstance(data.val_set, PackedDataset)
    assert data.train_set.num_examples == 12 and data.val_set.num_examples == 3
    assert len(data.train_set) < 12 and data.train_set.lengths.max() <= 256
    assert data.sampler.size == len(data.train_set) and data.sampler.group_by_length
    assert isinstance(data.collator, PackingCollator)
    assert data.flops_seq_length == data.train_set.attention_length < 256
    again = instruction_data(cfg, tokenizer, args, "test")
    assert again.train_set.packs == data.train_set.packs  # every rank, every resumed run: the same packs

    from common.config import ConfigError

    with pytest.raises(ConfigError, match="pack_length 100 is below cutoff_len 256"):
        InstructionConfig(base="b", data="d", output_dir="o", cutoff_len=256, pack_length=100, packing=True)
    with pytest.raises(ConfigError, match="pack_length 512 is set but packing is off"):
        InstructionConfig(base="b", data="d", output_dir="o", cutoff_len=256, pack_length=512)


# --------------------------------------------------------------------------------------------
# A 2-rank ZeRO-3 LoRA run with packing


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer_path) -> Path:
    return tiny_base(tmp_path_factory.mktemp("base"), tokenizer_path)


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "mix.jsonl"
    path.write_text("".join((INSTRUCTIONS / f"{lang}.jsonl").read_text(encoding="utf-8") for lang in ("en", "zh")),
                    encoding="utf-8")
    return path


# Micro batch 2 × 2 ranks: padding inside every micro batch; pack_length 256 over cutoff 128 holds
# about two examples per sequence (the tiny base has 128 positions: they restart with every example).
PACKED = dict(packing=True, pack_length=256, group_by_length=True, micro_batch_size=2, batch_size=4)


def packed_config(tmp, base, out, data):
    return lora_config(tmp, base, out, data=data, **PACKED)


@pytest.fixture(scope="module")
def packed_reference(tmp_path_factory, base, mixed_data) -> Path:
    tmp = tmp_path_factory.mktemp("lora-packed")
    cfg = packed_config(tmp, base, tmp / "run", mixed_data)
    assert run_ranks("train.lora", cfg, 2, tmp / "logs") == [0, 0], tail(tmp / "logs")
    log = tail(tmp / "logs", 10**6)
    assert "adapter verified" in log and "packing:" in log
    return tmp / "run"


@slow
def test_a_packed_zero3_lora_run_trains_and_counts_real_tokens_only(packed_reference, base, tokenizer, mixed_data):
    from train.data import ResumableSampler
    from train.instruct import InstructionConfig, instruction_data

    steps = [json.loads(line) for line in (packed_reference / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 7))
    # The tokens the Trainer counted (its tokens/s) are the packed sequences' real tokens, no padding:
    # micro batch 2 × 2 ranks, one step = 4 sequences; 2 steps an epoch (drop_last), 3 epochs.
    cfg = InstructionConfig(base=str(base), data=str(mixed_data), output_dir="unused", cutoff_len=128, seed=11,
                            **{k: v for k, v in PACKED.items() if k not in ("micro_batch_size", "batch_size")})
    args = SimpleNamespace(process_index=1, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                           world_size=2)
    data = instruction_data(cfg, tokenizer, args, "test")
    per_epoch = len(data.train_set) // 2 // 2 * 4
    assert per_epoch == 8, len(data.train_set)
    sampler = ResumableSampler(len(data.train_set), 11, lengths=data.train_set.lengths, group_by_length=True)
    lengths = data.train_set.lengths
    expected = sum(int(lengths[sampler.order(e)[:per_epoch]].sum()) for e in range(3))
    state = json.loads((packed_reference / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["num_input_tokens_seen"] == expected
    assert steps[-1]["loss"] < steps[0]["loss"]


@slow
def test_a_packed_lora_run_resumed_from_a_checkpoint_ends_with_the_same_adapter(tmp_path, base, mixed_data,
                                                                               packed_reference):
    cfg = packed_config(tmp_path, base, tmp_path / "run", mixed_data)
    logs = tmp_path / "logs"
    procs = launch("train.lora", cfg, 2, logs)
    wait_for_file(tmp_path / "run" / "checkpoint-3" / "COMPLETE.json", procs, logs)
    signal_rank(procs, 0)
    assert wait_all(procs, logs) == [0, 0], tail(logs)
    assert "preempted at step" in tail(logs, 10**6)
    assert run_ranks("train.lora", cfg, 2, logs) == [0, 0], tail(logs)
    assert "resuming from" in tail(logs, 10**6)
    assert_same_weights(packed_reference / "adapter", tmp_path / "run" / "adapter")
