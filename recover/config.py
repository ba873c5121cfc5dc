"""The typed configs of recover's commands, and the checks they need — without torch.

``python -m recover`` and ``hpc.submit recover`` load and check a config before any work, and a bad key
must be reported at once, not after the second it takes to import torch: so the config classes live
here and the modules that do the work (which import torch) import them. Each class is also importable
from its command's module (``recover.apply.ApplyConfig``, …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from recover.errors import RecoverError

CHECK_RAW = ("inline", "first", "off")

# Names a config may give a dtype by → the torch dtype's name (recover.checkpoint maps it to torch).
DTYPE_ALIASES = {"float64": "float64", "float32": "float32", "float16": "float16", "bfloat16": "bfloat16",
                 "fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def canonical_dtype(name: str, where: str = "dtype") -> str:
    """``fp16`` → ``float16``; RecoverError naming ``where`` for a name that is no floating-point dtype."""
    try:
        return DTYPE_ALIASES[name.lower()]
    except (KeyError, AttributeError):
        raise RecoverError(f"{where}: unknown dtype {name!r} (one of float32, float16, bfloat16, float64)") from None


def parse_size(value: int | str) -> int:
    """``5GB``, ``500MB``, ``2GiB`` or a number of bytes."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*", str(value), re.IGNORECASE)
    if not m:
        raise RecoverError(f"max_shard_size: cannot read {value!r} (e.g. 5GB, 500MB, 2GiB, or bytes)")
    unit = (m.group(2) or "B").upper()
    mult = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
            "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    return int(float(m.group(1)) * mult)


def _check_output(dtype: str | None, max_shard_size: str, chunk_mb: int | None = None) -> None:
    if dtype is not None:
        canonical_dtype(dtype, "dtype")
    parse_size(max_shard_size)
    if chunk_mb is not None and chunk_mb < 1:
        raise ValueError("chunk_mb must be at least 1")


@dataclass
class ApplyConfig:
    raw: str                          # the base model (LLaMA in HF layout)
    diff: str                         # the published diff
    out: str                          # the restored model (must not exist unless force)
    dtype: str | None = None          # output dtype; default the manifest's tuned dtype, else the raw model's
    force: bool = False               # replace an existing `out`
    manifest: str | None = None       # default: DIFF/recover-manifest.json when present
    require_manifest: bool = False    # refuse a diff without a manifest (CaMA's diffs have none)
    check_raw: str = "inline"         # inline (as each tensor is used) | first (whole raw model before) | off
    check_sum: float | None = None    # CaMA's check: expected sum of all restored parameters
    check_sum_tol: float = 1e-2       # absolute tolerance of that sum (computed in float64)
    check_tokenizer: bool = True      # the tokenizer must cover exactly the embedding rows
    max_shard_size: str = "5GB"
    fsync: bool = True
    chunk_mb: int = 32               # slice size (MiB of float32); memory is two sets of slices
    progress: bool = True
    # Optional: merge a LoRA adapter into the restored model afterwards (recover.lora).
    merge_lora: str | None = None     # adapter directory (adapter_config.json + adapter_model.*)
    merge_out: str | None = None      # where the merged model goes (required with merge_lora)
    merge_verify: bool = True         # compare merged logits with base + adapter on a probe batch
    device: str = "auto"              # for the merge's matmuls and the verification: auto | cpu | cuda

    def __post_init__(self) -> None:
        if self.check_raw not in CHECK_RAW:
            raise ValueError(f"check_raw must be one of {', '.join(CHECK_RAW)}, not {self.check_raw!r}")
        if self.merge_lora and not self.merge_out:
            raise ValueError("merge_lora needs merge_out (the merged model's directory)")
        _check_output(self.dtype, self.max_shard_size, self.chunk_mb)


@dataclass
class MakeDiffConfig:
    raw: str
    tuned: str
    out: str
    diff_dtype: str = "float32"     # float32 (float64 where needed for exactness) or float64
    force: bool = False
    max_shard_size: str = "5GB"
    fsync: bool = True
    chunk_mb: int = 32              # slice size in MiB of float32: memory is a few slices of this
    progress: bool = True

    def __post_init__(self) -> None:
        if canonical_dtype(self.diff_dtype, "diff_dtype") not in ("float32", "float64"):
            raise RecoverError(f"diff_dtype {self.diff_dtype!r}: a diff is stored in float32 or float64 (a float16 "
                               f"diff cannot restore the tuned weights exactly)")
        _check_output(None, self.max_shard_size, self.chunk_mb)


@dataclass
class ConvertMetaConfig:
    input: str                        # directory with consolidated.*.pth, params.json, tokenizer.model
    out: str
    size: str = "any"                 # 7B, 13B, 30B, 65B, 70B: checked against params.json; any: not checked
    dtype: str | None = None          # default: the checkpoint's dtype
    max_position_embeddings: int = 2048   # LLaMA 1 (CaMA's base); 4096 for LLaMA 2
    force: bool = False
    max_shard_size: str = "5GB"
    fsync: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        _check_output(self.dtype, self.max_shard_size)


@dataclass
class MergeLoraConfig:
    base: str                     # full HF checkpoint
    lora: str                     # adapter dir: adapter_config.json + adapter_model.safetensors (or .bin)
    out: str
    dtype: str | None = None      # default: the base model's dtype (per tensor)
    force: bool = False
    verify: bool = True           # merged logits == base + adapter logits on a probe batch
    verify_rtol: float | None = None   # default 1e-4 (float32 output), 2e-2 (half precision)
    device: str = "auto"          # auto | cpu | cuda: where the matmuls and the check run
    max_shard_size: str = "5GB"
    fsync: bool = True
    chunk_mb: int = 32
    progress: bool = True

    def __post_init__(self) -> None:
        _check_output(self.dtype, self.max_shard_size, self.chunk_mb)


DOWNLOAD_ONLY = ("diff", "lora")


@dataclass
class DownloadConfig:
    repo: str                         # Hugging Face repo id, e.g. zjunlp/knowlm-13b-diff
    out: str                          # local folder (a rerun resumes what is there)
    only: str | None = None           # diff: checkpoint + manifest + tokenizer files; lora: an adapter; None: all
    revision: str | None = None       # branch, tag or commit (default: the repo's main)
    verify: bool = True               # afterwards: recover-manifest.json's checksums (diff) / the adapter's files

    def __post_init__(self) -> None:
        if self.only is not None and self.only not in DOWNLOAD_ONLY:
            raise RecoverError(f"only: {self.only!r} is not one of {', '.join(DOWNLOAD_ONLY)}")
        if not self.repo or self.repo.count("/") > 1 or self.repo.strip() != self.repo:
            raise RecoverError(f"repo: {self.repo!r} is not a Hugging Face repo id (OWNER/NAME)")
