"""Settings every training run shares, and the errors a user can act on — without importing torch.

``hpc`` reads a job's YAML on the login node to catch a bad key before anything is submitted, and a
config error on the command line must be reported in well under a second: neither may need torch or
transformers, so the config classes live here and the work in the modules that import them lazily.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from common.cli import Parser, add_config_options, config_from_args, print_config, run
from common.config import ConfigError
from common.errors import UserError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
OFFLOADS = ("none", "optimizer", "all")
SCHEDULERS = ("cosine", "linear", "constant_with_warmup", "constant")


class TrainError(UserError, RuntimeError):
    """Training cannot start (bad data, tokenizer, model or settings); the message says what to fix."""


@dataclass(kw_only=True)
class ModelConfig:
    """The LlamaConfig of a model trained from scratch (``model_config:`` of a pretraining job).

    Typed here, not handed to transformers as a free mapping, so a misspelt key
    (``hiden_size``) is refused with its name instead of silently building LLaMA-7B's 4096-wide
    default. Defaults are LLaMA's (transformers' ``LlamaConfig``); ``vocab_size`` defaults to the
    tokenizer's size and ``max_position_embeddings`` to the job's ``seq_length``."""

    vocab_size: int | None = None
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None   # None: as many as attention heads (no grouped-query attention)
    head_dim: int | None = None              # None: hidden_size / num_attention_heads
    hidden_act: str = "silu"
    max_position_embeddings: int | None = None
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    attention_bias: bool = False
    attention_dropout: float = 0.0
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "num_key_value_heads", "head_dim", "max_position_embeddings"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {value}")
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                              f"{self.num_attention_heads} (or give head_dim)")
        kv = self.num_key_value_heads
        if kv is not None and self.num_attention_heads % kv:
            raise ConfigError(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                              f"num_key_value_heads {kv}")

    def llama_kwargs(self, vocab_size: int, seq_length: int) -> dict[str, Any]:
        """Keyword arguments of ``transformers.LlamaConfig``, the two open sizes filled in."""
        values = asdict(self)
        if values["vocab_size"] is None:
            values["vocab_size"] = vocab_size
        if values["max_position_embeddings"] is None:
            values["max_position_embeddings"] = seq_length
        return values


@dataclass(kw_only=True)
class RunConfig:
    output_dir: str
    micro_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    # A global batch (samples per optimizer step) instead: accumulation = batch_size / (micro × world).
    batch_size: int | None = None
    learning_rate: float = 1.5e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    lr_scheduler: str = "cosine"
    warmup_steps: int = 300
    num_epochs: float = 1.0
    max_steps: int = -1          # > 0 wins over num_epochs
    precision: str = "auto"      # auto: bf16 where the GPU has it, else fp16 on GPU, fp32 on CPU
    gradient_checkpointing: bool = True
    deepspeed: str | None = "zero3"  # a file in train/deepspeed/ (without .json), a path, or null
    offload: str = "none"        # optimizer | all: ZeRO-Offload to CPU, for small-memory GPUs
    save_steps: int = 500
    keep_checkpoints: int = 2
    resume: str = "auto"         # auto: the latest complete checkpoint; never; or a checkpoint folder
    logging_steps: int = 10
    eval_steps: int | None = None  # steps between evaluations of the held-out data; default save_steps
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    seed: int = 42
    cpu: bool = False            # train on CPU (tests, the demo): gloo between processes
    dataloader_workers: int = 2
    peak_tflops: float | None = None  # per device, for MFU where the GPU is not in PEAK_TFLOPS
    dist_timeout_minutes: int = 60    # collectives (and rank 0's solo saves while the others wait)

    def __post_init__(self) -> None:
        for name, value, allowed in (("precision", self.precision, PRECISIONS), ("offload", self.offload, OFFLOADS),
                                     ("lr_scheduler", self.lr_scheduler, SCHEDULERS)):
            if value not in allowed:
                raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        for name in ("micro_batch_size", "gradient_accumulation_steps", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.eval_steps is not None and self.eval_steps < 1:
            raise ConfigError(f"eval_steps must be ≥ 1, got {self.eval_steps}")
        if self.resume not in ("auto", "never") and not Path(self.resume).is_dir():
            raise ConfigError(f"resume: {self.resume!r} is neither auto, never nor a checkpoint folder")
        if self.cpu and self.offload != "none":
            raise ConfigError("offload moves GPU memory to the CPU; it means nothing with cpu: true")


# What the frameworks print in every normal run that says nothing a user of the suite can act on.
# Each entry is matched by its message, so any other warning from the same place still shows.
HARMLESS_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # DeepSpeed's ZeRO-3 collectives call torch.distributed APIs torch has deprecated (all_gather_into_tensor,
    # _reduce_scatter_base, …); torch warns on every call, a few lines per step in every rank's log. The
    # calls work and are DeepSpeed's to change.
    (r"`torch\.distributed\.[\w.]+` (is deprecated|is a private function and will be deprecated|will be deprecated)",
     FutureWarning),
    # peft asks transformers' deprecated `is_gradient_checkpointing` when it wraps the base; peft's to change.
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning),
)
# accelerate logs (not warns) that its plugin's default accumulation of 1 differs from the DeepSpeed
# config's; the DeepSpeed value is the one the run asked for (filled from TrainingArguments) and is used.
HARMLESS_LOG_LINES = (("accelerate.accelerator", r"Gradient accumulation steps mismatch: GradientAccumulationPlugin has "),)


class _DropLines(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


_quieted = False


def quiet_known_warnings(cpu: bool = False) -> None:
    """Silence :data:`HARMLESS_WARNINGS` and :data:`HARMLESS_LOG_LINES` (before the frameworks run)."""
    global _quieted
    if cpu:
        # DeepSpeed otherwise warns that it found no GPU and falls back to the CPU, which is what
        # `cpu: true` asked for. Set before deepspeed is first imported.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    for message, category in HARMLESS_WARNINGS:  # an identical filter replaces itself: safe to repeat
        warnings.filterwarnings("ignore", message=message, category=category)
    if not _quieted:
        _quieted = True
        for name, pattern in HARMLESS_LOG_LINES:
            logging.getLogger(name).addFilter(_DropLines(pattern))


def run_cli(prog: str, config_cls: type, entry: Callable[[Any], dict[str, Any]], description: str,
            argv: Sequence[str] | None = None) -> int:
    """The command line of a training entry point: ``--config``, ``--set``, ``--print-config`` and a
    few common overrides. The config is checked before ``entry`` imports torch, so a bad key is
    reported at once."""
    p = Parser(prog=prog, description=description)
    add_config_options(p, help="job YAML (configs/pretrain/, configs/lora/, configs/tiny/)")
    p.add_argument("--output-dir", help="override output_dir")
    p.add_argument("--max-steps", type=int, help="override max_steps")
    p.add_argument("--resume", help="auto (default) | never | a checkpoint folder")
    args = p.parse_args(argv)

    def command() -> int:
        cfg = config_from_args(config_cls, args, {"output_dir": args.output_dir, "max_steps": args.max_steps,
                                                  "resume": args.resume})
        if args.print_config:
            return print_config(cfg)
        result = entry(cfg)
        return 0 if result.get("status") in ("completed", "preempted") else 1

    return run(prog, command)


def as_model_config(value: Any, where: str = "model_config") -> Any:
    """A ``model_config`` mapping given in code (not through YAML) checked like one from a file."""
    if isinstance(value, Mapping):
        from common.config import from_dict

        return from_dict(ModelConfig, value, where)
    return value
