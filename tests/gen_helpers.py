"""Tiny real checkpoints for the generation tests: a LLaMA saved with save_pretrained + its
sentencepiece tokenizer, a peft LoRA adapter, and a model whose next token is known in advance.

An untrained model writes garbage and practically never EOS. To test "eos" vs "length" the
"steered" model makes the next token a function of the last one: every transformer block outputs
zero (o_proj and down_proj zeroed), so the final hidden state is the last token's embedding; its
dimension 0 is +1 for every token except ``flip`` (-1), and the LM head reads dimension 0 only:
EOS gets +10·h0 and ``word`` gets -5·h0. After ``flip`` the model writes ``word``, after any other
token EOS.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from train.tokenizer import load_tokenizer, save_tokenizer

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=3000,
            max_position_embeddings=1024)


def make_base(out: Path, tokenizer_path: Path, seed: int = 0, **over) -> Path:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY, **over}))
    model.save_pretrained(str(out))
    save_tokenizer(load_tokenizer(tokenizer_path), out)
    return out


def make_steered(out: Path, tokenizer_path: Path, flip: int, word: int) -> Path:
    """See the module docstring: after token ``flip`` the model writes ``word``, then EOS."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY))
    tok = load_tokenizer(tokenizer_path)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb[:, 0] = 1.0
        emb[flip, 0] = -1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[tok.eos_token_id, 0] = 10.0
        model.lm_head.weight[word, 0] = -5.0
    model.save_pretrained(str(out))
    save_tokenizer(tok, out)
    return out


def make_adapter(out: Path, base: Path, r: int = 4) -> Path:
    from peft import LoraConfig, get_peft_model

    model = LlamaForCausalLM.from_pretrained(str(base))
    with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(str(out))
    return out
