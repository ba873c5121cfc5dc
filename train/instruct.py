"""What every kind of instruction tuning shares: its config fields and the data it trains on.

LoRA (:mod:`train.lora`) and full-parameter tuning (:mod:`train.sft`) read the same instruction files
with the same template, cutoff and prompt masking, hold out the same validation records and batch them
the same way; only the model differs. :class:`InstructionConfig` holds those fields (with alpaca-lora's
and CaMA's optimisation defaults instead of pretraining's), and :func:`instruction_data` builds the
training and validation sets, the sampler and the collator from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from common.config import ConfigError
from train.config import RunConfig, TrainError, quiet_known_warnings


@dataclass(kw_only=True)
class InstructionConfig(RunConfig):
    base: str                          # the Hugging Face checkpoint to tune (e.g. the pretrained model)
    data: str                          # instruction records: JSON lines or a JSON array
    tokenizer: str | None = None       # default: the base checkpoint's
    template: str = "alpaca"           # a name in train/templates/ or a path
    # Conversations ({"messages"} records, train/chat.py): a name in train/templates/*.jinja or a path;
    # default the tokenizer's own chat template, else alpaca_chat. Saved with the tokenizer.
    chat_template: str | None = None
    cutoff_len: int = 512
    train_on_inputs: bool = False
    add_eos: bool = True
    val_set_size: int = 0
    group_by_length: bool = False
    # Several examples per sequence of up to pack_length tokens (default cutoff_len), none attending to
    # another (train/packing.py); micro_batch_size and batch_size then count packed sequences.
    packing: bool = False
    pack_length: int | None = None
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
        if self.pack_length is not None and not self.packing:
            raise ConfigError(f"pack_length {self.pack_length} is set but packing is off (set packing: true)")
        if self.pack_length is not None and self.pack_length < self.cutoff_len:
            raise ConfigError(f"pack_length {self.pack_length} is below cutoff_len {self.cutoff_len}: "
                              "every example must fit one packed sequence")


@dataclass
class InstructionData:
    train_set: Any
    val_set: Any | None
    sampler: Any
    collator: Any
    flops_seq_length: int   # the sequence length MFU is computed for


def tune(cfg: InstructionConfig, run: Callable[[Any, Any], dict[str, Any]]) -> dict[str, Any]:
    """What every instruction tuning's entry point does around its ``run(cfg, stopper)``: the checks that
    need no torch first (a wrong base or tokenizer fails in a tenth of a second, not after loading
    torch), then the run under the preemption signal handler. Every rank calls this."""
    from train.fingerprint import check_base_tokenizer

    check_base_tokenizer(cfg.tokenizer, cfg.base)  # the base was trained on text its own tokenizer split
    check_base_folder(cfg.base)
    quiet_known_warnings(cfg.cpu)
    from train.runtime import StopOnSignal

    with StopOnSignal() as stopper:
        return run(cfg, stopper)


def check_base_folder(base: str) -> None:
    """The base must be a Hugging Face checkpoint folder; said before its tokenizer is looked for (which
    would otherwise be the first thing to fail, as "tokenizer not found")."""
    path = Path(base)
    if not path.exists():
        raise TrainError(f"base: the base model folder {base} does not exist (train or restore the base model "
                         f"first, or fix 'base')")
    if not path.is_dir():
        raise TrainError(f"base: {base} is a file, not a Hugging Face checkpoint folder")
    if not (path / "config.json").is_file():
        raise TrainError(f"base: {base} has no config.json: not a Hugging Face checkpoint folder "
                         f"(an unfinished export, or the run folder instead of its final/ model?)")


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
    from train.chat import use_chat_template
    from train.data import Collator, ResumableSampler
    from train.prompts import InstructionDataset, load_template, split

    template = load_template(cfg.template)
    use_chat_template(tokenizer, cfg.chat_template)  # set on the tokenizer: the export stores it
    data = InstructionDataset(cfg.data, tokenizer, template, cfg.cutoff_len, cfg.train_on_inputs, cfg.add_eos)
    if data.skipped and args.process_index == 0:
        shown = "; ".join(data.skipped.examples[:5])
        print(f"[{prog}] skipped {sum(data.skipped.values())} record(s) of {cfg.data}: "
              f"{dict(data.skipped)} (e.g. {shown})", flush=True)
    train_set, val_set = split(data, cfg.val_set_size, cfg.seed) if cfg.val_set_size else (data, None)
    collator, flops_seq_length, unit = Collator(pad_id=tokenizer.pad_token_id), cfg.cutoff_len, "records"
    if cfg.packing:
        train_set, val_set, collator, flops_seq_length = packed(cfg, tokenizer, train_set, val_set, args, prog)
        unit = "packed sequences"
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if len(train_set) < global_batch:
        raise TrainError(f"{cfg.data}: {len(train_set)} training {unit}, fewer than one global batch of "
                         f"{global_batch} (lower batch_size or micro_batch_size)")
    sampler = ResumableSampler(len(train_set), cfg.seed, lengths=train_set.lengths if cfg.group_by_length else None,
                               group_by_length=cfg.group_by_length)
    return InstructionData(train_set, val_set, sampler, collator, flops_seq_length)


def packed(cfg: InstructionConfig, tokenizer: Any, train_set: Any, val_set: Any | None, args: Any,
           prog: str) -> tuple[Any, Any | None, Any, int]:
    """The training and validation sets packed (train.packing), their collator, and the attention length
    MFU is computed for (a token attends within its own example only)."""
    from train.packing import PackedDataset, PackingCollator

    length = cfg.pack_length or cfg.cutoff_len
    train_set = PackedDataset(train_set, length)
    val_set = PackedDataset(val_set, length) if val_set is not None else None
    if args.process_index == 0:
        fill = float(train_set.lengths.sum()) / (len(train_set) * length)
        print(f"[{prog}] packing: {train_set.num_examples} training examples into {len(train_set)} sequences of "
              f"at most {length} tokens ({fill:.0%} full)", flush=True)
    return train_set, val_set, PackingCollator(pad_id=tokenizer.pad_token_id), train_set.attention_length


def evaluate_on(args: Any, cfg: InstructionConfig, val_set: Any | None) -> None:
    """Switch evaluation on when there is a validation set: the loss only, every ``eval_steps``."""
    if val_set is not None:
        args.eval_strategy = "steps"
        args.eval_steps = cfg.eval_steps or cfg.save_steps
        args.prediction_loss_only = True  # the loss is what is logged: no vocabulary-wide logits gathered
