"""``apply``: the tuned model from the raw model and a published diff, streamed slice by slice.

Reads our diffs (``make-diff``: safetensors + ``recover-manifest.json``) and CaMA's (a Hugging Face
checkpoint whose tensors are tuned − raw in float32 or float16, safetensors or ``pytorch_model-*.bin``).
Before any work: the two checkpoints have the same tensor names and shapes, the diff carries a
tokenizer that covers the embedding, and, with a manifest, raw and diff have the manifest's names,
shapes and dtypes and the diff's tokenizer files their checksums. While streaming, each restored
tensor is hashed and compared with the tuned checksum (when the output dtype is the tuned dtype).

The raw model is checked tensor by tensor as it is used (``check_raw: inline``, the default). When
the tuned checksums apply, a raw tensor that differs from the one the diff was made against gives a
restored tensor that fails its checksum; only then are that raw tensor and its diff hashed, and the
error names whichever of the two is not what the manifest says. Hashing raw every time as well would
detect nothing more and cost another hashing pass over the model. When the output dtype differs
from the tuned one, raw tensors are hashed as they are read. ``check_raw: first`` hashes the whole
raw model before writing anything; ``off`` skips raw checks (the restored tensors are still
checked). CaMA's whole-model sum check is ``check_sum`` (the expected value) with
``check_sum_tol``. The output appears complete or not at all (:mod:`recover.outdir`).

Exactness: a CaMA diff (float32 tuned − raw of two float16 models, computed by loading both in
float32) restores the float16 tuned weights bit for bit, because the difference of two float16
numbers within a factor 2**12 of each other in magnitude is exact in float32, so raw + diff is the
tuned value again (−0.0 aside, see :mod:`recover.arith`). Where a weight moved across more binades than that, the
result is within float32 rounding of it; our make-diff stores such tensors in float64 instead.

``main(cfg)`` is the entry point of ``python -m recover apply`` and of the ``recover`` job kind
(``hpc.submit recover``, ``slurm/recover_gpu.sh``); with ``merge_lora`` it then merges a LoRA adapter
into the restored model (:mod:`recover.lora`) and writes ``merge_out``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from recover import arith
from recover.checkpoint import (FLOAT_DTYPES, Checkpoint, compare_structure, contained, dtype_from_name, dtype_name,
                                row_chunks)
from recover.config import ApplyConfig
from recover.diff import chunk_elems
from recover.errors import IntegrityError, RecoverError
from recover.hffiles import check_tokenizer, copy_tokenizer, core_tokenizer_files, embed_rows, read_config, write_config
from recover.manifest import MANIFEST_NAME, Manifest, file_sha256, load_manifest, new_hash, tensor_sha256, update
from recover.outdir import atomic_dir, check_target
from recover.progress import Progress
from recover.stream import Pipeline
from recover.writer import Planned, ShardedWriter

def _find_manifest(cfg: ApplyConfig) -> Manifest | None:
    if cfg.manifest:
        return load_manifest(cfg.manifest)
    default = Path(cfg.diff) / MANIFEST_NAME
    if default.is_file():
        return load_manifest(default)
    if cfg.require_manifest:
        raise RecoverError(f"{cfg.diff}: no {MANIFEST_NAME} (require_manifest is set; pass --manifest)")
    return None


def _output_dtype(cfg: ApplyConfig, manifest: Manifest | None, raw: Checkpoint) -> torch.dtype:
    if cfg.dtype:
        return dtype_from_name(cfg.dtype, "dtype")
    if manifest and manifest.data.get("tuned_dtype") not in (None, "mixed"):
        return dtype_from_name(manifest.data["tuned_dtype"], f"{manifest.path}: tuned_dtype")
    dtypes = {i.dtype for i in raw.tensors.values()}
    if len(dtypes) == 1:
        return dtypes.pop()
    raise RecoverError(f"raw model {raw.dir} mixes dtypes {sorted(map(dtype_name, dtypes))}: choose --dtype")


def apply_diff(cfg: ApplyConfig) -> dict[str, Any]:
    t0 = time.monotonic()
    check_target(cfg.out, cfg.force, (cfg.raw, cfg.diff))
    step = chunk_elems(cfg.chunk_mb)
    manifest = _find_manifest(cfg)
    with Checkpoint(cfg.raw, "raw model") as raw, Checkpoint(cfg.diff, "diff") as diff, Pipeline() as pipe:
        # -- everything that can be checked without reading tensor data ------------------------------
        compare_structure(diff, raw)
        for ckpt in (raw, diff):
            for name, info in ckpt.tensors.items():
                if info.dtype not in FLOAT_DTYPES:
                    raise RecoverError(f"{info.file}: tensor {name!r} is {dtype_name(info.dtype)}, not a "
                                       f"floating-point weight")
        config = read_config(diff.dir)
        # Even with check_tokenizer off: tokenizer_config.json alone is no tokenizer.
        if not core_tokenizer_files(diff.dir):
            raise RecoverError(f"diff {diff.dir}: no tokenizer files (tokenizer.model or tokenizer.json): the "
                               f"restored model would have no usable tokenizer")
        if manifest is not None:
            manifest.check_structure(raw, "raw")
            manifest.check_structure(diff, "diff")
            for fname, digest in (manifest.data.get("files") or {}).items():
                f = contained(diff.dir, fname, f"{manifest.path}: file")
                if not f.is_file() or file_sha256(f) != digest:
                    raise IntegrityError(f"{f}: missing or does not match its checksum in {manifest.path}")
        if cfg.check_tokenizer:
            rows, embed = embed_rows(raw.tensors)
            check_tokenizer(diff.dir, config, rows, f"{embed} in {raw.dir}")
        out_dtype = _output_dtype(cfg, manifest, raw)
        check_tuned = manifest is not None and all(
            e["tuned"]["dtype"] == dtype_name(out_dtype) for e in manifest.tensors.values())
        check_raw = manifest is not None and cfg.check_raw != "off"
        if check_raw and cfg.check_raw == "first":
            for name in diff.names():
                _compare(manifest, name, "raw", tensor_sha256(raw, name, step), raw)

        # -- the work ----------------------------------------------------------------------------------
        names = diff.names()
        plan = [Planned(n, out_dtype, raw.tensors[n].shape) for n in names]
        total_in = sum(raw.tensors[n].nbytes + diff.tensors[n].nbytes for n in names)
        total_sum = [0.0]
        with atomic_dir(cfg.out, cfg.force, (cfg.raw, cfg.diff)) as tmp:
            writer = ShardedWriter(tmp, plan, cfg.max_shard_size, cfg.fsync)
            bar = Progress(total_in, "apply", cfg.progress)
            try:
                for name in names:
                    ri, di = raw.tensors[name], diff.tensors[name]
                    # With the tuned checksums, a bad raw tensor shows as a bad result (and is then named).
                    hr = new_hash() if check_raw and cfg.check_raw == "inline" and not check_tuned else None
                    ho = new_hash() if check_tuned else None
                    for start, n in row_chunks(ri, step):
                        sc = pipe.next_slot()
                        r = raw.read_into(name, start, sc.get("in_raw", ri.dtype, n))
                        d = diff.read_into(name, start, sc.get("in_diff", di.dtype, n))
                        out = arith.restore(r, d, out_dtype, sc)
                        if hr is not None:
                            pipe.background(update, hr, r)
                        if ho is not None:
                            pipe.background(update, ho, out, True)  # restore() output has no -0.0
                        if cfg.check_sum is not None:
                            pipe.background(_add_sum, total_sum, out)
                        pipe.write(writer.write, name, out)
                        bar.update(r.numel() * r.dtype.itemsize + d.numel() * d.dtype.itemsize)
                    if hr is not None:
                        pipe.after(_compare_hash, manifest, name, "raw", hr, raw)
                    if ho is not None:
                        pipe.after(_compare_tuned, manifest, name, ho, raw, diff, step)
                pipe.drain()
                written = writer.finish()
            finally:
                pipe.stop()  # no write may still run while the temporary directory is removed
                writer.abort()
                bar.close()
            if cfg.check_sum is not None and abs(total_sum[0] - cfg.check_sum) > cfg.check_sum_tol:
                raise IntegrityError(f"the restored parameters sum to {total_sum[0]!r}, expected {cfg.check_sum!r} "
                                     f"± {cfg.check_sum_tol} (raw {cfg.raw}, diff {cfg.diff})")
            write_config(diff.dir, tmp, out_dtype, cfg.fsync)
            copied = copy_tokenizer(diff.dir, tmp)
    summary: dict[str, Any] = {
        "command": "apply", "out": cfg.out, "dtype": dtype_name(out_dtype), "tensors": len(names),
        "shards": len(written["shards"]), "bytes": written["total_size"], "tokenizer_files": copied,
        "manifest": str(manifest.path) if manifest else None,
        # raw: how raw tensors were checked against the manifest (inline, first; None: not checked).
        "checked": {"raw": cfg.check_raw if check_raw else None, "tuned_sha256": check_tuned,
                    "sum": total_sum[0] if cfg.check_sum is not None else None},
        "seconds": round(time.monotonic() - t0, 2),
    }
    return summary


def _add_sum(acc: list[float], out: torch.Tensor) -> None:
    acc[0] += float(out.sum(dtype=torch.float64))


def _compare(manifest: Manifest, name: str, role: str, digest: str, ckpt: Checkpoint) -> None:
    want = manifest.tensors[name][role]["sha256"]
    if digest != want:
        what = "raw model (a bad or different base download?)" if role == "raw" else role
        raise IntegrityError(f"{ckpt.tensors[name].file}: tensor {name!r} of the {what} does not match "
                             f"{manifest.path} (sha256 {digest[:16]}…, expected {want[:16]}…)")


def _compare_hash(manifest: Manifest, name: str, role: str, h: Any, ckpt: Checkpoint) -> None:
    _compare(manifest, name, role, h.hexdigest(), ckpt)


def _compare_tuned(manifest: Manifest, name: str, h: Any, raw: Checkpoint, diff: Checkpoint, step: int) -> None:
    digest = h.hexdigest()
    want = manifest.tensors[name]["tuned"]["sha256"]
    if digest == want:
        return
    # Name the input to blame: hash this tensor of raw and of the diff now.
    _compare(manifest, name, "raw", tensor_sha256(raw, name, step), raw)
    _compare(manifest, name, "diff", tensor_sha256(diff, name, step), diff)
    raise IntegrityError(f"restored tensor {name!r} does not match the tuned checksum in {manifest.path}, although "
                         f"its raw and diff tensors match theirs (was the manifest made for another diff?)")


def main(cfg: ApplyConfig) -> dict[str, Any]:
    """Apply the diff (and merge the LoRA adapter when ``merge_lora`` is set); a JSON-able summary."""
    if cfg.merge_lora:
        check_target(cfg.merge_out, cfg.force, (cfg.raw, cfg.diff, cfg.out))  # fail before the long part
    summary = apply_diff(cfg)
    if cfg.merge_lora:
        from recover.lora import MergeLoraConfig, merge_lora

        summary["merge"] = merge_lora(MergeLoraConfig(
            base=cfg.out, lora=cfg.merge_lora, out=cfg.merge_out, force=cfg.force, verify=cfg.merge_verify,
            device=cfg.device, max_shard_size=cfg.max_shard_size, fsync=cfg.fsync, progress=cfg.progress))
    return summary
