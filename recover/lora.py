"""``merge-lora``: a full checkpoint with a LoRA adapter folded in, streamed, then checked by its logits.

Plain tensor arithmetic over the adapter's safetensors, one base tensor (slice of rows) at a time:
``W += scale · B A`` with ``scale = lora_alpha / r`` (``/ sqrt(r)`` with ``use_rslora``; per-module
``rank_pattern``/``alpha_pattern`` as peft matches them), transposed for ``fan_in_fan_out`` layers
(GPT-2's Conv1D) and for embeddings (``lora_embedding_A/B``). Computed in float32 and rounded once to
the output dtype. Full tensors the adapter carries (``modules_to_save``, the base layer peft saves with a LoRA'd
embedding) replace the base's before the update is added. DoRA and
other PEFT methods are refused by name.

The check (``verify``, on by default) loads base + adapter with peft and the merged model with
transformers, one after the other, and compares their logits on a fixed random probe batch.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common.jsonl import read_json_object
from recover.checkpoint import Checkpoint, _load_bin, dtype_from_name, dtype_name, read_safetensors_header, row_chunks
from recover.config import MergeLoraConfig
from recover.errors import IntegrityError, RecoverError
from recover.hffiles import check_tokenizer, copy_tokenizer, core_tokenizer_files, embed_rows, read_config, write_config
from recover.outdir import atomic_dir, check_target
from recover.progress import Progress
from recover.writer import Planned, ShardedWriter

PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"(?P<module>.+)\.(?P<kind>lora_A|lora_B)(?:\.[^.]+)?\.weight")
_EMB_KEY = re.compile(r"(?P<module>.+)\.(?P<kind>lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?")


@dataclass
class _Delta:
    a: torch.Tensor
    b: torch.Tensor
    scale: float
    transpose: bool   # ΔW = (B A)ᵀ: fan_in_fan_out layers and embeddings


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _pattern(patterns: dict[str, Any], module: str) -> Any:
    """peft's rank_pattern/alpha_pattern lookup: a key matches a module name ending in it (regex)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return None


def load_adapter(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], Path]:
    directory = Path(directory)
    cfg_path = directory / "adapter_config.json"
    config = read_json_object(cfg_path, RecoverError, missing="LoRA adapter config")
    if config.get("peft_type", "LORA") != "LORA":
        raise RecoverError(f"{cfg_path}: peft_type {config.get('peft_type')!r}, only LORA adapters can be merged")
    if config.get("use_dora"):
        raise RecoverError(f"{cfg_path}: use_dora is set; DoRA adapters are not supported (merge them with peft)")
    st, pt = directory / "adapter_model.safetensors", directory / "adapter_model.bin"
    if st.is_file():
        infos, _ = read_safetensors_header(st)
        from safetensors.torch import load_file

        tensors, path = load_file(st), st
        assert set(tensors) == set(infos)
    elif pt.is_file():
        tensors, path = _load_bin(pt), pt
    else:
        raise RecoverError(f"{directory}: no adapter_model.safetensors or adapter_model.bin")
    return config, tensors, path


def plan_deltas(config: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path,
                base: Checkpoint) -> tuple[dict[str, _Delta], dict[str, torch.Tensor]]:
    """Base tensor name → its low-rank update; and base tensor name → full replacement."""
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    embedding: set[str] = set()
    replace: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if not key.startswith(PREFIX):
            raise RecoverError(f"{path}: tensor {key!r} does not start with {PREFIX!r} (not a peft LoRA adapter?)")
        rest = key[len(PREFIX):]
        if "lora_magnitude_vector" in rest:
            raise RecoverError(f"{path}: tensor {key!r} is a DoRA magnitude: DoRA adapters are not supported")
        m = _LORA_KEY.fullmatch(rest) or _EMB_KEY.fullmatch(rest)
        if m is None:
            # A full tensor: modules_to_save, or the base layer peft saves with a LoRA'd embedding.
            rest = rest.replace(".base_layer.weight", ".weight")
            if rest not in base:
                raise RecoverError(f"{path}: tensor {key!r} ({rest!r}) has no counterpart in the base model {base.dir}")
            if tuple(value.shape) != base.tensors[rest].shape:
                raise RecoverError(f"{path}: tensor {key!r} has shape {list(value.shape)}, the base's {rest!r} "
                                   f"{list(base.tensors[rest].shape)}")
            replace[rest] = value
            continue
        kind = m.group("kind")
        pairs.setdefault(m.group("module"), {})[kind[-1]] = value
        if kind.startswith("lora_embedding"):
            embedding.add(m.group("module"))
    deltas: dict[str, _Delta] = {}
    fan = bool(config.get("fan_in_fan_out", False))
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise RecoverError(f"{path}: module {module!r} has lora_{''.join(ab)} but not both A and B")
        name = f"{module}.weight"
        if name not in base:
            raise RecoverError(f"{path}: LoRA module {module!r}: the base model {base.dir} has no tensor {name!r}")
        a, b = ab["A"], ab["B"]
        r = a.shape[0]
        transpose = module in embedding or fan
        if module in embedding:  # peft: A (r, num_embeddings), B (dim, r)
            r = a.shape[0]
        want_r = _pattern(config.get("rank_pattern") or {}, module) or config.get("r")
        if want_r is not None and int(want_r) != r:
            raise RecoverError(f"{path}: module {module!r}: lora_A has rank {r}, adapter_config.json says {want_r}")
        alpha = _pattern(config.get("alpha_pattern") or {}, module) or config.get("lora_alpha", r)
        scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        shape = (a.shape[1], b.shape[0]) if transpose else (b.shape[0], a.shape[1])
        if b.shape[1] != r or shape != base.tensors[name].shape:
            raise RecoverError(f"{path}: module {module!r}: B {list(b.shape)} · A {list(a.shape)} does not fit the "
                               f"base tensor {name!r} {list(base.tensors[name].shape)}")
        deltas[name] = _Delta(a, b, float(scale), transpose)
    return deltas, replace


def merge_lora(cfg: MergeLoraConfig) -> dict[str, Any]:
    t0 = time.monotonic()
    check_target(cfg.out, cfg.force, (cfg.base, cfg.lora))
    device = _device(cfg.device)
    adapter_cfg, tensors, adapter_path = load_adapter(cfg.lora)
    step = max(1, cfg.chunk_mb << 20) // 4
    with Checkpoint(cfg.base, "base model") as base:
        deltas, replace = plan_deltas(adapter_cfg, tensors, adapter_path, base)
        tok_dir = Path(cfg.lora) if core_tokenizer_files(Path(cfg.lora)) else base.dir
        rows, embed = embed_rows(base.tensors)
        check_tokenizer(tok_dir, read_config(base.dir), rows, f"{embed} in {base.dir}")
        fixed = dtype_from_name(cfg.dtype) if cfg.dtype else None
        plan = [Planned(n, fixed or i.dtype, i.shape) for n, i in base.tensors.items()]
        with atomic_dir(cfg.out, cfg.force, (cfg.base, cfg.lora)) as tmp:
            writer = ShardedWriter(tmp, plan, cfg.max_shard_size, cfg.fsync)
            bar = Progress(sum(p.nbytes for p in plan), "merge-lora", cfg.progress)
            try:
                for p in plan:
                    info = base.tensors[p.name]
                    full = replace[p.name].reshape(-1) if p.name in replace else None
                    delta = deltas.get(p.name)
                    if delta is not None:
                        a = delta.a.to(device, torch.float32)
                        b = delta.b.to(device, torch.float32)
                    for start, n in row_chunks(info, step):
                        if full is not None:
                            w = full[start:start + n]
                        else:
                            w = base.read_into(p.name, start, torch.empty(n, dtype=info.dtype))
                        if delta is not None:
                            r0, r1 = start // info.row_len, (start + n) // info.row_len
                            rows_delta = (a[:, r0:r1].T @ b.T) if delta.transpose else (b[r0:r1] @ a)
                            w32 = w.to(device, torch.float32).view(r1 - r0, -1)
                            w32.add_(rows_delta, alpha=delta.scale)
                            w = w32.reshape(-1).to("cpu")
                        writer.write(p.name, w.to(p.dtype))
                        bar.update(n * p.dtype.itemsize)
                written = writer.finish()
            finally:
                writer.abort()
                bar.close()
            dtypes = {p.dtype for p in plan}
            write_config(base.dir, tmp, dtypes.pop() if len(dtypes) == 1 else torch.float32, cfg.fsync)
            copy_tokenizer(tok_dir, tmp)
            summary: dict[str, Any] = {
                "command": "merge-lora", "out": cfg.out, "merged_modules": len(deltas),
                "replaced_tensors": sorted(replace), "shards": len(written["shards"]), "bytes": written["total_size"]}
            if cfg.verify:
                summary["verify"] = verify_merge(cfg.base, cfg.lora, tmp, device, plan, cfg.verify_rtol)
    summary["seconds"] = round(time.monotonic() - t0, 2)
    return summary


def verify_merge(base: str | Path, lora: str | Path, merged: str | Path, device: torch.device,
                 plan: list[Planned], rtol: float | None = None, batch: int = 2, length: int = 16) -> dict[str, Any]:
    """Logits of the merged model against peft's base + adapter on a fixed random batch; raises if apart."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    half = any(p.dtype in (torch.float16, torch.bfloat16) for p in plan)
    # On a GPU the model runs in its own dtype (13B in float32 would not fit); on CPU in float32.
    dtype = torch.float32 if device.type == "cpu" else (torch.float16 if half else torch.float32)
    if rtol is None:
        rtol = 2e-2 if half or dtype != torch.float32 else 1e-4
    config = read_config(Path(base))
    vocab = int(config.get("vocab_size") or 32000)
    probe = torch.randint(3, vocab, (batch, length), generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).to(device)
        model = PeftModel.from_pretrained(model, str(lora)).eval()
        ref = model(probe).logits.float().cpu()
        del model
        model = AutoModelForCausalLM.from_pretrained(merged, dtype=dtype).to(device).eval()
        got = model(probe).logits.float().cpu()
        del model
    err = float((got - ref).abs().max())
    scale = float(ref.abs().max())
    result = {"max_abs_diff": err, "max_abs_logit": scale, "rtol": rtol, "dtype": dtype_name(dtype),
              "probe": [batch, length]}
    if not err <= rtol * max(scale, 1.0):
        raise IntegrityError(f"merged model {merged}: logits differ from base {base} + adapter {lora} by {err:.3g} "
                             f"(max |logit| {scale:.3g}, allowed {rtol} relative)")
    return result
