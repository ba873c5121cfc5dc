"""Which base model is this? A fingerprint of a Hugging Face checkpoint folder that survives a move.

A LoRA adapter is only meaningful on the base it was trained on. peft records that base as the path it
was loaded from (``base_model_name_or_path``), which breaks as soon as a run folder is moved or copied
to another machine, and says nothing when a *different* model sits at the same path. So ``train.lora``
also writes ``base_model.json`` next to the adapter, and ``generate --lora`` compares the fingerprint
of the base it is given with it.

A fingerprint is the sha256 of the model's ``config.json`` (without the keys that name a place or a
library version) and of its tensors:

- ``manifest``: when the folder holds a ``recover-manifest.json`` (a model restored by ``recover``),
  the checksums of its tuned tensors as recorded there — exact, and free to read;
- ``sampled``: otherwise, every tensor's name, dtype, shape and the first and last 4 KiB of its bytes,
  read from the safetensors headers with a few seeks per tensor (milliseconds for a 13B model instead
  of a minute of hashing 26 GB). Two trainings of one architecture differ in every tensor, so their
  samples differ; the same weights re-sharded into other files give the same fingerprint.

Only the standard library: it runs before torch is imported, so a wrong base is refused at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

from common.atomic import write_json
from common.jsonl import parse_json, read_json_object
from train.config import TrainError

RECORD = "base_model.json"            # written next to adapter_config.json
MANIFEST = "recover-manifest.json"    # recover's per-tensor checksums (recover/manifest.py documents it)
SAMPLE = 4096
MAX_HEADER = 100 << 20
# Keys of config.json that say where or by what a checkpoint was written, not what the model is.
_PLACE_KEYS = ("_name_or_path", "transformers_version", "_commit_hash")


class BaseIdentityError(TrainError):
    """A checkpoint folder whose identity cannot be read (no config.json, a damaged safetensors header)."""


def _config_bytes(folder: Path) -> bytes:
    config = read_json_object(folder / "config.json", BaseIdentityError, "config.json of the base model",
                              "config.json")
    for key in _PLACE_KEYS:
        config.pop(key, None)
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _manifest_tensors(folder: Path) -> list[tuple[str, str]] | None:
    """(name, sha256) of the tuned tensors a recover manifest in ``folder`` lists, or None."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    manifest = read_json_object(path, BaseIdentityError, "recover manifest")
    tensors = manifest.get("tensors")
    if manifest.get("format") != "cama-recover-manifest" or not isinstance(tensors, dict) or not tensors:
        return None
    out = []
    for name, entry in tensors.items():
        tuned = entry.get("tuned") if isinstance(entry, dict) else None
        sha = tuned.get("sha256") if isinstance(tuned, dict) else None
        if not isinstance(sha, str):
            return None
        out.append((name, sha))
    return sorted(out)


def _safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The header of a safetensors file and where its data starts."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise BaseIdentityError(f"{path}: not a safetensors file (shorter than its 8-byte header size)")
        (size,) = struct.unpack("<Q", head)
        if size > MAX_HEADER:
            raise BaseIdentityError(f"{path}: not a safetensors file (a header of {size} bytes)")
        raw = f.read(size)
    try:
        header = parse_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BaseIdentityError(f"{path}: unreadable safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise BaseIdentityError(f"{path}: unreadable safetensors header (not a JSON object)")
    return header, 8 + size


def _sampled_tensors(folder: Path) -> list[tuple[str, str]]:
    """(name, "dtype shape sha256-of-samples") of every tensor in the folder's safetensors files."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        weights = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        raise BaseIdentityError(f"{folder}: no safetensors weights to fingerprint"
                                + (f" (only {', '.join(weights)})" if weights else ""))
    out = []
    for path in files:
        header, start = _safetensors_header(path)
        with path.open("rb") as f:
            for name, info in sorted(header.items()):
                if name == "__metadata__" or not isinstance(info, dict):
                    continue
                try:
                    begin, end = (int(x) for x in info["data_offsets"])
                    dtype, shape = str(info["dtype"]), [int(x) for x in info["shape"]]
                except (KeyError, TypeError, ValueError):
                    raise BaseIdentityError(f"{path}: tensor {name!r} has a malformed header entry") from None
                h = hashlib.sha256()
                f.seek(start + begin)
                h.update(f.read(min(SAMPLE, end - begin)))
                if end - begin > SAMPLE:
                    f.seek(start + max(begin + SAMPLE, end - SAMPLE))
                    h.update(f.read(end - max(begin + SAMPLE, end - SAMPLE)))
                out.append((name, f"{dtype} {shape} {h.hexdigest()}"))
    return sorted(out)


def _digest(config: bytes, method: str, tensors: list[tuple[str, str]]) -> str:
    h = hashlib.sha256(b"cama-base-fingerprint/1\n" + config + b"\n" + method.encode() + b"\n")
    for name, value in tensors:
        h.update(f"{name}\t{value}\n".encode("utf-8"))
    return h.hexdigest()


def base_fingerprint(folder: str | os.PathLike) -> dict[str, str]:
    """``{"fingerprint", "method", "sampled"}`` of a checkpoint folder: ``fingerprint`` by the
    ``manifest`` where the folder has one, else equal to ``sampled`` (always computed, so an adapter
    recorded on a base with a manifest still recognises a copy of it without one)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BaseIdentityError(f"base model folder not found: {folder}")
    config = _config_bytes(folder)
    sampled = _digest(config, "sampled", _sampled_tensors(folder))
    tensors = _manifest_tensors(folder)
    if tensors is None:
        return {"fingerprint": sampled, "method": "sampled", "sampled": sampled}
    return {"fingerprint": _digest(config, "manifest", tensors), "method": "manifest", "sampled": sampled}


def write_record(adapter_dir: str | os.PathLike, base: str | os.PathLike) -> dict[str, Any]:
    """``base_model.json`` in ``adapter_dir``: the base's fingerprint and, for people, where it was."""
    record = {**base_fingerprint(base), "path": str(Path(base).resolve())}
    write_json(Path(adapter_dir) / RECORD, record, sort_keys=True)
    return record


def read_record(adapter_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The adapter's ``base_model.json`` (None for adapters written before it existed)."""
    path = Path(adapter_dir) / RECORD
    if not path.is_file():
        return None
    record = read_json_object(path, BaseIdentityError, "base record")
    if not all(isinstance(record.get(k), str) for k in ("fingerprint", "sampled")) or \
            record.get("method") not in ("manifest", "sampled"):
        raise BaseIdentityError(f"{path}: expected {{\"fingerprint\", \"method\": manifest|sampled, \"sampled\"}}")
    return record


def same_base(record: dict[str, Any], base: str | os.PathLike) -> tuple[bool, dict[str, str]]:
    """Whether ``base`` is the model ``record`` describes, and ``base``'s fingerprint: by the manifests
    when both sides have one, else by the sampled tensors."""
    mine = base_fingerprint(base)
    if record["method"] == "manifest" and mine["method"] == "manifest":
        return record["fingerprint"] == mine["fingerprint"], mine
    return record["sampled"] == mine["sampled"], mine
