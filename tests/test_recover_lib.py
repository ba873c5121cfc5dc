"""Shared helpers for the recover tests (no tests here): tiny LLaMA checkpoints written by transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from recover.checkpoint import Checkpoint

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False)


def tiny_config(vocab_size: int = 3000, **kw):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab_size, **{**TINY, **kw})


def tiny_model(seed: int = 0, dtype: torch.dtype = torch.float32, **kw):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(**kw))
    with torch.no_grad():  # norms start at exactly 1.0: make them ordinary weights
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.05)
    return model.to(dtype).eval()


def add_tokenizer(directory: Path, tokenizer_path: Path) -> None:
    shutil.copyfile(tokenizer_path, directory / "tokenizer.model")
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": True}))


def save(model, directory: Path, tokenizer_path: Path | None = None, max_shard_size: str = "300KB") -> Path:
    model.save_pretrained(directory, max_shard_size=max_shard_size)
    if tokenizer_path is not None:
        add_tokenizer(directory, tokenizer_path)
    return directory


def tuned_from(model, seed: int = 1, scale: float = 0.01):
    """A 'fine-tuned' copy: every weight moved a little, in the model's dtype."""
    import copy

    tuned = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_((torch.randn(p.shape, generator=g) * scale).to(p.dtype))
    return tuned


def read_all(directory: Path) -> dict[str, torch.Tensor]:
    with Checkpoint(directory) as ckpt:
        return {k: ckpt.get(k).clone() for k in ckpt.names()}


def assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k].view(torch.int16) if a[k].itemsize == 2 else a[k].view(torch.int32),
                           b[k].view(torch.int16) if b[k].itemsize == 2 else b[k].view(torch.int32)), k
