"""LoRA instruction tuning, alpaca-lora style: ``python -m train.lora --config JOB.yaml``.

CaMA's settings are the defaults: LoRA r 16, alpha 32, dropout 0.05 on q, k, v, o, gate, up and down
projections; micro batch 4, global batch 128, lr 3e-4, 3 epochs, prompts cut at 512 tokens with the
prompt masked out of the loss (train_on_inputs false) and EOS appended unless the text was cut.
Records are JSON lines (or a JSON array) of ``{instruction, input, output}``; the prompt template is a
file (train/templates/alpaca.json by default).

Runs on one GPU, one node's GPUs or several nodes through the same launcher as pretraining, with
DeepSpeed ZeRO-3 by default (``deepspeed: null`` for plain data parallel, which 8-/4-bit loading
needs). The adapter is written as peft's ``adapter_config.json`` + ``adapter_model.safetensors`` to
``export_dir`` (default ``OUTPUT_DIR/adapter``) with ``base_model.json``, the base's fingerprint
(:mod:`train.base_identity`), and a probe batch and the trained model's
logits on it (``probe.safetensors``): :func:`verify_adapter` loads the base, applies the saved adapter
and checks it reproduces them — the guard against ZeRO-3's known failure of saving empty adapters.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from common.atomic import write_json
from common.config import ConfigError
from common.jsonl import read_json_object
from train.config import TrainError, quiet_known_warnings, run_cli
from train.instruct import InstructionConfig, tune

CAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROBE = "probe.safetensors"


@dataclass(kw_only=True)
class LoraConfig(InstructionConfig):
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: list(CAMA_TARGETS))
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    verify_adapter: bool = True
    export_dir: str | None = None      # default OUTPUT_DIR/adapter

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0 <= self.lora_dropout < 1:
            raise ConfigError("lora_r must be ≥ 1, lora_alpha > 0 and 0 ≤ lora_dropout < 1")
        if self.load_in_8bit and self.load_in_4bit:
            raise ConfigError("choose one of load_in_8bit and load_in_4bit")
        if (self.load_in_8bit or self.load_in_4bit) and (self.cpu or self.deepspeed):
            raise ConfigError("8-/4-bit loading needs a GPU and no DeepSpeed (set deepspeed: null): "
                              "bitsandbytes weights cannot be ZeRO-3 partitioned")


def _quantization(cfg: LoraConfig) -> Any:
    if not (cfg.load_in_8bit or cfg.load_in_4bit):
        return None
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise TrainError("load_in_8bit / load_in_4bit need the bitsandbytes package (pip install bitsandbytes)") from None
    if cfg.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    import torch

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_type="nf4")


def build_model(cfg: LoraConfig, dtype: Any) -> Any:
    """The base (ZeRO-3-partitioned as it loads when DeepSpeed is on) with LoRA adapters on it."""
    import peft
    import transformers
    from transformers import AutoModelForCausalLM

    quant = _quantization(cfg)
    try:
        base = AutoModelForCausalLM.from_pretrained(cfg.base, dtype=dtype, quantization_config=quant)
    except (OSError, ValueError) as exc:
        raise TrainError(f"base: cannot load a Hugging Face model from {cfg.base}: {exc}") from None
    base.config.use_cache = False
    if quant is not None:
        base = peft.prepare_model_for_kbit_training(base, use_gradient_checkpointing=cfg.gradient_checkpointing)
    names = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
    missing = [t for t in cfg.lora_target_modules if t not in names]
    if missing:
        raise ConfigError(f"lora_target_modules: {', '.join(missing)} not in the base model "
                          f"(LLaMA has {', '.join(CAMA_TARGETS)})")
    transformers.set_seed(cfg.seed)  # the same adapter initialisation on every rank
    lora = peft.LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                           target_modules=list(cfg.lora_target_modules), bias="none", task_type="CAUSAL_LM")
    return peft.get_peft_model(base, lora)


def main(cfg: LoraConfig) -> dict[str, Any]:
    """Tune LoRA adapters as ``cfg`` says; every rank calls this."""
    return tune(cfg, _run)


def _run(cfg: LoraConfig, stopper: Any) -> dict[str, Any]:
    import torch

    from train import runtime
    from train.instruct import check_base_fits, evaluate_on, instruction_data
    from train.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(cfg.tokenizer or cfg.base)
    runtime.init_distributed(cfg)
    args = runtime.training_arguments(cfg)  # before the model: ZeRO-3 partitions the base as it loads
    base_config = check_base_fits(cfg, tokenizer)
    data = instruction_data(cfg, tokenizer, args, "train.lora")
    train_set, val_set, sampler, collator = data.train_set, data.val_set, data.sampler, data.collator

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(runtime.resolve_precision(cfg), torch.float32)
    model = build_model(cfg, torch.float32 if cfg.deepspeed else dtype)
    if args.process_index == 0:
        model.print_trainable_parameters()

    saver = runtime.CompleteCheckpoints(runtime.sampler_position(sampler, args), cfg.keep_checkpoints,
                                        runtime.run_fingerprint(cfg, kind="lora"))
    evaluate_on(args, cfg, val_set)
    trainer = runtime.SuiteTrainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=val_set, data_collator=collator,
        callbacks=[stopper, saver], sampler=sampler,
        flops_per_token=runtime.flops_per_token(base_config, data.flops_seq_length),
        peak_tflops=runtime.device_peak_tflops(cfg))
    result = runtime.train(trainer, cfg, stopper, saver)
    if result.status == "completed":
        probe = collator([train_set[i] for i in range(min(2, len(train_set)))])
        result.export = str(export(trainer, tokenizer, cfg, probe))
        if cfg.verify_adapter:
            verified = _verify_on_rank0(trainer, cfg, Path(result.export))
            result.metrics["adapter_max_abs_diff"] = verified
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # later from_pretrained calls in this process must not be ZeRO-partitioned
    if args.process_index == 0:
        print(f"[train.lora] {result.status} at step {result.step}"
              + (f"; adapter written to {result.export}" if result.export else
                 f"; latest complete checkpoint: {result.checkpoint}"), flush=True)
    runtime.leave_distributed()
    return result.to_dict()


def _trained_logits(trainer: Any, probe: dict[str, Any]) -> Any:
    """Logits of the trained model on the probe batch; a collective under ZeRO-3 (every rank runs it)."""
    import torch

    model = trainer.model_wrapped
    model.eval()
    device = trainer.args.device
    with torch.no_grad():
        out = model(input_ids=probe["input_ids"].to(device), attention_mask=probe["attention_mask"].to(device))
    return out.logits.float().cpu()


def export(trainer: Any, tokenizer: Any, cfg: LoraConfig, probe: dict[str, Any]) -> Path:
    """The adapter (peft layout, safetensors) + tokenizer + probe logits, complete or absent."""
    from safetensors.torch import save_file

    from train.base_identity import write_record
    from train.runtime import export_model
    from train.tokenizer import save_tokenizer

    logits = _trained_logits(trainer, probe)

    def finish(tmp: Path) -> None:
        weights = tmp / "adapter_model.safetensors"
        if not weights.exists() or weights.stat().st_size < 1024:
            raise TrainError(f"{weights}: the saved adapter is missing or empty (ZeRO-3 did not gather it)")
        save_tokenizer(tokenizer, tmp)
        save_file({"input_ids": probe["input_ids"].contiguous(), "attention_mask": probe["attention_mask"].contiguous(),
                   "logits": logits.contiguous()}, str(tmp / PROBE))
        config = read_json_object(tmp / "adapter_config.json", TrainError, "adapter config")
        config["base_model_name_or_path"] = str(Path(cfg.base).resolve())
        write_json(tmp / "adapter_config.json", config, sort_keys=True)
        write_record(tmp, cfg.base)  # the base by its fingerprint: the adapter still finds it after a move

    return export_model(trainer, Path(cfg.export_dir or Path(cfg.output_dir) / "adapter"), finish)


def verify_adapter(base: str | Path, adapter: str | Path, atol: float = 1e-4) -> float:
    """Load ``base``, apply the saved ``adapter`` and compare its logits on the adapter's probe batch
    with the trained model's (saved at export). Returns the largest absolute difference; raises
    TrainError beyond ``atol`` (an empty or partial adapter, or another base)."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    probe = load_file(str(Path(adapter) / PROBE))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    with warnings.catch_warnings():
        quiet_known_warnings()  # peft's use of a deprecated transformers API
        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=probe["input_ids"], attention_mask=probe["attention_mask"]).logits.float()
    mask = probe["attention_mask"].bool()
    diff = float((logits - probe["logits"]).abs()[mask].max())
    scale = float(probe["logits"].abs()[mask].max())
    if not diff <= atol * max(1.0, scale):
        raise TrainError(f"{adapter}: the saved adapter on {base} does not reproduce the trained model's logits "
                         f"(max |Δ| {diff:.3g}, logits up to {scale:.3g}): the adapter is incomplete or for another base")
    return diff


def _verify_on_rank0(trainer: Any, cfg: LoraConfig, adapter: Path) -> float:
    """:func:`verify_adapter` on rank 0 alone, the others waiting (a failure stops every rank). ZeRO-3's
    zero.Init must be off for that load (it is a collective); the run is over, so it is switched off."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from train.runtime import on_rank0, resolve_precision

    def check() -> float:
        unset_hf_deepspeed_config()
        atol = 1e-4 if resolve_precision(cfg) == "fp32" else 2e-2
        diff = verify_adapter(cfg.base, adapter, atol=atol)
        print(f"[train.lora] adapter verified: base + saved adapter reproduce the trained logits "
              f"(max |Δ| {diff:.2e})", flush=True)
        return diff

    return on_rank0(check)


def cli(argv: Sequence[str] | None = None) -> int:
    return run_cli("train.lora", LoraConfig, main, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(cli())
