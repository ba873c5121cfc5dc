"""Continued pretraining on the packed corpus: ``python -m train.pretrain --config JOB.yaml``.

CaMA's recipe is the default (configs/pretrain/cama13b_3x8v100.yaml): LLaMA-13B from a Hugging Face
checkpoint, DeepSpeed ZeRO-3 over every GPU, AdamW (0.9, 0.95), lr 1.5e-5, weight decay 0.1, 300
warm-up steps then cosine, micro batch 20 × accumulation 3 on 24 GPUs, sequences of 1024 tokens,
gradient checkpointing, fp16 on V100 (bf16 where the GPU has it). Unlike CaMA, nothing is offloaded
to the CPU unless ``offload`` says so.

The data is a .bin/.idx pair or a blended mix written by ``python -m corpus``; it is validated
against the model's vocabulary before the first step, as are the tokenizer (the very file the corpus
was tokenized with, by its sha256) and the sequence length. ``model_config`` is typed
(:class:`train.config.ModelConfig`): a misspelt key fails with its name before anything is imported.
With ``eval_samples`` (or ``eval_fraction``) whole samples chosen by the seed are held out of the data
(:func:`train.data.split_held_out`: never trained on, at any position of a mix) and their loss is
logged as ``eval_loss`` every ``eval_steps`` and after the last step. Every rank runs this same entry point (under Slurm through ``hpc.dist``; locally through torchrun or
as a single process). The final model is exported as a plain Hugging Face checkpoint (safetensors +
tokenizer) that ``from_pretrained`` loads: ``export_dir`` (default ``OUTPUT_DIR/final``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from common.config import ConfigError
from common.jsonl import read_json_object
from train.config import ModelConfig, RunConfig, TrainError, as_model_config, quiet_known_warnings, run_cli


@dataclass(kw_only=True)
class PretrainConfig(RunConfig):
    data: str                            # .bin/.idx prefix, or a mix prefix (PREFIX.mix.json)
    tokenizer: str | None = None         # folder or tokenizer.model (default: the model's own)
    model: str | None = None             # a Hugging Face LLaMA checkpoint to continue from …
    model_config: ModelConfig | str | None = None  # … or a LlamaConfig (its keys, or a config.json) to start fresh
    seq_length: int = 1024
    group_by_length: bool = False
    attn_implementation: str = "sdpa"
    validate_data: bool = True
    # A held-out split for eval_loss (every eval_steps): whole samples chosen by the seed, never trained on.
    eval_fraction: float = 0.0           # this share of the samples …
    eval_samples: int = 0                # … or this many
    export_dir: str | None = None        # default OUTPUT_DIR/final

    def __post_init__(self) -> None:
        super().__post_init__()
        self.model_config = as_model_config(self.model_config)
        if (self.model is None) == (self.model_config is None):
            raise ConfigError("give exactly one of 'model' (a checkpoint to continue from) "
                              "or 'model_config' (a LlamaConfig to start from)")
        if self.tokenizer is None and self.model is None:
            raise ConfigError("'tokenizer' is required when the model starts from model_config")
        if self.seq_length < 2:
            raise ConfigError(f"seq_length must be ≥ 2, got {self.seq_length}")
        if not 0 <= self.eval_fraction < 0.5:
            raise ConfigError(f"eval_fraction must be in [0, 0.5), got {self.eval_fraction}")
        if self.eval_samples < 0:
            raise ConfigError(f"eval_samples must be ≥ 0, got {self.eval_samples}")
        if self.eval_fraction and self.eval_samples:
            raise ConfigError("give one of eval_fraction and eval_samples, not both")

    @property
    def evaluates(self) -> bool:
        return bool(self.eval_fraction or self.eval_samples)


def model_config(cfg: Any, vocab_size: int) -> Any:
    """The LlamaConfig to build, or the one of the checkpoint to continue from."""
    from transformers import AutoConfig, LlamaConfig

    if cfg.model is not None:
        try:
            return AutoConfig.from_pretrained(cfg.model)
        except (OSError, ValueError) as exc:
            raise TrainError(f"model: cannot read a Hugging Face config from {cfg.model}: {exc}") from None
    if isinstance(cfg.model_config, ModelConfig):
        values = cfg.model_config.llama_kwargs(vocab_size, cfg.seq_length)
    else:  # a Hugging Face config.json: transformers' own format, checked by transformers
        values = read_json_object(cfg.model_config, ConfigError, "model_config file", "config.json")
        values.setdefault("vocab_size", vocab_size)
        values.setdefault("max_position_embeddings", cfg.seq_length)
    try:
        return LlamaConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model_config: {exc}") from None


def check_lengths(cfg: Any, config: Any, dataset: Any) -> None:
    positions = config.max_position_embeddings
    if cfg.seq_length > positions:
        raise TrainError(f"seq_length {cfg.seq_length} is beyond the model's {positions} positions "
                         f"(max_position_embeddings): lower seq_length or use a model with more positions")
    longest = int(dataset.lengths.max()) if len(dataset) else 0
    if longest > positions:
        raise TrainError(f"{cfg.data}: a sample of {longest} tokens is longer than the model's {positions} positions")


def held_out(cfg: PretrainConfig, dataset: Any, args: Any) -> tuple[Any, Any]:
    """``(train, eval)`` datasets: the held-out split when the job asks for one, else ``(dataset, None)``."""
    from train.data import held_out_count, split_held_out

    count = held_out_count(len(dataset), cfg.eval_fraction, cfg.eval_samples)
    if not count:
        return dataset, None
    per_batch = args.per_device_eval_batch_size * args.world_size
    if count < per_batch:  # batches are whole (drop_last): fewer samples would evaluate nothing
        raise TrainError(f"eval: {count} held-out sample(s), fewer than one evaluation batch of micro_batch_size × "
                         f"processes = {per_batch}; raise eval_samples / eval_fraction")
    train_set, eval_set = split_held_out(dataset, count, cfg.seed)
    if args.process_index == 0:
        print(f"[train.pretrain] {len(eval_set)} sample(s) held out for eval_loss every {args.eval_steps} steps "
              f"({len(eval_set) // per_batch * per_batch} evaluated); {len(train_set)} position(s) to train on",
              flush=True)
    return train_set, eval_set


def main(cfg: PretrainConfig) -> dict[str, Any]:
    """Pretrain (or continue pretraining) as ``cfg`` says; every rank calls this."""
    from train.fingerprint import check_data_tokenizer

    # Before torch is imported: a corpus tokenized with another tokenizer fails in a fraction of a second.
    check_data_tokenizer(cfg.tokenizer or cfg.model, cfg.data)
    quiet_known_warnings(cfg.cpu)
    from train.runtime import StopOnSignal

    with StopOnSignal() as stopper:
        return _run(cfg, stopper)


def _run(cfg: PretrainConfig, stopper: Any) -> dict[str, Any]:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from train import runtime
    from train.data import Collator, ResumableSampler, open_dataset
    from train.tokenizer import check_vocab, load_tokenizer

    tokenizer = load_tokenizer(cfg.tokenizer if cfg.tokenizer else cfg.model)
    runtime.init_distributed(cfg)
    evaluation = ({"eval_strategy": "steps", "eval_steps": cfg.eval_steps or cfg.save_steps,
                   "per_device_eval_batch_size": cfg.micro_batch_size, "prediction_loss_only": True}
                  if cfg.evaluates else {})
    args = runtime.training_arguments(cfg, **evaluation)  # before the model: ZeRO-3 partitions it as it is built
    config = model_config(cfg, len(tokenizer))
    check_vocab(tokenizer, config.vocab_size, f"model {cfg.model or 'model_config'}")
    dataset = open_dataset(cfg.data, cfg.seq_length, vocab_size=config.vocab_size, validate=cfg.validate_data)
    check_lengths(cfg, config, dataset)
    train_set, eval_set = held_out(cfg, dataset, args)

    transformers.set_seed(cfg.seed)
    if cfg.model is not None:
        model = AutoModelForCausalLM.from_pretrained(cfg.model, config=config, dtype=torch.float32,
                                                     attn_implementation=cfg.attn_implementation)
    else:
        model = AutoModelForCausalLM.from_config(config, attn_implementation=cfg.attn_implementation)
    model.config.use_cache = False

    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    if len(train_set) < global_batch:
        raise TrainError(f"{cfg.data}: {len(train_set)} samples to train on, fewer than one global batch of "
                         f"{global_batch}")
    sampler = ResumableSampler(len(train_set), cfg.seed, lengths=train_set.lengths if cfg.group_by_length else None,
                               group_by_length=cfg.group_by_length)
    saver = runtime.CompleteCheckpoints(runtime.sampler_position(sampler, args), cfg.keep_checkpoints,
                                        runtime.run_fingerprint(cfg, kind="pretrain"))
    trainer = runtime.SuiteTrainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
        data_collator=Collator(pad_id=tokenizer.pad_token_id),
        callbacks=[stopper, saver], sampler=sampler,
        flops_per_token=runtime.flops_per_token(config, cfg.seq_length), peak_tflops=runtime.device_peak_tflops(cfg))
    result = runtime.train(trainer, cfg, stopper, saver)
    if result.status == "completed":
        result.export = str(export(trainer, tokenizer, cfg))
    if args.process_index == 0:
        print(f"[train.pretrain] {result.status} at step {result.step}"
              + (f"; model exported to {result.export}" if result.export else
                 f"; latest complete checkpoint: {result.checkpoint}"), flush=True)
    runtime.leave_distributed()
    return result.to_dict()


def export(trainer: Any, tokenizer: Any, cfg: PretrainConfig) -> Path:
    """The trained model as a plain HF checkpoint (safetensors + config + tokenizer), complete or absent."""
    from train.runtime import export_model
    from train.tokenizer import save_tokenizer

    final = Path(cfg.export_dir or Path(cfg.output_dir) / "final")
    return export_model(trainer, final, lambda tmp: save_tokenizer(tokenizer, tmp))


def cli(argv: Sequence[str] | None = None) -> int:
    return run_cli("train.pretrain", PretrainConfig, main, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    raise SystemExit(cli())
