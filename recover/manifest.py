"""Per-tensor checksums of the raw, diff and tuned checkpoints, and checking a checkpoint against them.

A tensor's checksum is the SHA-256 of its bytes as stored (little-endian, C-contiguous, the dtype of
the file) with one normalisation: −0.0 is hashed as +0.0. Fed slice by slice in storage order, it
is computed while streaming and does not depend on how the file was sharded. SHA-256 runs at
~1.3 GB/s with the CPU's SHA extensions (faster than BLAKE2 here).

Why −0.0: a tuned weight that is −0.0 (a tiny negative rounded to float16, say) cannot come out of
raw + diff when the raw weight is not zero, because IEEE addition gives x + (−x) = +0.0. No additive
diff can restore that sign, so checksums compare values: −0.0 and +0.0 are the same number and every
computation with them gives the same result. Every other bit is compared exactly; make-diff checks
that apply will reproduce each tuned tensor under this rule before it writes the diff.

Manifest layout (``recover-manifest.json``, written by ``make-diff`` into the diff directory)::

    {"format": "cama-recover-manifest", "version": 1, "hash": "sha256",
     "arithmetic": "...how apply must compute...",
     "tuned_dtype": "float16", "tuned_sum": 1234.5,
     "files": {"tokenizer.model": "<sha256>", ...},
     "tensors": {"model.embed_tokens.weight": {"shape": [32000, 5120],
                    "raw":   {"dtype": "float16", "sha256": "..."},
                    "diff":  {"dtype": "float32", "sha256": "..."},
                    "tuned": {"dtype": "float16", "sha256": "..."}}, ...}}
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common.atomic import write_json
from common.jsonl import read_json_object
from recover.checkpoint import Checkpoint, dtype_from_name, dtype_name
from recover.errors import IntegrityError, RecoverError

FORMAT = "cama-recover-manifest"
VERSION = 1
MANIFEST_NAME = "recover-manifest.json"
ROLES = ("raw", "diff", "tuned")
CHUNK_ELEMS = 1 << 24


def new_hash() -> "hashlib._Hash":
    return hashlib.sha256()


_local = threading.local()


def canonical(chunk: torch.Tensor) -> torch.Tensor:
    """``chunk`` with −0.0 turned into +0.0 (``x + 0.0`` in IEEE arithmetic), in a per-thread buffer."""
    if not chunk.is_floating_point():
        return chunk
    bufs = _local.__dict__.setdefault("bufs", {})
    buf = bufs.get(chunk.dtype)
    if buf is None or buf.numel() < chunk.numel():
        buf = bufs[chunk.dtype] = torch.empty(chunk.numel(), dtype=chunk.dtype)
    return torch.add(chunk.reshape(-1), 0.0, out=buf[:chunk.numel()])


def update(h: "hashlib._Hash", chunk: torch.Tensor, is_canonical: bool = False) -> None:
    """Feed ``chunk`` to ``h``; ``is_canonical``: the caller knows it holds no −0.0 (saves a pass)."""
    if chunk.numel():
        data = chunk.reshape(-1) if is_canonical else canonical(chunk)
        h.update(memoryview(data.view(torch.uint8).numpy()))


def file_sha256(path: Path) -> str:
    h = new_hash()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


@dataclass
class Manifest:
    path: Path
    data: dict[str, Any]

    @property
    def tensors(self) -> dict[str, dict[str, Any]]:
        return self.data["tensors"]

    def expect(self, name: str, role: str) -> dict[str, Any] | None:
        entry = self.tensors.get(name)
        return None if entry is None else entry.get(role)

    def check_structure(self, ckpt: Checkpoint, role: str) -> None:
        """Names, shapes and dtypes of ``ckpt`` against the manifest's ``role``: cheap, before any work."""
        names = set(self.tensors)
        missing = [k for k in self.tensors if k not in ckpt.tensors]
        if missing:
            raise IntegrityError(f"{ckpt.what} {ckpt.dir}: tensor {missing[0]!r} listed in {self.path} is missing")
        extra = [k for k in ckpt.tensors if k not in names]
        if extra:
            raise IntegrityError(f"{ckpt.what} {ckpt.dir}: tensor {extra[0]!r} ({ckpt.tensors[extra[0]].file.name}) "
                                 f"is not in {self.path}")
        for name, entry in self.tensors.items():
            info = ckpt.tensors[name]
            if list(info.shape) != entry["shape"]:
                raise IntegrityError(f"{info.file}: tensor {name!r} has shape {list(info.shape)}, {self.path} "
                                     f"says {entry['shape']}")
            want = entry[role]["dtype"]
            if dtype_name(info.dtype) != want:
                raise IntegrityError(f"{info.file}: tensor {name!r} is {dtype_name(info.dtype)}, {self.path} says "
                                     f"the {role} model's is {want}")

    def save(self) -> None:
        write_json(self.path, self.data, indent=1)


def new_manifest(path: Path, **fields: Any) -> Manifest:
    return Manifest(Path(path), {"format": FORMAT, "version": VERSION, "hash": "sha256", **fields, "tensors": {}})


def load_manifest(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    data = read_json_object(path, RecoverError, missing="manifest", kind="JSON manifest", expect=f"a {FORMAT} file")
    if data.get("format") != FORMAT:
        raise RecoverError(f"{path}: not a {FORMAT} file")
    if data.get("version") != VERSION or data.get("hash") != "sha256":
        raise RecoverError(f"{path}: manifest version {data.get('version')} / hash {data.get('hash')} not supported")
    tensors = data.get("tensors")
    if not isinstance(tensors, dict):
        raise RecoverError(f"{path}: no 'tensors' mapping")
    for name, entry in tensors.items():
        try:
            assert isinstance(entry["shape"], list)
            for role in ROLES:
                dtype_from_name(entry[role]["dtype"])
                assert isinstance(entry[role]["sha256"], str)
        except (AssertionError, KeyError, TypeError, RecoverError):
            raise RecoverError(f"{path}: tensor {name!r}: malformed entry") from None
    return Manifest(path, data)


def tensor_sha256(ckpt: Checkpoint, name: str, chunk_elems: int = CHUNK_ELEMS) -> str:
    h = new_hash()
    for _, chunk in ckpt.chunks(name, chunk_elems):
        update(h, chunk)
    return h.hexdigest()


def verify_checkpoint(directory: str | os.PathLike, manifest: str | os.PathLike, role: str | None = None,
                      chunk_elems: int = CHUNK_ELEMS) -> dict[str, Any]:
    """Hash every tensor of ``directory`` and compare with the manifest.

    ``role`` (raw, diff or tuned) says which checksums the checkpoint must match; without it the
    checkpoint must match one of them entirely, and the summary says which. Raises IntegrityError
    naming the first mismatching tensor and its file.
    """
    m = load_manifest(manifest)
    roles = [role] if role else list(ROLES)
    for r in roles:
        if r not in ROLES:
            raise RecoverError(f"unknown role {r!r} (one of {', '.join(ROLES)})")
    with Checkpoint(directory, "checkpoint") as ckpt:
        # Structure first: it also narrows the candidate roles by dtype before hashing.
        candidates, first_error = [], None
        for r in roles:
            try:
                m.check_structure(ckpt, r)
                candidates.append(r)
            except IntegrityError as exc:
                first_error = first_error or exc
        if not candidates:
            raise first_error  # type: ignore[misc]
        for name in m.tensors:
            digest = tensor_sha256(ckpt, name, chunk_elems)
            candidates = [r for r in candidates if m.tensors[name][r]["sha256"] == digest]
            if not candidates:
                which = f"the {role} checksum" if role else "its raw, diff or tuned checksum"
                raise IntegrityError(f"{ckpt.tensors[name].file}: tensor {name!r} does not match {which} in "
                                     f"{manifest} (sha256 {digest[:16]}…)")
    return {"checkpoint": str(directory), "manifest": str(manifest), "matches": candidates,
            "tensors": len(m.tensors)}
