"""convert-meta: a tiny HF LLaMA split into a fake 2-way model-parallel Meta checkpoint, converted back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from recover.cli import main as cli
from recover.errors import RecoverError
from recover.meta import LAYER_MAP, TOP_MAP, ConvertMetaConfig, convert_meta, unpermute
from test_recover_lib import assert_bitwise_equal, read_all, tiny_model

HF_TO_META = {hf: (meta, dim) for meta, (hf, dim) in LAYER_MAP.items()}
TOP_TO_META = {hf: (meta, dim) for meta, (hf, dim) in TOP_MAP.items()}


def to_meta(model, out: Path, tokenizer_path: Path, shards: int = 2, embed_dim: int = 1) -> dict[str, torch.Tensor]:
    """Meta's layout: q/k rows in the interleaved rotary order, column-parallel weights split along dim 0
    (tok_embeddings along dim 1), row-parallel wo/w2 along dim 1, norms replicated in every shard."""
    cfg = model.config
    full: dict[str, tuple[torch.Tensor, int | None]] = {}
    for key, value in model.state_dict().items():
        if key.startswith("model.layers."):
            _, _, i, rest = key.split(".", 3)
            meta, dim = HF_TO_META[rest]
            if rest == "self_attn.q_proj.weight":
                value = unpermute(value, cfg.num_attention_heads)
            elif rest == "self_attn.k_proj.weight":
                value = unpermute(value, cfg.num_key_value_heads)
            full[f"layers.{i}.{meta}"] = (value, dim)
        else:
            meta, dim = TOP_TO_META[key]
            full[meta] = (value, embed_dim if meta == "tok_embeddings.weight" else dim)
    out.mkdir(parents=True)
    for s in range(shards):
        part = {k: (v.clone() if d is None else v.chunk(shards, dim=d)[s].clone()) for k, (v, d) in full.items()}
        part["rope.freqs"] = torch.zeros(cfg.hidden_size // cfg.num_attention_heads // 2)
        torch.save(part, out / f"consolidated.{s:02d}.pth")
    (out / "params.json").write_text(json.dumps({
        "dim": cfg.hidden_size, "n_layers": cfg.num_hidden_layers, "n_heads": cfg.num_attention_heads,
        "n_kv_heads": cfg.num_key_value_heads, "multiple_of": 32, "norm_eps": cfg.rms_norm_eps, "vocab_size": -1}))
    shutil.copyfile(tokenizer_path, out / "tokenizer.model")
    return {k: v for k, (v, _) in full.items()}


@pytest.fixture(scope="module")
def meta(tmp_path_factory, tokenizer_path):
    root = tmp_path_factory.mktemp("meta")
    model = tiny_model(3, torch.float16, num_key_value_heads=2)  # grouped-query attention, like 70B
    weights = to_meta(model, root / "meta", tokenizer_path)
    return root, model, weights


def test_convert_back_exactly(meta):
    root, model, _ = meta
    s = convert_meta(ConvertMetaConfig(input=str(root / "meta"), out=str(root / "hf"), max_position_embeddings=128,
                                       progress=False))
    assert s["model_parallel_shards"] == 2 and s["tensors"] == 21 and s["dtype"] == "float16"
    assert_bitwise_equal(read_all(root / "hf"), {k: v for k, v in model.state_dict().items()})
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(root / "hf", dtype=torch.float32).eval()
    assert hf.config.num_key_value_heads == 2 and hf.config.intermediate_size == 128
    x = torch.randint(3, 3000, (2, 12))
    import copy

    with torch.no_grad():  # same weights; float rounding of the two models' kernels may differ
        assert torch.allclose(hf(x).logits, copy.deepcopy(model).float()(x).logits, atol=1e-5)
    tok = AutoTokenizer.from_pretrained(root / "hf")
    assert tok("hello world")["input_ids"][0] == 1


def test_an_embedding_split_along_the_vocabulary(tmp_path, tokenizer_path):
    model = tiny_model(4, torch.bfloat16)
    to_meta(model, tmp_path / "meta", tokenizer_path, shards=2, embed_dim=0)
    convert_meta(ConvertMetaConfig(input=str(tmp_path / "meta"), out=str(tmp_path / "hf"), progress=False))
    assert_bitwise_equal(read_all(tmp_path / "hf"), dict(model.state_dict()))


def meta_rotary(x: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Meta's llama/model.py: rotate interleaved (real, imag) pairs by complex multiplication."""
    b, s, h, d = x.shape
    freqs = 1.0 / (theta ** (torch.arange(0, d, 2)[: d // 2].float() / d))
    cis = torch.polar(torch.ones(s, d // 2), torch.outer(torch.arange(s).float(), freqs))
    xc = torch.view_as_complex(x.float().reshape(b, s, h, -1, 2))
    return torch.view_as_real(xc * cis[None, :, None, :]).flatten(3)


def test_the_qk_permutation_matches_metas_rotary(meta):
    """Independent of our permute(): attention scores of Meta's weights under Meta's rotary equal the
    converted weights' scores under Hugging Face's rotate-half rotary."""
    root, model, weights = meta
    if not (root / "hf").exists():
        convert_meta(ConvertMetaConfig(input=str(root / "meta"), out=str(root / "hf"), progress=False))
    from transformers import AutoModelForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    hf = AutoModelForCausalLM.from_pretrained(root / "hf", dtype=torch.float32)
    cfg = hf.config
    h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    x = torch.randn(1, 9, cfg.hidden_size)
    attn = hf.model.layers[1].self_attn
    q = attn.q_proj(x).view(1, 9, h, d).transpose(1, 2)
    k = attn.k_proj(x).view(1, 9, kv, d).transpose(1, 2)
    cos, sin = LlamaRotaryEmbedding(cfg)(x, torch.arange(9)[None])
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    hf_scores = q @ k.repeat_interleave(h // kv, dim=1).transpose(-1, -2)
    mq = meta_rotary((x @ weights["layers.1.attention.wq.weight"].float().T).view(1, 9, h, d)).transpose(1, 2)
    mk = meta_rotary((x @ weights["layers.1.attention.wk.weight"].float().T).view(1, 9, kv, d)).transpose(1, 2)
    meta_scores = mq @ mk.repeat_interleave(h // kv, dim=1).transpose(-1, -2)
    assert torch.allclose(hf_scores, meta_scores, atol=1e-5)
    # Without the permutation the scores differ: the check has teeth.
    q_raw = (x @ weights["layers.1.attention.wq.weight"].float().T).view(1, 9, h, d).transpose(1, 2)
    k_raw = (x @ weights["layers.1.attention.wk.weight"].float().T).view(1, 9, kv, d).transpose(1, 2)
    q2, k2 = apply_rotary_pos_emb(q_raw, k_raw, cos, sin)
    assert not torch.allclose(q2 @ k2.repeat_interleave(h // kv, dim=1).transpose(-1, -2), meta_scores, atol=1e-3)


def test_cli_and_bad_inputs(meta, tmp_path, capsys):
    root, model, _ = meta
    src = tmp_path / "m"
    shutil.copytree(root / "meta", src)
    assert cli(["convert-meta", "--input", str(src), "--size", "13B", "--out", str(tmp_path / "o")]) == 2
    assert "LLaMA-13B has (5120, 40, 40, 2)" in capsys.readouterr().err
    assert cli(["convert-meta", "--input", str(src), "--out", str(tmp_path / "o"), "--dtype", "bfloat16",
                "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "bfloat16"
    # A replicated norm that differs between shards.
    part = torch.load(src / "consolidated.01.pth", weights_only=True)
    part["norm.weight"] = part["norm.weight"] + 1
    torch.save(part, src / "consolidated.01.pth")
    with pytest.raises(RecoverError, match=r"consolidated.01.pth: replicated tensor 'norm.weight' differs"):
        convert_meta(ConvertMetaConfig(input=str(src), out=str(tmp_path / "o2"), progress=False))
    # A shard missing from the sequence.
    (src / "consolidated.01.pth").rename(src / "consolidated.02.pth")
    with pytest.raises(RecoverError, match=r"consolidated.00.pth … consecutively"):
        convert_meta(ConvertMetaConfig(input=str(src), out=str(tmp_path / "o2"), progress=False))
    (src / "consolidated.02.pth").unlink()
    # One shard only now: the tensors are half as wide as params.json says.
    with pytest.raises(RecoverError, match=r"shapes do not match dim 64"):
        convert_meta(ConvertMetaConfig(input=str(src), out=str(tmp_path / "o2"), progress=False))
    assert not (tmp_path / "o2").exists() and not list(tmp_path.glob("o2.tmp-*"))


def test_tokenizer_must_cover_the_embedding(meta, tmp_path):
    root, _, _ = meta
    src = tmp_path / "m"
    shutil.copytree(root / "meta", src)
    from conftest import sample_texts
    from corpus.tokenizer import train_tokenizer

    train_tokenizer(sample_texts(), src / "tokenizer.model", vocab_size=2000)
    with pytest.raises(RecoverError, match=r"tokenizer.model: the tokenizer has 2000 tokens but tok_embeddings has 3000 rows"):
        convert_meta(ConvertMetaConfig(input=str(src), out=str(tmp_path / "o"), progress=False))
