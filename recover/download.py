"""``download``: fetch published weights from the Hugging Face Hub, then check them — what CaMA's
``tools/download.py`` did, plus the manifest verification.

    python -m recover download --repo OWNER/NAME --out DIR [--only diff|lora] [--revision R]

``huggingface_hub.snapshot_download`` into ``DIR`` (``local_dir``): only the files ``--only`` asks
for (``allow_patterns``), and a rerun after an interruption resumes — finished files are kept,
partial ones continue. Then :func:`verify_download` checks what arrived: a diff with
``recover-manifest.json`` is hashed tensor by tensor against its ``diff`` checksums and its tokenizer
files against theirs (``recover verify``); a diff without one (CaMA's) is checked to be a readable
checkpoint; an adapter must have its config and weights.

Offline (no route to the Hub, or ``HF_HUB_OFFLINE=1``), an unknown repo or revision, a gated repo:
one :class:`RecoverError` naming the repo and the revision, never a traceback from the HTTP stack.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from recover.config import DownloadConfig
from recover.errors import IntegrityError, RecoverError

# What a checkpoint (our diff, CaMA's diff, a full model) is made of; the rest of a repo (README,
# images, training logs) is not needed to restore it.
CHECKPOINT_FILES = ["config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
                    "pytorch_model*.bin", "pytorch_model.bin.index.json", "recover-manifest.json",
                    "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "added_tokens.json"]
ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "adapter_model.bin",
                 "tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
PATTERNS: dict[str | None, list[str] | None] = {"diff": CHECKPOINT_FILES, "lora": ADAPTER_FILES, None: None}


def _hub_error(cfg: DownloadConfig, exc: BaseException) -> RecoverError:
    from huggingface_hub import errors

    where = f"{cfg.repo}" + (f" at revision {cfg.revision!r}" if cfg.revision else "")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if isinstance(exc, errors.RevisionNotFoundError):
        why = f"the Hub has no revision {cfg.revision!r} of it"
    elif isinstance(exc, errors.GatedRepoError):
        why = "the repo is gated: accept its terms on the Hub and log in (`hf auth login`) or set HF_TOKEN"
    elif isinstance(exc, errors.RepositoryNotFoundError):
        why = "the Hub has no such repo (or it is private: log in or set HF_TOKEN)"
    elif isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)):
        why = ("HF_HUB_OFFLINE is set, and nothing of it is in the local cache; unset it on a machine that "
               "reaches the Hub" if offline else
               "the Hub cannot be reached from this machine (offline? a proxy? HF_ENDPOINT?), and nothing of "
               "it is in the local cache. Download on a machine with internet access and copy the folder "
               "here: the same command then checks it without the Hub (HF_HUB_OFFLINE=1)")
    else:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        why = f"{type(exc).__name__}: {first}"
    return RecoverError(f"downloading {where} into {cfg.out} failed: {why}")


def download(cfg: DownloadConfig) -> dict[str, Any]:
    """Fetch the repo's files into ``cfg.out`` (resuming), then verify them; a JSON-able summary."""
    t0 = time.monotonic()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise RecoverError(f"output {out} exists and is not a directory")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub import errors as hub_errors
    except ImportError:
        raise RecoverError("recover download needs huggingface_hub (the train extra: make install-train)") from None
    try:
        path = snapshot_download(cfg.repo, revision=cfg.revision, local_dir=str(out),
                                 allow_patterns=PATTERNS[cfg.only])
    except (hub_errors.HfHubHTTPError, hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled,
            hub_errors.RepositoryNotFoundError, hub_errors.RevisionNotFoundError, OSError) as exc:
        raise _hub_error(cfg, exc) from None
    summary: dict[str, Any] = {"command": "download", "repo": cfg.repo, "revision": cfg.revision, "out": str(path),
                               "only": cfg.only, "download_seconds": round(time.monotonic() - t0, 2)}
    if cfg.verify:
        summary["verified"] = verify_download(path, cfg.only)
    return summary


def verify_download(directory: str | os.PathLike, only: str | None = None) -> dict[str, Any]:
    """Check a downloaded folder: a diff against its recover-manifest.json (every tensor's checksum and
    the tokenizer files'), a checkpoint without one for readability, an adapter for its files."""
    d = Path(directory)
    if not d.is_dir():
        raise RecoverError(f"download folder not found: {d}")
    if only == "lora" or (only is None and (d / "adapter_config.json").is_file()):
        missing = [n for n in ("adapter_config.json",) if not (d / n).is_file()]
        weights = [n for n in ("adapter_model.safetensors", "adapter_model.bin") if (d / n).is_file()]
        if missing or not weights:
            raise RecoverError(f"{d}: not a LoRA adapter: {', '.join(missing) or 'no adapter_model.safetensors/.bin'} "
                               f"(incomplete download? run it again to resume)")
        return {"kind": "lora adapter", "files": sorted([*weights, "adapter_config.json"])}
    from recover.checkpoint import Checkpoint, contained
    from recover.manifest import MANIFEST_NAME, file_sha256, load_manifest, verify_checkpoint

    manifest = d / MANIFEST_NAME
    if not manifest.is_file():
        with Checkpoint(d, "downloaded checkpoint") as ckpt:  # headers against file sizes: truncation shows
            return {"kind": "checkpoint", "manifest": None, "tensors": len(ckpt.tensors),
                    "note": f"no {MANIFEST_NAME}: tensors not checksummed (a CaMA-style diff)"}
    m = load_manifest(manifest)
    for name, digest in (m.data.get("files") or {}).items():
        f = contained(d, name, f"{manifest}: file")
        if not f.is_file():
            raise IntegrityError(f"{f}: listed in {manifest} but not downloaded (run the download again)")
        if file_sha256(f) != digest:
            raise IntegrityError(f"{f}: does not match its checksum in {manifest}")
    result = verify_checkpoint(d, manifest, role="diff")
    return {"kind": "diff", "manifest": str(manifest), "tensors": result["tensors"],
            "files": sorted((m.data.get("files") or {}))}
