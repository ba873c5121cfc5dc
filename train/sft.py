"""Full-parameter instruction tuning under DeepSpeed ZeRO-3: ``python -m train.sft --config JOB.yaml``.

The same instruction records, template, cutoff, prompt masking, validation split and batching as LoRA
(:mod:`train.instruct`), but every weight of the base is trained, the way Stanford Alpaca and Vicuna
tuned LLaMA: lr 2e-5 with a cosine schedule after a warm-up of 3 % of the steps, no weight decay,
AdamW (0.9, 0.999), global batch 128, 3 epochs, gradient checkpointing (configs/sft/ for CaMA-13B).

A run is resumable exactly like pretraining (:mod:`train.runtime`): SIGUSR2 to any rank makes every
rank save the same step's ZeRO-3 partitions and return ``status: "preempted"``; the next start resumes
from the latest complete checkpoint at the same sample, and ends with the weights an uninterrupted run
would have had. The tuned model is exported as a plain Hugging Face checkpoint (safetensors +
tokenizer) that ``from_pretrained`` loads: ``export_dir`` (default ``OUTPUT_DIR/final``), checked to
hold every tensor of the base at its full shape (not ZeRO-3's empty partitions). To publish it, make a
weight diff against the base (``python -m recover make-diff``); the chain does so with ``tuning: full``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from common.config import ConfigError
from train.config import TrainError, run_cli
from train.instruct import InstructionConfig, tune


@dataclass(kw_only=True)
class SftConfig(InstructionConfig):
    # Alpaca's full fine-tuning recipe instead of alpaca-lora's: every weight moves, so 15 × smaller steps.
    learning_rate: float = 2e-5
    lr_scheduler: str = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.03         # warm up over this share of the steps (or warmup_steps, with this 0)
    weight_decay: float = 0.0
    gradient_checkpointing: bool = True
    attn_implementation: str = "sdpa"
    export_dir: str | None = None      # default OUTPUT_DIR/final

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_ratio and self.warmup_steps:
            raise ConfigError(f"give one of warmup_steps ({self.warmup_steps}) and warmup_ratio "
                              f"({self.warmup_ratio}); set the other to 0")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be ≥ 0, got {self.warmup_steps}")


def main(cfg: SftConfig) -> dict[str, Any]:
    """Tune every weight of ``cfg.base`` as ``cfg`` says; every rank calls this."""
    return tune(cfg, _run)


def _run(cfg: SftConfig, stopper: Any) -> dict[str, Any]:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from train import runtime
    from train.instruct import check_base_fits, evaluate_on, instruction_data
    from train.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(cfg.tokenizer or cfg.base)
    runtime.init_distributed(cfg)
    args = runtime.training_arguments(cfg)  # before the model: ZeRO-3 partitions the base as it loads
    if cfg.warmup_ratio:
        # transformers reads a warmup_steps below 1 as a share of the steps; RunConfig's is an integer.
        args.warmup_steps = cfg.warmup_ratio
    base_config = check_base_fits(cfg, tokenizer)
    data = instruction_data(cfg, tokenizer, args, "train.sft")

    transformers.set_seed(cfg.seed)
    try:
        # fp32 master weights whatever the precision: DeepSpeed (or AMP) makes the 16-bit copies.
        model = AutoModelForCausalLM.from_pretrained(cfg.base, dtype=torch.float32,
                                                     attn_implementation=cfg.attn_implementation)
    except (OSError, ValueError) as exc:
        raise TrainError(f"base: cannot load a Hugging Face model from {cfg.base}: {exc}") from None
    model.config.use_cache = False

    saver = runtime.CompleteCheckpoints(runtime.sampler_position(data.sampler, args), cfg.keep_checkpoints,
                                        runtime.run_fingerprint(cfg, kind="sft"))
    evaluate_on(args, cfg, data.val_set)
    trainer = runtime.SuiteTrainer(
        model=model, args=args, train_dataset=data.train_set, eval_dataset=data.val_set,
        data_collator=data.collator, callbacks=[stopper, saver], sampler=data.sampler,
        flops_per_token=runtime.flops_per_token(base_config, data.flops_seq_length),
        peak_tflops=runtime.device_peak_tflops(cfg))
    result = runtime.train(trainer, cfg, stopper, saver)
    if result.status == "completed":
        result.export = str(export(trainer, tokenizer, cfg))
    unset_hf_deepspeed_config()  # later from_pretrained calls in this process must not be ZeRO-partitioned
    if args.process_index == 0:
        print(f"[train.sft] {result.status} at step {result.step}"
              + (f"; model exported to {result.export}" if result.export else
                 f"; latest complete checkpoint: {result.checkpoint}"), flush=True)
    runtime.leave_distributed()
    return result.to_dict()


def export(trainer: Any, tokenizer: Any, cfg: SftConfig) -> Path:
    """The tuned model as a plain HF checkpoint (safetensors + config + tokenizer), complete or absent."""
    from train.runtime import export_model
    from train.tokenizer import save_tokenizer

    def finish(tmp: Path) -> None:
        check_complete(tmp, Path(cfg.base))
        save_tokenizer(tokenizer, tmp)

    return export_model(trainer, Path(cfg.export_dir or Path(cfg.output_dir) / "final"), finish)


def tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape in a checkpoint's safetensors files (their headers only)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


def check_complete(tuned: Path, base: Path) -> None:
    """Full tuning changes no shape: the export must hold the base's tensors, each at its full shape.
    A DeepSpeed config without ``stage3_gather_16bit_weights_on_model_save`` would save ZeRO-3's empty
    partitions (or nothing), and the diff against the base would fail much later."""
    want, got = tensor_shapes(base), tensor_shapes(tuned)
    missing = sorted(set(want) - set(got))
    wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    if not got or missing or wrong:
        example = (f"{missing[0]} missing" if missing else
                   f"{wrong[0]} has shape {got[wrong[0]]}, the base's {want[wrong[0]]}" if wrong else "no tensors")
        raise TrainError(f"{tuned}: the exported model is incomplete ({len(missing)} tensor(s) of {base} missing, "
                         f"{len(wrong)} of another shape; e.g. {example}): ZeRO-3 did not gather the weights "
                         f"(the DeepSpeed config needs stage3_gather_16bit_weights_on_model_save: true)")


def cli(argv: Sequence[str] | None = None) -> int:
    return run_cli("train.sft", SftConfig, main, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(cli())
