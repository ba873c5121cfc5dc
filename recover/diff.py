"""``make-diff``: the published diff (tuned − raw) and its manifest, streamed slice by slice.

Two passes over raw and tuned. The first hashes both and checks, slice by slice, that apply's exact
computation (:func:`recover.arith.restore`: raw + diff in float32, rounded to the tuned dtype)
gives back the tuned bits. A tensor for which float32 cannot (a weight that moved across many
binades, or float32 tuned weights, where ``t - r`` is itself rounded) is stored in float64: the
difference of two float16 numbers is always exact in float64, and of two float32 numbers whenever
their magnitudes are within 2**28 of each other. A tensor that even float64 cannot restore is an
error naming it. The second pass computes the diff and writes it, so a diff written by make-diff is
always restored bit for bit by apply, and the manifest's tuned checksums prove it afterwards. The one
exception is the sign of zero: a tuned −0.0 over a non-zero raw weight comes back as +0.0, since
x + (−x) = +0.0 in IEEE arithmetic; checksums count the two equal (see :mod:`recover.manifest`).

The diff directory is a Hugging Face checkpoint (config.json with ``torch_dtype: float32``, tokenizer
files of the tuned model, safetensors shards + index) plus ``recover-manifest.json``, so a plain
``from_pretrained`` + add loop restores it too.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from recover import arith
from recover.checkpoint import FLOAT_DTYPES, Checkpoint, compare_structure, dtype_from_name, dtype_name, row_chunks
from recover.config import MakeDiffConfig
from recover.errors import RecoverError
from recover.hffiles import check_tokenizer, copy_tokenizer, embed_rows, read_config, tokenizer_files, write_config
from recover.manifest import MANIFEST_NAME, file_sha256, new_hash, new_manifest, update
from recover.outdir import atomic_dir, check_target
from recover.progress import Progress
from recover.stream import Pipeline
from recover.writer import Planned, ShardedWriter

ARITHMETIC = ("tuned = to(tuned dtype)(acc(raw) + acc(diff)), acc = float32, or float64 where the diff "
              "tensor is float64; round to nearest even")


def chunk_elems(chunk_mb: int) -> int:
    return max(1, chunk_mb << 20) // 4


def _check_floats(ckpt: Checkpoint) -> None:
    for name, info in ckpt.tensors.items():
        if info.dtype not in FLOAT_DTYPES:
            raise RecoverError(f"{info.file}: tensor {name!r} is {dtype_name(info.dtype)}, not a floating-point weight")


def _pairs(raw: Checkpoint, other: Checkpoint, name: str, step: int, pipe: Pipeline):
    """Aligned slices of ``name`` from two checkpoints, read into the pipeline's alternating buffers."""
    ri, oi = raw.tensors[name], other.tensors[name]
    for start, n in row_chunks(ri, step):
        sc = pipe.next_slot()
        r = raw.read_into(name, start, sc.get("in_a", ri.dtype, n))
        o = other.read_into(name, start, sc.get("in_b", oi.dtype, n))
        yield sc, r, o


def make_diff(cfg: MakeDiffConfig) -> dict[str, Any]:
    t0 = time.monotonic()
    base_dtype = dtype_from_name(cfg.diff_dtype, "diff_dtype")  # float32 or float64 (MakeDiffConfig checks)
    check_target(cfg.out, cfg.force, (cfg.raw, cfg.tuned))
    step = chunk_elems(cfg.chunk_mb)
    with Checkpoint(cfg.raw, "raw model") as raw, Checkpoint(cfg.tuned, "tuned model") as tuned, Pipeline() as pipe:
        compare_structure(raw, tuned)
        _check_floats(raw)
        _check_floats(tuned)
        config = read_config(tuned.dir)
        rows, embed = embed_rows(tuned.tensors)
        check_tokenizer(tuned.dir, config, rows, f"{embed} in {tuned.dir}")
        names = raw.names()
        total_bytes = sum(raw.tensors[n].nbytes + tuned.tensors[n].nbytes for n in names)

        # Pass 1: checksums of raw and tuned, the exactness of the float32 diff, the whole-model sum.
        digests: dict[str, dict[str, str]] = {}
        diff_dtypes: dict[str, torch.dtype] = {}
        tuned_sum = [0.0]
        bar = Progress(total_bytes, "make-diff: check", cfg.progress)
        for name in names:
            hr, ht = new_hash(), new_hash()
            t_dtype = tuned.tensors[name].dtype
            exact = True
            for sc, r, t in _pairs(raw, tuned, name, step, pipe):
                pipe.background(update, hr, r)
                pipe.background(update, ht, t)
                tuned_sum[0] += float(t.sum(dtype=torch.float64))
                if exact:
                    d = arith.subtract(t, r, base_dtype, sc)
                    exact = arith.same_bits(arith.restore(r, d, t_dtype, sc), t)
                bar.update(r.numel() * r.dtype.itemsize + t.numel() * t.dtype.itemsize)
            pipe.drain()
            digests[name] = {"raw": hr.hexdigest(), "tuned": ht.hexdigest()}
            diff_dtypes[name] = base_dtype if exact else _wider_or_fail(raw, tuned, name, step, pipe)
        bar.close()

        # Pass 2: the diff itself.
        plan = [Planned(n, diff_dtypes[n], raw.tensors[n].shape) for n in names]
        manifest_info: dict[str, Any] = {}
        with atomic_dir(cfg.out, cfg.force, (cfg.raw, cfg.tuned)) as tmp:
            writer = ShardedWriter(tmp, plan, cfg.max_shard_size, cfg.fsync)
            bar = Progress(total_bytes, "make-diff: write", cfg.progress)
            hashes = {}
            try:
                for name in names:
                    hd = hashes[name] = new_hash()
                    for sc, r, t in _pairs(raw, tuned, name, step, pipe):
                        d = arith.subtract(t, r, diff_dtypes[name], sc)
                        pipe.background(update, hd, d)
                        pipe.write(writer.write, name, d)
                        bar.update(r.numel() * r.dtype.itemsize + t.numel() * t.dtype.itemsize)
                pipe.drain()
                written = writer.finish()
            finally:
                pipe.stop()  # no write may still run while the temporary directory is removed
                writer.abort()
                bar.close()
            write_config(tuned.dir, tmp, torch.float32, cfg.fsync)
            copy_tokenizer(tuned.dir, tmp)
            m = new_manifest(tmp / MANIFEST_NAME, arithmetic=ARITHMETIC,
                             tuned_dtype=_common_dtype(tuned), raw_dtype=_common_dtype(raw),
                             tuned_sum=tuned_sum[0],
                             files={f.name: file_sha256(f) for f in tokenizer_files(tuned.dir)})
            for name in names:
                m.tensors[name] = {
                    "shape": list(raw.tensors[name].shape),
                    "raw": {"dtype": dtype_name(raw.tensors[name].dtype), "sha256": digests[name]["raw"]},
                    "diff": {"dtype": dtype_name(diff_dtypes[name]), "sha256": hashes[name].hexdigest()},
                    "tuned": {"dtype": dtype_name(tuned.tensors[name].dtype), "sha256": digests[name]["tuned"]},
                }
            m.save()
            manifest_info = {"tensors": len(names), "float64_tensors": sorted(n for n in names
                                                                              if diff_dtypes[n] == torch.float64)}
    return {"command": "make-diff", "out": cfg.out, "manifest": f"{cfg.out}/{MANIFEST_NAME}",
            **manifest_info, "shards": len(written["shards"]), "bytes": written["total_size"],
            "tuned_sum": tuned_sum[0], "seconds": round(time.monotonic() - t0, 2)}


def _wider_or_fail(raw: Checkpoint, tuned: Checkpoint, name: str, step: int, pipe: Pipeline) -> torch.dtype:
    bad = 0
    for sc, r, t in _pairs(raw, tuned, name, step, pipe):
        d = arith.subtract(t, r, torch.float64, sc)
        bad += arith.mismatches(arith.restore(r, d, t.dtype, sc), t)
    if bad:
        raise RecoverError(f"{tuned.tensors[name].file}: tensor {name!r}: {bad} elements cannot be restored "
                           f"exactly from raw + diff even in float64 (inf or NaN weights?)")
    return torch.float64


def _common_dtype(ckpt: Checkpoint) -> str:
    """The checkpoint's dtype when all its tensors share one, else "mixed"."""
    dtypes = {dtype_name(i.dtype) for i in ckpt.tensors.values()}
    return dtypes.pop() if len(dtypes) == 1 else "mixed"


