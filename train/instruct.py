"""What every kind of instruction tuning shares: its config fields and the data it trains on.

LoRA (:mod:`train.lora`) and full-parameter tuning (:mod:`train.sft`) read the same instruction files
with the same template, cutoff and prompt masking, hold out the same validation records and batch them
the same way; only the model differs. :class:`InstructionConfig` holds those fields (with alpaca-lora's
and CaMA's optimisation defaults instead of pretraining's), and :func:`instruction_data` builds the
training and validation sets, the sampler and the collator from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.config import ConfigError
from train.config import RunConfig, TrainError


@dataclass(kw_only=True)
class InstructionConfig(RunConfig):
    base: str                          # the Hugging Face checkpoint to tune (e.g. the pretrained model)
    data: str                          # instruction records: JSON lines or a JSON array
    tokenizer: str | None = None       # default: the base checkpoint's
    template: str = "alpaca"           # a name in train/templates/ or a path
    cutoff_len: int = 512
    train_on_inputs: bool = False
    add_eos: bool = True
    val_set_size: int = 0
    group_by_length: bool = False
    # alpaca-lora's (and CaMA's) optimisation, instead of the pretraining defaults:
    micro_batch_size: int = 4
    batch_size: int | None = 128
    learning_rate: float = 3e-4
    num_epochs: float = 3.0
    warmup_steps: int = 100
    weight_decay: float = 0.0
    adam_beta2: float = 0.999
    lr_scheduler: str = "linear"
    save_steps: int = 200
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cutoff_len < 8:
            raise ConfigError(f"cutoff_len must be ≥ 8, got {self.cutoff_len}")


@dataclass
class InstructionData:
    train_set: Any
    val_set: Any | None
    sampler: Any
    collator: Any
    flops_seq_length: int   # the sequence length MFU is computed for


def check_base_fits(cfg: InstructionConfig, tokenizer: Any) -> Any:
    """The base's Hugging Face config, after checking the tokenizer and ``cutoff_len`` fit it."""
    from transformers import AutoConfig

    from train.tokenizer import check_vocab

    try:
        base_config = AutoConfig.from_pretrained(cfg.base)
    except (OSError, ValueError) as exc:
        raise TrainError(f"base: cannot read a Hugging Face config from {cfg.base}: {exc}") from None
    check_vocab(tokenizer, base_config.vocab_size, f"base {cfg.base}")
    if cfg.cutoff_len > base_config.max_position_embeddings:
        raise TrainError(f"cutoff_len {cfg.cutoff_len} is beyond the base model's "
                         f"{base_config.max_position_embeddings} positions")
    return base_config


def instruction_data(cfg: InstructionConfig, tokenizer: Any, args: Any, prog: str) -> InstructionData:
    """The tokenized records of ``cfg.data`` split into training and validation sets, with the
    resumable sampler over the training set and the collator; skipped records are reported once."""
    from train.data import Collator, ResumableSampler
    from train.prompts import InstructionDataset, load_template, split

    template = load_template(cfg.template)
    data = InstructionDataset(cfg.data, tokenizer, template, cfg.cutoff_len, cfg.train_on_inputs, cfg.add_eos)
    if data.skipped and args.process_index == 0:
        shown = "; ".join(data.skipped.examples[:5])
        print(f"[{prog}] skipped {sum(data.skipped.values())} record(s) of {cfg.data}: "
              f"{dict(data.skipped)} (e.g. {shown})", flush=True)
    train_set, val_set = split(data, cfg.val_set_size, cfg.seed) if cfg.val_set_size else (data, None)
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if len(train_set) < global_batch:
        raise TrainError(f"{cfg.data}: {len(train_set)} training records, fewer than one global batch of "
                         f"{global_batch} (lower batch_size or micro_batch_size)")
    sampler = ResumableSampler(len(train_set), cfg.seed, lengths=train_set.lengths if cfg.group_by_length else None,
                               group_by_length=cfg.group_by_length)
    return InstructionData(train_set, val_set, sampler, Collator(pad_id=tokenizer.pad_token_id), cfg.cutoff_len)


def evaluate_on(args: Any, cfg: InstructionConfig, val_set: Any | None) -> None:
    """Switch evaluation on when there is a validation set: the loss only, every ``eval_steps``."""
    if val_set is not None:
        args.eval_strategy = "steps"
        args.eval_steps = cfg.eval_steps or cfg.save_steps
        args.prediction_loss_only = True  # the loss is what is logged: no vocabulary-wide logits gathered
