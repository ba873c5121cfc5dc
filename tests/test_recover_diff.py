"""make-diff / apply / verify on tiny LLaMA checkpoints written by transformers: bit-exact round trips,
CaMA's diff layout in both directions, the manifest's checks, and bad input refused with nothing written."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from recover.apply import ApplyConfig, apply_diff, main as apply_main
from recover.checkpoint import Checkpoint, read_safetensors_header
from recover.cli import main as cli
from recover.diff import MakeDiffConfig, make_diff
from recover.errors import IntegrityError, RecoverError
from recover.manifest import MANIFEST_NAME, verify_checkpoint
from test_recover_lib import add_tokenizer, assert_bitwise_equal, read_all, save, tiny_model, tuned_from

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def work(tmp_path_factory, tokenizer_path):
    """raw (float16, 3 shards) and tuned (float16, every weight moved) checkpoints, and our diff of them."""
    root = tmp_path_factory.mktemp("recover")
    raw = tiny_model(0, torch.float16)
    save(raw, root / "raw", tokenizer_path)
    save(tuned_from(raw), root / "tuned", tokenizer_path)
    summary = make_diff(MakeDiffConfig(raw=str(root / "raw"), tuned=str(root / "tuned"), out=str(root / "diff"),
                                       max_shard_size="500KB", progress=False))
    return root, summary


def cfg(root: Path, out: str = "out", **kw) -> ApplyConfig:
    return ApplyConfig(raw=str(root / "raw"), diff=str(root / "diff"), out=str(root / out), progress=False, **kw)


def no_output(root: Path, name: str) -> bool:
    return not (root / name).exists() and not list(root.glob(f"{name}.tmp-*"))


def copy(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------------------------------------
# Round trips


def test_make_diff_then_apply_is_bit_exact_and_loads(work):
    root, made = work
    assert made["float64_tensors"] == [] and made["tensors"] == 21 and made["shards"] == 3
    summary = apply_diff(cfg(root, "rt"))
    assert summary["checked"] == {"raw": "inline", "tuned_sha256": True, "sum": None}
    assert summary["dtype"] == "float16" and summary["tokenizer_files"] == ["tokenizer.model", "tokenizer_config.json"]
    assert_bitwise_equal(read_all(root / "rt"), read_all(root / "tuned"))
    # Laid out like save_pretrained: shards + index, config with the dtype; from_pretrained loads it.
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(root / "rt")
    assert model.dtype == torch.float16
    tuned = AutoModelForCausalLM.from_pretrained(root / "tuned")
    for (k, a), (_, b) in zip(model.state_dict().items(), tuned.state_dict().items()):
        assert torch.equal(a, b), k
    assert verify_checkpoint(root / "rt", root / "diff" / MANIFEST_NAME)["matches"] == ["tuned"]
    assert verify_checkpoint(root / "raw", root / "diff" / MANIFEST_NAME)["matches"] == ["raw"]
    assert verify_checkpoint(root / "diff", root / "diff" / MANIFEST_NAME, "diff")["matches"] == ["diff"]


def test_sharded_output_with_index(work):
    root, _ = work
    apply_diff(cfg(root, "sharded", max_shard_size="300KB"))
    index = json.loads((root / "sharded" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-0000{i}-of-00003.safetensors" for i in range(1, 4)]
    headers = [read_safetensors_header(root / "sharded" / f)[0] for f in files]
    sizes = [sum(t.nbytes for t in h.values()) for h in headers]
    assert index["metadata"]["total_size"] == sum(sizes) == 932480
    # Like save_pretrained: a shard stays under the limit unless one tensor alone is larger.
    assert all(size <= 300_000 or len(h) == 1 for size, h in zip(sizes, headers))
    # The files are what the safetensors library itself reads.
    from safetensors.torch import load_file

    tuned = read_all(root / "tuned")
    for f in files:
        for k, v in load_file(root / "sharded" / f).items():
            assert torch.equal(v, tuned[k])


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_a_weight_float32_cannot_restore_gets_a_float64_diff(tmp_path, tokenizer_path, dtype):
    raw = tiny_model(0, dtype)
    tuned = tuned_from(raw)
    with torch.no_grad():
        # 1000 → 6e-8: t - r rounds to -1000 in float32 and raw + diff would give 0.
        raw.model.norm.weight[3] = 1000.0
        tuned.model.norm.weight[3] = 2.0**-24
    save(raw, tmp_path / "raw", tokenizer_path)
    save(tuned, tmp_path / "tuned", tokenizer_path)
    made = make_diff(MakeDiffConfig(raw=str(tmp_path / "raw"), tuned=str(tmp_path / "tuned"),
                                    out=str(tmp_path / "diff"), progress=False))
    assert made["float64_tensors"] == ["model.norm.weight"]
    with Checkpoint(tmp_path / "diff") as d:
        assert d.tensors["model.norm.weight"].dtype == torch.float64
        assert d.tensors["lm_head.weight"].dtype == torch.float32
    apply_diff(cfg(tmp_path))
    assert_bitwise_equal(read_all(tmp_path / "out"), read_all(tmp_path / "tuned"))


def test_negative_zero_comes_back_as_positive_zero(tmp_path, tokenizer_path):
    """x + (-x) = +0.0: no diff restores a tuned -0.0 over a non-zero raw weight. Checksums count the two
    zeros equal, so the manifest still matches both the tuned model and the restored one."""
    raw = tiny_model(0, torch.float16)
    tuned = tuned_from(raw)
    with torch.no_grad():
        tuned.model.norm.weight[5] = -0.0
    save(raw, tmp_path / "raw", tokenizer_path)
    save(tuned, tmp_path / "tuned", tokenizer_path)
    made = make_diff(MakeDiffConfig(raw=str(tmp_path / "raw"), tuned=str(tmp_path / "tuned"),
                                    out=str(tmp_path / "diff"), progress=False))
    assert made["float64_tensors"] == []
    apply_diff(cfg(tmp_path))
    got, want = read_all(tmp_path / "out"), read_all(tmp_path / "tuned")
    assert torch.signbit(want["model.norm.weight"][5]) and not torch.signbit(got["model.norm.weight"][5])
    got["model.norm.weight"][5] = -0.0
    assert_bitwise_equal(got, want)
    manifest = tmp_path / "diff" / MANIFEST_NAME
    assert verify_checkpoint(tmp_path / "out", manifest)["matches"] == ["tuned"]
    assert verify_checkpoint(tmp_path / "tuned", manifest)["matches"] == ["tuned"]


def test_a_weight_no_diff_can_restore_is_refused(tmp_path, tokenizer_path):
    raw = tiny_model(0, torch.float32)
    tuned = tuned_from(raw)
    with torch.no_grad():
        raw.model.norm.weight[0] = float("inf")
    save(raw, tmp_path / "raw", tokenizer_path)
    save(tuned, tmp_path / "tuned", tokenizer_path)
    with pytest.raises(RecoverError, match=r"tuned/model-\d+-of-\d+.safetensors: tensor 'model.norm.weight': 1 elements cannot "
                                           r"be restored exactly"):
        make_diff(MakeDiffConfig(raw=str(tmp_path / "raw"), tuned=str(tmp_path / "tuned"),
                                 out=str(tmp_path / "diff"), progress=False))
    assert no_output(tmp_path, "diff")


def test_slices_smaller_than_tensors(work, monkeypatch):
    """The slice loop (several slices per tensor, alternating buffers) gives the same bytes."""
    root, _ = work
    import recover.apply

    monkeypatch.setattr(recover.apply, "chunk_elems", lambda mb: 1000)
    apply_diff(cfg(root, "sliced"))
    assert_bitwise_equal(read_all(root / "sliced"), read_all(root / "tuned"))


# ---------------------------------------------------------------------------------------------
# Interoperability with CaMA's weight_diff.py


def cama_make_diff(raw: Path, tuned: Path, out: Path) -> None:
    """What CaMA's `weight_diff.py make_diff` does: both models in float32, tuned -= raw, save_pretrained."""
    from transformers import AutoModelForCausalLM

    model_raw = AutoModelForCausalLM.from_pretrained(raw, dtype=torch.float32)
    model_tuned = AutoModelForCausalLM.from_pretrained(tuned, dtype=torch.float32)
    state_raw = model_raw.state_dict()
    with torch.no_grad():
        for key, value in model_tuned.state_dict().items():
            value.add_(-state_raw[key])
    model_tuned.save_pretrained(out)
    add_tokenizer(out, raw / "tokenizer.model")


def test_apply_restores_a_diff_made_by_camas_tool(work, tmp_path):
    root, _ = work
    cama_make_diff(root / "raw", root / "tuned", tmp_path / "cama-diff")
    infos, _ = read_safetensors_header(tmp_path / "cama-diff" / "model.safetensors")
    assert {str(i.dtype) for i in infos.values()} == {"torch.float32"}
    assert not (tmp_path / "cama-diff" / MANIFEST_NAME).exists()
    summary = apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(tmp_path / "cama-diff"),
                                     out=str(tmp_path / "out"), progress=False))
    assert summary["dtype"] == "float16" and summary["checked"]["tuned_sha256"] is False
    # float16 − float16 is exact in float32 here, so raw + diff rounds back to the tuned bits.
    assert_bitwise_equal(read_all(tmp_path / "out"), read_all(root / "tuned"))


def test_camas_bin_shards_are_read(work, tmp_path):
    """The same diff as pytorch_model-*.bin shards with their index (the older save_pretrained layout)."""
    root, _ = work
    diff = read_all(root / "diff")
    out = tmp_path / "bin-diff"
    out.mkdir()
    names = list(diff)
    halves = {"pytorch_model-00001-of-00002.bin": names[:10], "pytorch_model-00002-of-00002.bin": names[10:]}
    for file, keys in halves.items():
        torch.save({k: diff[k] for k in keys}, out / file)
    (out / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {k: f for f, ks in halves.items() for k in ks}}))
    for f in ("config.json", "tokenizer.model", "tokenizer_config.json"):
        shutil.copyfile(root / "diff" / f, out / f)
    apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(out), out=str(tmp_path / "out"), progress=False))
    assert_bitwise_equal(read_all(tmp_path / "out"), read_all(root / "tuned"))


def test_our_diff_restores_with_a_plain_from_pretrained_and_add_loop(work):
    root, _ = work
    from transformers import AutoModelForCausalLM

    state = AutoModelForCausalLM.from_pretrained(root / "raw", dtype=torch.float32).state_dict()
    diff = AutoModelForCausalLM.from_pretrained(root / "diff", dtype=torch.float32).state_dict()
    with torch.no_grad():
        for key, value in diff.items():
            state[key].add_(value)
    restored = {k: v.half() for k, v in state.items()}
    assert_bitwise_equal(restored, read_all(root / "tuned"))


# ---------------------------------------------------------------------------------------------
# Integrity


def test_a_corrupt_raw_tensor_is_named_and_nothing_is_written(work, tmp_path):
    root, _ = work
    bad = copy(root / "raw", tmp_path / "raw")
    shard = sorted(bad.glob("model-*.safetensors"))[-1]
    infos, _ = read_safetensors_header(shard)
    victim = list(infos.values())[-1]
    with shard.open("r+b") as f:  # one flipped byte, as a bad download would have
        f.seek(victim.offset + 10)
        byte = f.read(1)
        f.seek(victim.offset + 10)
        f.write(bytes([byte[0] ^ 0x40]))
    for mode in ("inline", "first"):
        with pytest.raises(IntegrityError, match=rf"{shard.name}: tensor '{victim.name}' of the raw model"):
            apply_diff(ApplyConfig(raw=str(bad), diff=str(root / "diff"), out=str(tmp_path / "out"),
                                   check_raw=mode, progress=False))
        assert no_output(tmp_path, "out")
    # In another output dtype the tuned checksums cannot speak: raw tensors are hashed as they are read.
    with pytest.raises(IntegrityError, match=rf"{shard.name}: tensor '{victim.name}' of the raw model"):
        apply_diff(ApplyConfig(raw=str(bad), diff=str(root / "diff"), out=str(tmp_path / "out"), dtype="float32",
                               progress=False))
    assert no_output(tmp_path, "out")
    # Raw checks off: the restored tensor is still caught by the tuned checksum.
    with pytest.raises(IntegrityError, match=rf"{shard.name}: tensor '{victim.name}' of the raw model"):
        apply_diff(ApplyConfig(raw=str(bad), diff=str(root / "diff"), out=str(tmp_path / "out"),
                               check_raw="off", progress=False))
    assert no_output(tmp_path, "out")
    with pytest.raises(IntegrityError, match=victim.name):
        verify_checkpoint(bad, root / "diff" / MANIFEST_NAME, "raw")


def test_a_corrupt_diff_tensor_is_blamed(work, tmp_path):
    root, _ = work
    bad = copy(root / "diff", tmp_path / "diff")
    shard = sorted(bad.glob("model-*.safetensors"))[0]
    victim = list(read_safetensors_header(shard)[0].values())[0]
    with shard.open("r+b") as f:
        f.seek(victim.offset)
        f.write(b"\x11\x22\x33\x44")
    with pytest.raises(IntegrityError, match=rf"diff/{shard.name}: tensor '{victim.name}' of the diff does not match"):
        apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(bad), out=str(tmp_path / "out"), progress=False))
    assert no_output(tmp_path, "out")


def test_camas_sum_check(work, tmp_path):
    root, made = work
    s = apply_diff(cfg(root, "summed", check_sum=made["tuned_sum"], check_sum_tol=1e-6))
    assert s["checked"]["sum"] == pytest.approx(made["tuned_sum"], abs=1e-9)
    with pytest.raises(IntegrityError, match=r"sum to .* expected"):
        apply_diff(cfg(root, "summed2", check_sum=made["tuned_sum"] + 0.5))
    assert no_output(root, "summed2")


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error naming the file and tensor; nothing written


def test_missing_shard(work, tmp_path):
    root, _ = work
    bad = copy(root / "raw", tmp_path / "raw")
    (bad / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(RecoverError, match=r"model.safetensors.index.json: shard 'model-00002-of-00003.safetensors' is missing"):
        apply_diff(ApplyConfig(raw=str(bad), diff=str(root / "diff"), out=str(tmp_path / "out"), progress=False))
    assert no_output(tmp_path, "out")


def test_truncated_safetensors(work, tmp_path):
    root, _ = work
    bad = copy(root / "raw", tmp_path / "raw")
    shard = bad / "model-00003-of-00003.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[:-100])
    last = max(read_safetensors_header(root / "raw" / shard.name)[0].values(), key=lambda i: i.offset)
    with pytest.raises(RecoverError, match=rf"{shard}: truncated safetensors file: tensor '{last.name}' ends at"):
        apply_diff(ApplyConfig(raw=str(bad), diff=str(root / "diff"), out=str(tmp_path / "out"), progress=False))
    shard.write_bytes(data[:5])
    with pytest.raises(RecoverError, match=rf"{shard}: truncated safetensors file \(5 bytes, no header\)"):
        Checkpoint(bad)
    assert no_output(tmp_path, "out")


def test_shape_dtype_and_key_mismatches(work, tmp_path, tokenizer_path):
    root, _ = work
    # A differently shaped model (intermediate 96): named tensor, both files.
    other = save(tiny_model(0, torch.float16, intermediate_size=96), tmp_path / "other", tokenizer_path)
    with pytest.raises(RecoverError, match=r"tensor 'model.layers.0.mlp.down_proj.weight': shape \[64, 128\] in the diff"):
        apply_diff(ApplyConfig(raw=str(other), diff=str(root / "diff"), out=str(tmp_path / "out"), progress=False))
    # The right shapes in the wrong dtype: the manifest says the raw model is float16.
    save(tiny_model(0, torch.bfloat16), tmp_path / "bf16", tokenizer_path)
    with pytest.raises(IntegrityError, match=r"tensor '.*' is bfloat16, .*recover-manifest.json says the raw model's is float16"):
        apply_diff(ApplyConfig(raw=str(tmp_path / "bf16"), diff=str(root / "diff"), out=str(tmp_path / "out"),
                               progress=False))
    # A layer fewer: missing keys; a layer more: extra keys.
    save(tiny_model(0, torch.float16, num_hidden_layers=1), tmp_path / "l1", tokenizer_path)
    with pytest.raises(RecoverError, match=r"raw model .*l1: tensor 'model.layers.1.[a-z_.]+' of the diff .* is missing"):
        apply_diff(ApplyConfig(raw=str(tmp_path / "l1"), diff=str(root / "diff"), out=str(tmp_path / "out"),
                               progress=False))
    save(tiny_model(0, torch.float16, num_hidden_layers=3), tmp_path / "l3", tokenizer_path)
    with pytest.raises(RecoverError, match=r"extra tensor 'model.layers.2.[a-z_.]+' in model-.*safetensors, not in the diff"):
        apply_diff(ApplyConfig(raw=str(tmp_path / "l3"), diff=str(root / "diff"), out=str(tmp_path / "out"),
                               progress=False))
    assert no_output(tmp_path, "out")


class Payload:
    """Any class outside torch's weights_only allowlist (libraries extend that list at import time:
    after transformers/DeepSpeed are imported even pathlib paths pass, so the test uses its own)."""

    def __reduce__(self):
        return (print, ("a pickle ran code",))


def test_a_pickle_that_is_not_plain_tensors(work, tmp_path):
    root, _ = work
    bad = tmp_path / "pickled"
    bad.mkdir()
    shutil.copyfile(root / "diff" / "config.json", bad / "config.json")
    torch.save({"model.norm.weight": Payload()}, bad / "pytorch_model.bin")
    with pytest.raises(RecoverError, match=r"pytorch_model.bin: not a plain-tensor checkpoint \(refused by torch.load\(weights_only=True\)"):
        Checkpoint(bad)
    torch.save({"model.norm.weight": [1, 2]}, bad / "pytorch_model.bin")
    with pytest.raises(RecoverError, match=r"pytorch_model.bin: entry 'model.norm.weight' is a list, not a tensor"):
        apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(bad), out=str(tmp_path / "out"), progress=False))
    assert no_output(tmp_path, "out")


def test_tokenizer_missing_or_of_the_wrong_size(work, tmp_path):
    root, _ = work
    bare = copy(root / "diff", tmp_path / "bare")
    for f in ("tokenizer.model", "tokenizer_config.json"):
        (bare / f).unlink()
    with pytest.raises(RecoverError, match=r"diff .*bare: no tokenizer files"):
        apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(bare), out=str(tmp_path / "out"), progress=False))
    # A tokenizer of 2000 pieces (the manifest's file checksum is removed so the vocab check speaks).
    from corpus.tokenizer import train_tokenizer
    from conftest import sample_texts

    small = copy(root / "diff", tmp_path / "small")
    train_tokenizer(sample_texts(), small / "tokenizer.model", vocab_size=2000)
    m = json.loads((small / MANIFEST_NAME).read_text())
    m["files"] = {}
    (small / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(RecoverError, match=r"tokenizer.model: the tokenizer has 2000 tokens but the model's embedding "
                                           r"\(model.embed_tokens.weight in .*\) has 3000 rows"):
        apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(small), out=str(tmp_path / "out"), progress=False))
    # With the manifest's file checksums, a swapped tokenizer is caught even before that.
    shutil.copyfile(small / "tokenizer.model", bare / "tokenizer.model")
    with pytest.raises(IntegrityError, match=r"tokenizer.model: missing or does not match its checksum"):
        apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(bare), out=str(tmp_path / "out"), progress=False))
    assert no_output(tmp_path, "out")


def test_tokenizer_config_alone_is_no_tokenizer_even_without_the_tokenizer_check(work, tmp_path):
    """CaMA's failure: a diff with only tokenizer_config.json restored a model whose tokenizer has 3
    tokens and encodes every text to []. With --no-check-tokenizer it is still refused up front."""
    root, _ = work
    bare = copy(root / "diff", tmp_path / "config-only")
    (bare / "tokenizer.model").unlink()
    assert (bare / "tokenizer_config.json").is_file()
    for check in (False, True):
        with pytest.raises(RecoverError, match=r"diff .*config-only: no tokenizer files \(tokenizer.model or tokenizer.json\)"):
            apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(bare), out=str(tmp_path / "out"), progress=False,
                                   check_tokenizer=check))
    assert cli(["apply", "--raw", str(root / "raw"), "--diff", str(bare), "--out", str(tmp_path / "out"),
                "--no-check-tokenizer", "--no-progress"]) == 2
    assert no_output(tmp_path, "out")


@pytest.mark.parametrize("entry", ["/etc/passwd", "../outside.safetensors", "ABSOLUTE", "sub/../../outside.safetensors"])
def test_an_index_entry_outside_the_folder_is_refused_by_name(work, tmp_path, entry):
    """A real shard placed outside the checkpoint folder, named by its index: before the fix it was
    opened and its tensors used; now the entry is refused before anything is read."""
    root, _ = work
    bad = copy(root / "raw", tmp_path / "ckpt")
    index_path = bad / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shard = "model-00002-of-00003.safetensors"
    shutil.move(bad / shard, tmp_path / "outside.safetensors")
    if entry == "ABSOLUTE":
        entry = str(tmp_path / "outside.safetensors")
    moved = [name for name, file in index["weight_map"].items() if file == shard]
    index["weight_map"].update({name: entry for name in moved})
    index_path.write_text(json.dumps(index))
    with pytest.raises(RecoverError, match=rf"index.json: tensor '{re.escape(moved[0])}': shard "
                                           rf"'{re.escape(entry)}' leaves the checkpoint folder"):
        Checkpoint(bad)
    with pytest.raises(RecoverError, match="leaves the checkpoint folder"):
        apply_diff(ApplyConfig(raw=str(bad), diff=str(root / "diff"), out=str(tmp_path / "out"), progress=False))
    assert no_output(tmp_path, "out")


def test_a_manifest_file_entry_outside_the_diff_is_refused(work, tmp_path):
    root, _ = work
    bad = copy(root / "diff", tmp_path / "diff")
    m = json.loads((bad / MANIFEST_NAME).read_text())
    m["files"]["../../../etc/passwd"] = "0" * 64
    (bad / MANIFEST_NAME).write_text(json.dumps(m))
    with pytest.raises(RecoverError, match=r"recover-manifest.json: file '../../../etc/passwd' leaves the checkpoint"):
        apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(bad), out=str(tmp_path / "out"), progress=False))


def test_the_restored_tokenizer_encodes_text(work):
    root, _ = work
    out = root / "rt" if (root / "rt").exists() else None
    if out is None:
        apply_diff(cfg(root, "rt"))
        out = root / "rt"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    ids = tok("知识抽取 and language models")["input_ids"]
    assert len(tok) == 3000 and ids[0] == 1 and len(ids) > 3


# ---------------------------------------------------------------------------------------------
# Output safety


def test_existing_output_is_refused_without_force_and_replaced_with_it(work, tmp_path):
    root, _ = work
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    args = dict(raw=str(root / "raw"), diff=str(root / "diff"), out=str(target), progress=False)
    with pytest.raises(RecoverError, match=r"out already exists: remove it or pass --force"):
        apply_diff(ApplyConfig(**args))
    assert (target / "keep.txt").read_text() == "precious"
    apply_diff(ApplyConfig(**args, force=True))
    assert not (target / "keep.txt").exists() and (target / "config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(RecoverError, match="is the input"):
        apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(root / "diff"), out=str(root / "raw"), force=True))


def test_a_killed_runs_temporary_is_removed_at_the_next_start(work, tmp_path):
    root, _ = work
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"out.tmp-{int(dead.stdout)}"
    stale.mkdir()
    (stale / "model-00001-of-00003.safetensors").write_bytes(b"half")
    apply_diff(ApplyConfig(raw=str(root / "raw"), diff=str(root / "diff"), out=str(tmp_path / "out"), progress=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_output_that_appears_meanwhile_is_not_replaced(tmp_path):
    from recover.outdir import atomic_dir

    target = tmp_path / "out"
    with pytest.raises(RecoverError, match=r"out appeared while writing: not replaced \(pass --force\)"):
        with atomic_dir(target) as tmp:
            (tmp / "config.json").write_text("{}")
            target.mkdir()  # another run finished first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not list(target.iterdir())
    # The block's own FileExistsError stays what it is.
    with pytest.raises(FileExistsError, match="mine"):
        with atomic_dir(tmp_path / "other"):
            raise FileExistsError("mine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---------------------------------------------------------------------------------------------
# Command line and config


def test_cli_apply_recover_and_verify(work, tmp_path, capsys):
    root, _ = work
    assert cli(["apply", "--raw", str(root / "raw"), "--diff", str(root / "diff"), "--out", str(tmp_path / "a"),
                "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["command"] == "apply"
    # CaMA's spelling.
    assert cli(["recover", "--path_raw", str(root / "raw"), "--path_diff", str(root / "diff"),
                "--path_tuned", str(tmp_path / "b"), "--no-progress"]) == 0
    capsys.readouterr()
    assert_bitwise_equal(read_all(tmp_path / "b"), read_all(root / "tuned"))
    assert cli(["recover", "--path_raw", str(root / "raw"), "--path_diff", str(root / "diff"),
                "--path_tuned", str(tmp_path / "b")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli(["verify", str(tmp_path / "a"), "--manifest", str(root / "diff" / MANIFEST_NAME)]) == 0
    assert json.loads(capsys.readouterr().out)["matches"] == ["tuned"]
    assert cli(["verify", str(root / "raw"), "--manifest", str(root / "diff" / MANIFEST_NAME), "--role", "tuned"]) == 1
    assert "integrity check failed" in capsys.readouterr().err


def test_config_file_and_unknown_keys(work, tmp_path, capsys):
    root, _ = work
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"raw": str(root / "raw"), "diff": str(root / "diff"), "out": str(tmp_path / "o"),
                                   "check_raw": "first", "progress": False}))
    assert cli(["apply", "--config", str(job)]) == 0
    capsys.readouterr()
    job.write_text(yaml.safe_dump({"raw": "r", "diff": "d", "out": "o", "chek_raw": "first"}))
    assert cli(["apply", "--config", str(job)]) == 2
    assert "unknown key 'chek_raw'" in capsys.readouterr().err
    job.write_text(yaml.safe_dump({"raw": "r", "diff": "d", "out": "o", "check_raw": "sometimes"}))
    assert cli(["apply", "--config", str(job)]) == 2
    assert "check_raw must be one of inline, first, off" in capsys.readouterr().err


def test_set_print_config_and_one_error_style(work, tmp_path, capsys):
    root, _ = work
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"raw": str(root / "raw"), "diff": str(root / "diff"), "out": str(tmp_path / "o")}))
    # File, then flags, then --set: the later wins; --print-config shows the result and runs nothing.
    assert cli(["apply", "--config", str(job), "--check-raw", "off", "--set", "check_raw=first", "--set",
                "chunk_mb=4", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "check_raw: first  # default: inline" in text and "chunk_mb: 4  # default: 32" in text
    assert "max_shard_size: 5GB\n" in text and not (tmp_path / "o").exists()
    assert cli(["apply", "--config", str(job), "--set", "chek_raw=first"]) == 2
    assert capsys.readouterr().err.startswith("recover: error: --set chek_raw=first: unknown key 'chek_raw' "
                                              "(did you mean 'check_raw'?")
    assert cli(["make-diff", "--raw", str(root / "raw"), "--tuned", str(root / "tuned"), "--out",
                str(root / "raw")]) == 2
    assert capsys.readouterr().err == f"recover: error: output {root / 'raw'} is the input {root / 'raw'}: " \
                                      f"choose another output directory\n"
    assert cli(["make-diff", "--raw", "r", "--tuned", "t", "--out", "o", "--max-shard-size", "5XB"]) == 2
    assert "max_shard_size: cannot read '5XB'" in capsys.readouterr().err  # before any work, not at writing
    with pytest.raises(SystemExit):  # no abbreviations: --ou is not --out
        cli(["apply", "--raw", "r", "--diff", "d", "--ou", str(tmp_path / "x")])
    assert "unrecognized arguments: --ou" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m_recover(work, tmp_path):
    root, _ = work
    r = subprocess.run([sys.executable, "-m", "recover", "apply", "--raw", str(root / "raw"), "--diff",
                        str(root / "diff"), "--out", str(tmp_path / "o"), "--no-progress", "--dtype", "float32"],
                       capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    # Another dtype than the tuned one: written, but the tuned checksums cannot apply.
    assert summary["dtype"] == "float32" and summary["checked"]["tuned_sha256"] is False
    tuned = read_all(root / "tuned")
    assert all(torch.equal(v, tuned[k].float()) for k, v in read_all(tmp_path / "o").items())


def test_main_is_the_job_entry_point(work, tmp_path):
    root, _ = work
    out = apply_main(ApplyConfig(raw=str(root / "raw"), diff=str(root / "diff"), out=str(tmp_path / "o"),
                                 progress=False))
    json.dumps(out)  # JSON-able
    assert out["tensors"] == 21


SLOW_APPLY = """
import sys, time
import recover.arith as arith
restore = arith.restore
def slow(*a, **k):
    time.sleep(0.3)
    return restore(*a, **k)
arith.restore = slow
from recover.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_mid_run_leaves_nothing(work, tmp_path):
    """scancel sends SIGTERM: the half-written temporary directory is removed and the job fails."""
    import os
    import signal
    import time

    root, _ = work
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_APPLY, "apply", "--raw", str(root / "raw"), "--diff",
                             str(root / "diff"), "--out", str(out), "--no-progress"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("out.tmp-*/model*.safetensors")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_config_error_is_reported_before_torch_is_imported(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("raw: r\ndiff: d\nout: o\nchek_raw: first\n")
    code = ("import sys; from recover.cli import main; rc = main(['apply', '--config', sys.argv[1]]); "
            "print(rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(job)], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.split() == ["2", "False"], r.stderr
    assert r.stderr.startswith(f"recover: error: {job}: unknown key 'chek_raw'")
