"""Reading Hugging Face checkpoints one tensor (or one slice of a tensor) at a time.

A checkpoint directory holds ``model.safetensors`` or ``model-*-of-*.safetensors`` shards with
``model.safetensors.index.json``, or the older ``pytorch_model*.bin`` shards with their index.

Safetensors shards are read with positioned reads into a small reusable buffer rather than through
``safetensors.safe_open``'s mmap: mapped file pages count towards the process's resident set for as
long as the shard stays open, so reading a 10 GB shard through a mapping costs 10 GB of RSS even when
one tensor at a time is used. The format is simple (8-byte little-endian header length, a JSON header
of dtype/shape/data_offsets, the tensor bytes) and the header is validated here against the file
size, so a truncated download is reported before any work, naming the file and the tensor.

``.bin`` shards are loaded with ``torch.load(weights_only=True, mmap=True)``: only tensors, no code
from the pickle, pages faulted in as tensors are read.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import torch

from common.jsonl import parse_json, read_json_object
from recover.config import DTYPE_ALIASES, canonical_dtype
from recover.errors import RecoverError

# safetensors dtype codes ↔ torch dtypes (the ones a language-model checkpoint can hold).
ST_TO_TORCH: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
TORCH_TO_ST = {v: k for k, v in ST_TO_TORCH.items()}
FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
DTYPE_NAMES = {alias: getattr(torch, name) for alias, name in DTYPE_ALIASES.items()}

SAFE_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
MAX_HEADER = 100 << 20


def contained(directory: Path, name: Any, where: str) -> Path:
    """``directory / name`` for a file name read from a file (an index's shard, a manifest's entry),
    refused by name before anything is opened when it would leave ``directory``: an absolute path or
    a ``..`` component. (Symlinks inside are fine: a Hugging Face snapshot's files link to its blobs.)"""
    if not isinstance(name, str) or not name or "\0" in name:
        raise RecoverError(f"{where} {name!r} is not a file name")
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or ".." in parts or "\\" in name:
        raise RecoverError(f"{where} {name!r} leaves the checkpoint folder {directory} (absolute path or '..'): "
                           f"refused, nothing was read from it")
    return Path(directory) / name


def dtype_from_name(name: str, where: str = "dtype") -> torch.dtype:
    return DTYPE_NAMES[canonical_dtype(name, where)]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path
    offset: int | None = None   # absolute byte offset in a safetensors file; None for .bin

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @property
    def row_len(self) -> int:
        """Elements per row along dim 0 (chunks are cut on row boundaries)."""
        return math.prod(self.shape[1:]) if len(self.shape) > 1 else 1


def read_safetensors_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Tensor infos of one safetensors file, validated against its size; and its ``__metadata__``."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise RecoverError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise RecoverError(f"{path}: truncated or not a safetensors file "
                                   f"(header of {n} bytes announced, file holds {size})")
            raw = f.read(n)
    except FileNotFoundError:
        raise RecoverError(f"shard not found: {path}") from None
    try:
        header = parse_json(raw)
    except ValueError as exc:  # not UTF-8, not JSON, or nested too deeply
        raise RecoverError(f"{path}: not a safetensors file (header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise RecoverError(f"{path}: not a safetensors file (header is not a mapping)")
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + n
    infos: dict[str, TensorInfo] = {}
    data_end = 0
    for name, entry in header.items():
        try:
            dtype = ST_TO_TORCH[entry["dtype"]]
            shape = tuple(int(x) for x in entry["shape"])
            start, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise RecoverError(f"{path}: tensor {name!r}: unsupported or malformed header entry {entry!r}") from None
        info = TensorInfo(name, dtype, shape, path, base + start)
        if end - start != info.nbytes:
            raise RecoverError(f"{path}: tensor {name!r}: {end - start} bytes for shape {list(shape)} "
                               f"{entry['dtype']} (expected {info.nbytes})")
        if base + end > size:
            raise RecoverError(f"{path}: truncated safetensors file: tensor {name!r} ends at byte {base + end}, "
                               f"the file holds {size}")
        data_end = max(data_end, end)
        infos[name] = info
    if base + data_end != size:
        raise RecoverError(f"{path}: {size - base - data_end} bytes after the last tensor (corrupt safetensors file)")
    return infos, metadata


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy non-zip file
    except FileNotFoundError:
        raise RecoverError(f"shard not found: {path}") from None
    except Exception as exc:  # UnpicklingError for code in the pickle, RuntimeError for a torn zip
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecoverError(f"{path}: not a plain-tensor checkpoint (refused by torch.load(weights_only=True): "
                           f"{first})") from None
    if not isinstance(obj, dict):
        raise RecoverError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise RecoverError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
    return obj


class Checkpoint:
    """The tensors of one checkpoint directory, by name, read lazily."""

    def __init__(self, directory: str | os.PathLike, what: str = "checkpoint") -> None:
        self.dir = Path(directory)
        self.what = what
        if not self.dir.is_dir():
            raise RecoverError(f"{what} directory not found: {self.dir}")
        self.tensors: dict[str, TensorInfo] = {}
        self.format = ""
        self._bins: dict[Path, dict[str, torch.Tensor]] = {}
        self._files: dict[Path, Any] = {}
        self._open()

    # -- discovery ------------------------------------------------------------------------
    def _shards(self, index_name: str, single: str, pattern: str) -> list[Path] | None:
        index = self.dir / index_name
        if index.is_file():
            weight_map = read_json_object(index, RecoverError, kind="checkpoint index").get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise RecoverError(f"{index}: not a checkpoint index (no 'weight_map' of tensor name → shard file)")
            self._index = (index, weight_map)
            # Every entry by name first: nothing outside the folder is even looked at.
            for tensor, name in weight_map.items():
                contained(self.dir, name, f"{index}: tensor {tensor!r}: shard")
            files = list(dict.fromkeys(weight_map.values()))
            for name in files:
                if not (self.dir / name).is_file():
                    raise RecoverError(f"{index}: shard {name!r} is missing from {self.dir}")
            return [self.dir / name for name in files]
        if (self.dir / single).is_file():
            return [self.dir / single]
        found = sorted(self.dir.glob(pattern))
        return found or None

    def _open(self) -> None:
        self._index = None
        shards = self._shards(SAFE_INDEX, "model.safetensors", "model-*-of-*.safetensors")
        if shards:
            self.format = "safetensors"
            for shard in shards:
                self._add(read_safetensors_header(shard)[0], shard)
        else:
            shards = self._shards(BIN_INDEX, "pytorch_model.bin", "pytorch_model-*-of-*.bin")
            if not shards:
                raise RecoverError(f"{self.what} {self.dir}: no model.safetensors, safetensors index, "
                                   f"pytorch_model.bin or .bin index found")
            self.format = "bin"
            for shard in shards:
                state = _load_bin(shard)
                self._bins[shard] = state
                self._add({k: TensorInfo(k, v.dtype, tuple(v.shape), shard) for k, v in state.items()}, shard)
        if self._index is not None:
            index, weight_map = self._index
            for name, file in weight_map.items():
                info = self.tensors.get(name)
                if info is None:
                    raise RecoverError(f"{index}: tensor {name!r} is listed in shard {file!r} but not stored there")
                if info.file.name != file:
                    raise RecoverError(f"{index}: tensor {name!r} is listed in {file!r} but stored in "
                                       f"{info.file.name!r}")
            extra = sorted(set(self.tensors) - set(weight_map))
            if extra:
                raise RecoverError(f"{index}: tensor {extra[0]!r} in {self.tensors[extra[0]].file.name} is not in "
                                   f"the index")

    def _add(self, infos: dict[str, TensorInfo], shard: Path) -> None:
        for name, info in infos.items():
            if name in self.tensors:
                raise RecoverError(f"{shard}: tensor {name!r} is also stored in {self.tensors[name].file}")
            self.tensors[name] = info

    # -- reading ----------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def names(self) -> list[str]:
        return list(self.tensors)

    def read_into(self, name: str, start: int, out: torch.Tensor) -> torch.Tensor:
        """Fill the 1-D ``out`` (the tensor's dtype) with elements ``start…start+len(out)`` of ``name``."""
        info = self.tensors[name]
        n = out.numel()
        if out.dtype != info.dtype or start + n > info.numel:
            raise ValueError(f"bad read of {name}: {out.dtype} [{start}:{start + n}] of {info.dtype} {info.numel}")
        if info.offset is None:
            out.copy_(self._bins[info.file][name].reshape(-1)[start:start + n])
            return out
        f = self._files.get(info.file)
        if f is None:
            f = self._files[info.file] = open(info.file, "rb", buffering=0)  # noqa: SIM115
        view = memoryview(out.view(torch.uint8).numpy()) if n else memoryview(b"")
        pos = info.offset + start * info.dtype.itemsize
        done = 0
        while done < len(view):
            got = os.preadv(f.fileno(), [view[done:]], pos + done)
            if got == 0:
                raise RecoverError(f"{info.file}: tensor {name!r}: file ended while reading (truncated?)")
            done += got
        return out

    def get(self, name: str) -> torch.Tensor:
        """A whole tensor (small tensors, LoRA and Meta conversion)."""
        info = self.tensors[name]
        if info.offset is None:
            return self._bins[info.file][name]
        out = torch.empty(info.numel, dtype=info.dtype)
        return self.read_into(name, 0, out).view(info.shape)

    def chunks(self, name: str, chunk_elems: int,
               buf: torch.Tensor | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, 1-D slice)`` pieces of ``name`` cut on row boundaries, read into a reused buffer."""
        info = self.tensors[name]
        for start, n in row_chunks(info, chunk_elems):
            if buf is None or buf.numel() < n or buf.dtype != info.dtype:
                buf = torch.empty(max(n, min(chunk_elems, info.numel)), dtype=info.dtype)
            yield start, self.read_into(name, start, buf[:n])

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._bins.clear()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def row_chunks(info: TensorInfo, chunk_elems: int) -> Iterator[tuple[int, int]]:
    """``(start, count)`` element ranges covering the tensor, each a whole number of rows where a row fits."""
    row = info.row_len
    step = max(row, (chunk_elems // row) * row) if row else chunk_elems
    total = info.numel
    if total == 0:
        yield 0, 0
        return
    for start in range(0, total, step):
        yield start, min(step, total - start)


def compare_structure(a: Checkpoint, b: Checkpoint, *, same_dtype: bool = False) -> None:
    """Same tensor names and shapes in both (and dtypes if asked); the error names the first difference."""
    missing = [k for k in a.tensors if k not in b.tensors]
    if missing:
        raise RecoverError(f"{b.what} {b.dir}: tensor {missing[0]!r} of the {a.what} "
                           f"({a.tensors[missing[0]].file.name}) is missing"
                           + (f" ({len(missing)} missing in all)" if len(missing) > 1 else ""))
    extra = [k for k in b.tensors if k not in a.tensors]
    if extra:
        raise RecoverError(f"{b.what} {b.dir}: extra tensor {extra[0]!r} in {b.tensors[extra[0]].file.name}, not in "
                           f"the {a.what} {a.dir}" + (f" ({len(extra)} extra in all)" if len(extra) > 1 else ""))
    for name, ia in a.tensors.items():
        ib = b.tensors[name]
        if ia.shape != ib.shape:
            raise RecoverError(f"tensor {name!r}: shape {list(ia.shape)} in the {a.what} ({ia.file}) but "
                               f"{list(ib.shape)} in the {b.what} ({ib.file})")
        if same_dtype and ia.dtype != ib.dtype:
            raise RecoverError(f"tensor {name!r}: dtype {dtype_name(ia.dtype)} in the {a.what} ({ia.file}) but "
                               f"{dtype_name(ib.dtype)} in the {b.what} ({ib.file})")
