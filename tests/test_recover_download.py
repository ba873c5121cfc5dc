"""`python -m recover download`: the offline error, and the verification of a folder laid out like a
downloaded snapshot (a real diff made by make-diff on tiny checkpoints).

Not run here (no Hub reachable from these machines, and huggingface_hub cannot be pointed at a plain
HTTP folder without a fake of its API): an actual download, its allow_patterns filtering and a resume.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recover.config import DownloadConfig
from recover.diff import MakeDiffConfig, make_diff
from recover.download import verify_download
from recover.errors import IntegrityError, RecoverError
from recover.manifest import MANIFEST_NAME
from test_recover_lib import save, tiny_model, tuned_from

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def published(tmp_path_factory, tokenizer_path) -> Path:
    """A diff as make-diff publishes it (sharded safetensors, index, manifest, tokenizer files)."""
    root = tmp_path_factory.mktemp("publish")
    raw = tiny_model(0, torch.float16)
    save(raw, root / "raw", tokenizer_path)
    save(tuned_from(raw), root / "tuned", tokenizer_path)
    make_diff(MakeDiffConfig(raw=str(root / "raw"), tuned=str(root / "tuned"), out=str(root / "diff"),
                             max_shard_size="500KB", progress=False))
    return root / "diff"


def as_snapshot(diff: Path, folder: Path) -> Path:
    """The diff as snapshot_download(local_dir=…) leaves it: the repo's files plus its README and
    .gitattributes, and huggingface_hub's bookkeeping under .cache/huggingface/."""
    shutil.copytree(diff, folder)
    (folder / "README.md").write_text("# a published diff\n")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    meta = folder / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    for f in diff.iterdir():
        (meta / f"{f.name}.metadata").write_text("0" * 40 + "\netag\n1700000000.0\n")
    return folder


def run_download(*args: str, **env: str) -> subprocess.CompletedProcess:
    # A process of its own: huggingface_hub reads HF_HUB_OFFLINE / HF_ENDPOINT when it is imported.
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "recover", "download", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


def unreachable_endpoint() -> str:
    """A Hub endpoint where nothing listens (connection refused at once), wherever the test runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.77", 0))
        return f"http://127.0.0.77:{s.getsockname()[1]}"


def test_offline_is_one_clear_error_naming_the_repo(tmp_path):
    r = run_download("--repo", "zjunlp/knowlm-13b-diff", "--out", str(tmp_path / "dl"), "--only", "diff",
                     HF_HUB_OFFLINE="1")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("recover: error: downloading zjunlp/knowlm-13b-diff into ")
    assert "HF_HUB_OFFLINE is set, and nothing of it is in the local cache" in r.stderr
    r = run_download("--repo", "zjunlp/knowlm-13b-diff", "--out", str(tmp_path / "dl"), "--revision", "v2",
                     HF_HUB_OFFLINE="0", HF_ENDPOINT=unreachable_endpoint(), HF_HUB_ETAG_TIMEOUT="2",
                     HF_HUB_DOWNLOAD_TIMEOUT="2")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "downloading zjunlp/knowlm-13b-diff at revision 'v2'" in r.stderr
    assert "the Hub cannot be reached from this machine" in r.stderr
    assert not (tmp_path / "dl").exists()


def test_bad_arguments_fail_before_any_download(tmp_path):
    with pytest.raises(RecoverError, match="only: 'weights' is not one of diff, lora"):
        DownloadConfig(repo="a/b", out=str(tmp_path), only="weights")
    with pytest.raises(RecoverError, match=r"repo: 'a/b/c' is not a Hugging Face repo id"):
        DownloadConfig(repo="a/b/c", out=str(tmp_path))


def test_a_downloaded_diff_is_verified_against_its_manifest(published, tmp_path):
    folder = as_snapshot(published, tmp_path / "snapshot")
    result = verify_download(folder, "diff")
    assert result["kind"] == "diff" and result["tensors"] == 21
    assert result["files"] == ["tokenizer.model", "tokenizer_config.json"]
    # The command: offline, an existing local_dir is what snapshot_download returns; then the same checks.
    r = run_download("--repo", "zjunlp/knowlm-13b-diff", "--out", str(folder), "--only", "diff", HF_HUB_OFFLINE="1")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["verified"]["kind"] == "diff" and summary["out"] == str(folder.resolve())


def test_a_damaged_or_incomplete_download_is_named(published, tmp_path):
    folder = as_snapshot(published, tmp_path / "snapshot")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    name, shard = next(iter(index["weight_map"].items()))
    data = bytearray((folder / shard).read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor's data: the file size is still right
    (folder / shard).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=rf"{shard}: tensor '.*' does not match the diff checksum"):
        verify_download(folder, "diff")
    r = run_download("--repo", "o/n", "--out", str(folder), "--only", "diff", HF_HUB_OFFLINE="1")
    assert r.returncode == 1 and "recover: integrity check failed:" in r.stderr, r.stderr
    shutil.copyfile(published / shard, folder / shard)
    (folder / "tokenizer.model").unlink()  # a download interrupted before its last file
    with pytest.raises(IntegrityError, match=r"tokenizer.model: listed in .*recover-manifest.json but not downloaded"):
        verify_download(folder, "diff")
    # A truncated shard of a diff without a manifest (CaMA's): caught by the header check.
    (folder / MANIFEST_NAME).unlink()
    shutil.copyfile(published / "tokenizer.model", folder / "tokenizer.model")
    assert verify_download(folder, "diff")["manifest"] is None
    (folder / shard).write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(RecoverError, match=rf"{shard}: truncated safetensors file"):
        verify_download(folder, "diff")


def test_a_downloaded_adapter_needs_its_config_and_weights(tmp_path):
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(RecoverError, match="not a LoRA adapter: no adapter_model.safetensors/.bin"):
        verify_download(folder, "lora")
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    assert verify_download(folder)["kind"] == "lora adapter"
