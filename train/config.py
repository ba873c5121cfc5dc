"""Settings every training run shares, and the errors a user can act on — without importing torch.

``hpc`` reads a job's YAML on the login node to catch a bad key before anything is submitted; that
must not need torch or transformers, so the config classes live here and the work in the modules
that import them lazily.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from common.config import ConfigError, load_config

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
OFFLOADS = ("none", "optimizer", "all")
SCHEDULERS = ("cosine", "linear", "constant_with_warmup", "constant")


class TrainError(RuntimeError):
    """Training cannot start (bad data, tokenizer, model or settings); the message says what to fix."""


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
        if self.resume not in ("auto", "never") and not Path(self.resume).is_dir():
            raise ConfigError(f"resume: {self.resume!r} is neither auto, never nor a checkpoint folder")
        if self.cpu and self.offload != "none":
            raise ConfigError("offload moves GPU memory to the CPU; it means nothing with cpu: true")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "fix your input or config" (printed as one line), not a bug (traceback)."""
    from train.data import DatasetError
    from train.prompts import InstructionDataError, TemplateError
    from train.tokenizer import TokenizerError

    return (ConfigError, TrainError, DatasetError, TokenizerError, TemplateError, InstructionDataError, OSError)


def run_cli(prog: str, config_cls: type, entry: Callable[[Any], dict[str, Any]], description: str,
            argv: Sequence[str] | None = None) -> int:
    """The command line of a training entry point: ``--config`` plus a few common overrides."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", required=True, help="job YAML (configs/pretrain/, configs/lora/, configs/tiny/)")
    p.add_argument("--output-dir", help="override output_dir")
    p.add_argument("--max-steps", type=int, help="override max_steps")
    p.add_argument("--resume", help="auto (default) | never | a checkpoint folder")
    args = p.parse_args(argv)
    try:
        cfg = load_config(config_cls, args.config, {"output_dir": args.output_dir, "max_steps": args.max_steps,
                                                    "resume": args.resume})
        result = entry(cfg)
    except Exception as exc:
        if isinstance(exc, user_errors()):
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        raise
    return 0 if result.get("status") in ("completed", "preempted") else 1
