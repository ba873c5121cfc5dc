"""``convert-meta``: Meta's ``consolidated.NN.pth`` + ``params.json`` + ``tokenizer.model`` → HF LLaMA.

Meta's checkpoints are split for model parallelism: column-parallel weights (wq, wk, wv, w1, w3,
output) along dim 0, tok_embeddings along dim 1 (its hidden dimension; an embedding split along the
vocabulary instead is recognised by its shape), row-parallel weights (wo, w2) along dim 1; norms are
replicated (checked equal here). Meta keeps q/k in the interleaved rotary layout; Hugging Face's
LLaMA rotates halves, so q and k are permuted per head the way ``convert_llama_weights_to_hf.py``
does. Shards are opened with ``torch.load(mmap=True,
weights_only=True)`` and the output is written one tensor at a time: memory holds one layer's
weight (file pages of the mapped shards are cache the kernel can drop).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from common.atomic import write_json
from common.jsonl import read_json_object
from recover.checkpoint import _load_bin, dtype_from_name, dtype_name
from recover.config import ConvertMetaConfig
from recover.errors import RecoverError
from recover.hffiles import tokenizer_vocab_size
from recover.outdir import atomic_dir, check_target
from recover.progress import Progress
from recover.writer import Planned, ShardedWriter

# dim, layers, heads, model-parallel shards of Meta's releases (LLaMA 1 and 2).
KNOWN_SIZES = {"7B": (4096, 32, 32, 1), "13B": (5120, 40, 40, 2), "30B": (6656, 60, 52, 4),
               "33B": (6656, 60, 52, 4), "65B": (8192, 80, 64, 8), "70B": (8192, 80, 64, 8)}

# Meta name (in a layer) → (HF name, dimension the shards are concatenated along; None = replicated).
LAYER_MAP = {
    "attention.wq.weight": ("self_attn.q_proj.weight", 0),
    "attention.wk.weight": ("self_attn.k_proj.weight", 0),
    "attention.wv.weight": ("self_attn.v_proj.weight", 0),
    "attention.wo.weight": ("self_attn.o_proj.weight", 1),
    "feed_forward.w1.weight": ("mlp.gate_proj.weight", 0),
    "feed_forward.w2.weight": ("mlp.down_proj.weight", 1),
    "feed_forward.w3.weight": ("mlp.up_proj.weight", 0),
    "attention_norm.weight": ("input_layernorm.weight", None),
    "ffn_norm.weight": ("post_attention_layernorm.weight", None),
}
TOP_MAP = {"tok_embeddings.weight": ("model.embed_tokens.weight", 1), "norm.weight": ("model.norm.weight", None),
           "output.weight": ("lm_head.weight", 0)}
IGNORED = {"rope.freqs"}


def permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Meta's interleaved rotary rows → Hugging Face's rotate-half rows, per head."""
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The inverse of :func:`permute` (Hugging Face → Meta), for building test checkpoints."""
    rows, cols = w.shape
    return w.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def _read_params(directory: Path) -> dict[str, Any]:
    path = directory / "params.json"
    params = read_json_object(path, RecoverError, missing="Meta checkpoint's params.json")
    for key in ("dim", "n_layers", "n_heads"):
        if not isinstance(params.get(key), int):
            raise RecoverError(f"{path}: missing or non-integer {key!r}")
    return params


def convert_meta(cfg: ConvertMetaConfig) -> dict[str, Any]:
    t0 = time.monotonic()
    src = Path(cfg.input)
    if not src.is_dir():
        raise RecoverError(f"input directory not found: {src}")
    check_target(cfg.out, cfg.force, (cfg.input,))
    params = _read_params(src)
    dim, n_layers, n_heads = params["dim"], params["n_layers"], params["n_heads"]
    n_kv = params.get("n_kv_heads") or n_heads
    files = sorted(src.glob("consolidated.*.pth"))
    if not files:
        raise RecoverError(f"{src}: no consolidated.*.pth files")
    numbers = [int(m.group(1)) for f in files if (m := re.fullmatch(r"consolidated\.(\d+)\.pth", f.name))]
    if numbers != list(range(len(files))):
        raise RecoverError(f"{src}: model-parallel shards must be consolidated.00.pth … consecutively; "
                           f"found {[f.name for f in files]}")
    if cfg.size.lower() != "any":
        known = KNOWN_SIZES.get(cfg.size.upper())
        if known is None:
            raise RecoverError(f"size {cfg.size!r}: one of {', '.join(KNOWN_SIZES)} or any")
        got = (dim, n_layers, n_heads, len(files))
        if got != known:
            raise RecoverError(f"{src}: params.json and shards say dim/layers/heads/shards {got}, LLaMA-{cfg.size} "
                               f"has {known}")
    shards = [_load_bin(f) for f in files]
    keys = set(shards[0])
    for f, s in zip(files, shards):
        if set(s) != keys:
            odd = sorted(set(s) ^ keys)[0]
            raise RecoverError(f"{f}: tensor {odd!r} is not in every shard (compare {files[0].name})")

    names: list[tuple[str, str, int | None]] = []  # (meta name, hf name, cat dim)
    for meta, (hf, d) in TOP_MAP.items():
        if meta == "tok_embeddings.weight":
            names.append((meta, hf, d))
    for i in range(n_layers):
        for meta, (hf, d) in LAYER_MAP.items():
            names.append((f"layers.{i}.{meta}", f"model.layers.{i}.{hf}", d))
    names += [(m, hf, d) for m, (hf, d) in TOP_MAP.items() if m != "tok_embeddings.weight"]
    expected = {m for m, _, _ in names}
    missing = sorted(expected - keys)
    if missing:
        raise RecoverError(f"{files[0]}: tensor {missing[0]!r} is missing (n_layers {n_layers} in params.json)")
    unknown = sorted(keys - expected - IGNORED)
    if unknown:
        raise RecoverError(f"{files[0]}: unexpected tensor {unknown[0]!r}")

    # LLaMA 1 and 2 split the embedding along its hidden dimension, LLaMA 3 along the vocabulary.
    if len(shards) > 1 and shards[0]["tok_embeddings.weight"].shape[1] == dim:
        names[0] = (names[0][0], names[0][1], 0)

    def shape_of(meta: str, d: int | None) -> tuple[int, ...]:
        shapes = [tuple(s[meta].shape) for s in shards]
        if d is None:
            return shapes[0]
        out = list(shapes[0])
        out[d] = sum(sh[d] for sh in shapes)
        return tuple(out)

    in_dtypes = {shards[0][m].dtype for m, _, _ in names}
    if cfg.dtype:
        out_dtype = dtype_from_name(cfg.dtype)
    elif len(in_dtypes) == 1:
        out_dtype = in_dtypes.pop()
    else:
        raise RecoverError(f"{files[0]}: mixed dtypes {sorted(map(dtype_name, in_dtypes))}: choose --dtype")
    plan = [Planned(hf, out_dtype, shape_of(m, d)) for m, hf, d in names]
    shapes = {p.name: p.shape for p in plan}
    vocab, embed_dim = shapes["model.embed_tokens.weight"]
    if embed_dim != dim or shapes["model.layers.0.self_attn.q_proj.weight"] != (dim, dim):
        raise RecoverError(f"{src}: tensor shapes do not match dim {dim} of params.json")
    if shapes["model.layers.0.self_attn.k_proj.weight"][0] != dim // n_heads * n_kv:
        raise RecoverError(f"{src}: wk rows do not match n_kv_heads {n_kv} of params.json")
    intermediate = shapes["model.layers.0.mlp.gate_proj.weight"][0]
    if params.get("vocab_size", -1) not in (-1, vocab):
        raise RecoverError(f"{src / 'params.json'}: vocab_size {params['vocab_size']} but tok_embeddings has "
                           f"{vocab} rows")
    tok = src / "tokenizer.model"
    if not tok.is_file():
        raise RecoverError(f"{src}: tokenizer.model not found")
    tok_size, _ = tokenizer_vocab_size(src)
    if tok_size != vocab:
        raise RecoverError(f"{tok}: the tokenizer has {tok_size} tokens but tok_embeddings has {vocab} rows")

    def gather(meta: str, d: int | None) -> torch.Tensor:
        parts = [s[meta] for s in shards]
        if d is None:
            for f, p in zip(files[1:], parts[1:]):
                if not torch.equal(p, parts[0]):
                    raise RecoverError(f"{f}: replicated tensor {meta!r} differs from {files[0].name}'s")
            return parts[0]
        return torch.cat(parts, dim=d)

    with atomic_dir(cfg.out, cfg.force, (cfg.input,)) as tmp:
        writer = ShardedWriter(tmp, plan, cfg.max_shard_size, cfg.fsync)
        bar = Progress(sum(p.nbytes for p in plan), "convert-meta", cfg.progress)
        try:
            for (meta, hf, d), p in zip(names, plan):
                w = gather(meta, d)
                if meta.endswith("attention.wq.weight"):
                    w = permute(w, n_heads)
                elif meta.endswith("attention.wk.weight"):
                    w = permute(w, n_kv)
                writer.write(hf, w.to(out_dtype).reshape(-1))
                bar.update(p.nbytes)
            written = writer.finish()
        finally:
            writer.abort()
            bar.close()
        from transformers import LlamaConfig

        config = LlamaConfig(
            hidden_size=dim, intermediate_size=intermediate, num_hidden_layers=n_layers,
            num_attention_heads=n_heads, num_key_value_heads=n_kv, vocab_size=vocab,
            rms_norm_eps=params.get("norm_eps", 1e-6), rope_theta=params.get("rope_theta", 10000.0),
            max_position_embeddings=cfg.max_position_embeddings, tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=None)
        config.architectures = ["LlamaForCausalLM"]
        config.dtype = out_dtype
        config.save_pretrained(tmp)
        write_json(tmp / "generation_config.json", {"bos_token_id": 1, "eos_token_id": 2}, indent=None,
                   fsync=cfg.fsync)
        shutil.copyfile(tok, tmp / "tokenizer.model")
        write_json(tmp / "tokenizer_config.json", {
            "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
            "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
            "model_max_length": cfg.max_position_embeddings, "legacy": True}, fsync=cfg.fsync)
    return {"command": "convert-meta", "out": cfg.out, "layers": n_layers, "model_parallel_shards": len(files),
            "tensors": len(plan), "dtype": dtype_name(out_dtype), "shards": len(written["shards"]),
            "bytes": written["total_size"], "seconds": round(time.monotonic() - t0, 2)}
