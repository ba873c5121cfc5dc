"""merge-lora: real peft adapters on tiny models, merged by tensor arithmetic, checked against peft."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from recover.apply import ApplyConfig, main as apply_main
from recover.diff import MakeDiffConfig, make_diff
from recover.errors import IntegrityError, RecoverError
from recover.lora import MergeLoraConfig, merge_lora, verify_merge
from recover.writer import Planned
from test_recover_lib import add_tokenizer, read_all, save, tiny_model, tuned_from


def make_adapter(model, out: Path, **kw) -> dict[str, torch.Tensor]:
    """A peft LoRA adapter with non-zero A and B (a freshly initialised one has B = 0: nothing to merge)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(7)
    config = LoraConfig(init_lora_weights=False, **kw)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "modules_to_save" in name:
                p.add_(torch.randn_like(p) * 0.05)  # a retrained head, different from the base's
    peft_model.save_pretrained(out)
    merged = peft_model.merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}


@pytest.mark.parametrize("kw", [
    dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj", "embed_tokens"],
         modules_to_save=["lm_head"]),
    dict(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "o_proj", "down_proj"], use_rslora=True,
         rank_pattern={"o_proj": 2}, alpha_pattern={"down_proj": 3}),
], ids=["embedding+modules_to_save", "rslora+patterns"])
def test_merge_matches_peft(tmp_path, tokenizer_path, kw):
    save(tiny_model(0, torch.float32), tmp_path / "base", tokenizer_path)
    expected = make_adapter(tiny_model(0, torch.float32), tmp_path / "lora", **kw)
    s = merge_lora(MergeLoraConfig(base=str(tmp_path / "base"), lora=str(tmp_path / "lora"), out=str(tmp_path / "m"),
                                   device="cpu", progress=False))
    assert s["verify"]["max_abs_diff"] <= 1e-4 * max(1.0, s["verify"]["max_abs_logit"])
    got = read_all(tmp_path / "m")
    assert got.keys() == expected.keys()
    changed = [k for k in got if not torch.equal(got[k], read_all(tmp_path / "base")[k])]
    assert len(changed) == s["merged_modules"] + (1 if "modules_to_save" in kw else 0)
    for k, v in expected.items():
        assert torch.allclose(got[k], v, atol=1e-6), k


def test_half_precision_base(tmp_path, tokenizer_path):
    save(tiny_model(0, torch.float16), tmp_path / "base", tokenizer_path)
    make_adapter(tiny_model(0, torch.float32), tmp_path / "lora", r=4, lora_alpha=8,
                 target_modules=["q_proj", "up_proj"])
    s = merge_lora(MergeLoraConfig(base=str(tmp_path / "base"), lora=str(tmp_path / "lora"), out=str(tmp_path / "m"),
                                   progress=False))
    assert s["verify"]["rtol"] == 2e-2
    assert {v.dtype for v in read_all(tmp_path / "m").values()} == {torch.float16}
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dtype"] == "float16"


def test_fan_in_fan_out_conv1d(tmp_path, tokenizer_path):
    """GPT-2's Conv1D stores W as (in, out): peft's fan_in_fan_out, ΔW transposed."""
    from transformers import GPT2Config, GPT2LMHeadModel

    def gpt2():
        torch.manual_seed(0)
        return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=3000, n_positions=64)).eval()

    save(gpt2(), tmp_path / "base", tokenizer_path)
    expected = make_adapter(gpt2(), tmp_path / "lora", r=4, lora_alpha=4, target_modules=["c_attn", "c_fc"],
                            fan_in_fan_out=True)
    merge_lora(MergeLoraConfig(base=str(tmp_path / "base"), lora=str(tmp_path / "lora"), out=str(tmp_path / "m"),
                               progress=False))
    got = read_all(tmp_path / "m")
    for k, v in got.items():
        assert torch.allclose(v, expected[k], atol=1e-6), k


def test_the_check_catches_a_wrong_merge(tmp_path, tokenizer_path):
    save(tiny_model(0, torch.float32), tmp_path / "base", tokenizer_path)
    make_adapter(tiny_model(0, torch.float32), tmp_path / "lora", r=4, lora_alpha=8, target_modules=["q_proj"])
    plan = [Planned("x", torch.float32, (1,))]
    with pytest.raises(IntegrityError, match=r"logits differ from base .* \+ adapter"):
        verify_merge(tmp_path / "base", tmp_path / "lora", tmp_path / "base", torch.device("cpu"), plan)


def test_bad_adapters(tmp_path, tokenizer_path):
    save(tiny_model(0, torch.float32), tmp_path / "base", tokenizer_path)
    make_adapter(tiny_model(0, torch.float32), tmp_path / "lora", r=4, lora_alpha=8, target_modules=["q_proj"])
    args = dict(base=str(tmp_path / "base"), out=str(tmp_path / "m"), progress=False)
    dora = tmp_path / "dora"
    shutil.copytree(tmp_path / "lora", dora)
    cfg = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**cfg, "use_dora": True}))
    with pytest.raises(RecoverError, match="use_dora is set; DoRA adapters are not supported"):
        merge_lora(MergeLoraConfig(lora=str(dora), **args))
    # An adapter for a bigger model: the module's shape does not fit the base.
    save(tiny_model(0, torch.float32, hidden_size=96, num_attention_heads=4), tmp_path / "big", tokenizer_path)
    make_adapter(tiny_model(0, torch.float32, hidden_size=96), tmp_path / "big-lora", r=4, lora_alpha=8,
                 target_modules=["q_proj"])
    with pytest.raises(RecoverError, match=r"adapter_model.safetensors: module 'model.layers.0.self_attn.q_proj': "
                                           r"B \[96, 4\] · A \[4, 96\] does not fit the base tensor"):
        merge_lora(MergeLoraConfig(lora=str(tmp_path / "big-lora"), **args))
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob("m.tmp-*"))


def test_apply_then_merge_as_one_job(tmp_path, tokenizer_path):
    raw = tiny_model(0, torch.float32)
    save(raw, tmp_path / "raw", tokenizer_path)
    save(tuned_from(raw), tmp_path / "tuned", tokenizer_path)
    make_diff(MakeDiffConfig(raw=str(tmp_path / "raw"), tuned=str(tmp_path / "tuned"), out=str(tmp_path / "diff"),
                             progress=False))
    make_adapter(tiny_model(0, torch.float32), tmp_path / "lora", r=4, lora_alpha=8, target_modules=["v_proj"])
    add_tokenizer(tmp_path / "lora", tokenizer_path)
    s = apply_main(ApplyConfig(raw=str(tmp_path / "raw"), diff=str(tmp_path / "diff"), out=str(tmp_path / "out"),
                               merge_lora=str(tmp_path / "lora"), merge_out=str(tmp_path / "merged"), progress=False))
    assert s["merge"]["merged_modules"] == 2 and s["merge"]["verify"]["max_abs_diff"] < 1e-4
    assert (tmp_path / "merged" / "tokenizer.model").is_file()
    json.dumps(s)
