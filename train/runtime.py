"""What pretraining and LoRA tuning share: the run settings, DeepSpeed, the Trainer, resume and stop.

One run, whatever the entry point:

- :class:`RunConfig` — batch, optimizer, schedule, precision, DeepSpeed, checkpoints, logging.
- :func:`init_distributed` — the process group from the torch.distributed env (``RANK``,
  ``WORLD_SIZE``, ``MASTER_ADDR``…; under Slurm ``hpc.dist`` sets them): NCCL on GPUs, gloo on CPU.
- :func:`training_arguments` — a ``TrainingArguments`` with the DeepSpeed config filled in. Build it
  before the model: it switches on ``zero.Init``, so a ZeRO-3 model is partitioned as it is created.
- :class:`SuiteTrainer` — the HF Trainer with a deterministic, seeded sampler (the data position is
  the optimizer step × the global batch, restored exactly on resume), tokens/s/GPU and MFU in every
  log line — printed readably and written to ``OUTPUT_DIR/metrics.jsonl`` by :mod:`train.metrics`
  instead of the Trainer's dict printout —, complete-or-absent checkpoints (:mod:`train.checkpoint`)
  and a cooperative stop.
- :func:`train` — resume from the latest complete checkpoint, train, and on SIGUSR2 save at the
  next step boundary on every rank and return ``status: "preempted"`` (whoever launched the run
  requeues it: ``slurm/lib.sh`` or ``hpc``; nothing here knows about Slurm).
"""

from __future__ import annotations

import copy
import datetime
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from common.atomic import remove_stale_temps, replace_dir, write_json
from common.config import ConfigError
from common.jsonl import parse_json, read_json_object
from train import checkpoint as ckpt
from train.config import RunConfig, TrainError
from train.data import ResumableSampler
from train.metrics import MetricsLog

DEEPSPEED_DIR = Path(__file__).resolve().parent / "deepspeed"

# Dense peak TFLOP/s per GPU for the MFU figure (fp16/bf16 tensor cores), matched on the device name.
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("A800", 312.0),
               ("L40S", 362.0), ("A10", 125.0), ("V100", 125.0), ("T4", 65.0))


# ---------------------------------------------------------------------------------------------
# Process group, precision, DeepSpeed


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def init_distributed(cfg: RunConfig) -> None:
    """Join the process group the torch.distributed env describes (a lone process gets a group of one)."""
    if not cfg.cpu and not torch.cuda.is_available():
        raise TrainError("no CUDA device is visible: set cpu: true to train on the CPU (tests, demo)")
    for key, default in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, default)
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    if cfg.cpu:
        # DeepSpeed's CPU accelerator counts its devices by running `numactl --hardware` unless LOCAL_SIZE
        # says, and ZeRO-3 asks for every gradient bucket it reduces: a subprocess per bucket, ~5 % of a
        # CPU step. The devices of a CPU run are this node's processes.
        os.environ.setdefault("LOCAL_SIZE", os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    if torch.distributed.is_initialized():
        return
    # Rank 0 alone writes a 13B export or fsyncs a checkpoint while the others wait in a barrier:
    # DeepSpeed's default of 10 minutes is too short for that.
    timeout = datetime.timedelta(minutes=cfg.dist_timeout_minutes)
    if cfg.deepspeed:
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo" if cfg.cpu else "nccl", timeout=timeout)
    elif world_size() > 1:
        torch.distributed.init_process_group("gloo" if cfg.cpu else "nccl", timeout=timeout)
    if not cfg.cpu:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))


def leave_distributed() -> None:
    """Every rank leaves the process group together at the end of a run.

    Exiting with the group still up lets a rank whose peer is already gone abort in the backend's
    teardown ("terminate called without an active exception", SIGABRT) after a run that succeeded,
    and the job is then reported as failed."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def resolve_precision(cfg: RunConfig) -> str:
    if cfg.precision != "auto":
        if cfg.cpu and cfg.precision == "fp16":
            raise ConfigError("precision: fp16 needs a GPU (use bf16 or fp32 with cpu: true)")
        return cfg.precision
    if cfg.cpu:
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"  # V100: fp16, as CaMA trained


def deepspeed_config(cfg: RunConfig) -> dict[str, Any] | None:
    """The run's DeepSpeed config: the named file, with the offload option applied."""
    if not cfg.deepspeed:
        return None
    path = Path(cfg.deepspeed)
    if not path.suffix and not path.exists():
        path = DEEPSPEED_DIR / f"{cfg.deepspeed}.json"
    try:
        ds = parse_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        shipped = ", ".join(sorted(p.stem for p in DEEPSPEED_DIR.glob("*.json")))
        raise ConfigError(f"deepspeed: {cfg.deepspeed!r} is neither a file nor one of {shipped}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, nesting too deep, not UTF-8
        raise ConfigError(f"deepspeed: {path} is not valid JSON: {exc}") from None
    if not isinstance(ds, dict):
        raise ConfigError(f"deepspeed: {path}: expected a JSON object")
    zero = ds.setdefault("zero_optimization", {})
    if cfg.offload in ("optimizer", "all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        # ZeRO-Offload steps the optimizer on the CPU: DeepSpeed's compiled CPU Adam, not torch's.
        ds.get("optimizer", {}).get("params", {}).pop("torch_adam", None)
    if cfg.offload == "all":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return ds


def training_arguments(cfg: RunConfig, **extra: Any) -> TrainingArguments:
    """HF TrainingArguments for the run. Create it before the model (it enables ZeRO-3's zero.Init)."""
    precision = resolve_precision(cfg)
    accumulation = cfg.gradient_accumulation_steps
    if cfg.batch_size is not None:
        per_step = cfg.micro_batch_size * world_size()
        if cfg.batch_size % per_step:
            raise ConfigError(f"batch_size {cfg.batch_size} is not a multiple of micro_batch_size × processes "
                              f"= {cfg.micro_batch_size} × {world_size()}")
        accumulation = cfg.batch_size // per_step
    if not os.isatty(2):  # a Slurm log: no "Writing model shards" bars (carriage returns) at every save
        transformers.utils.logging.disable_progress_bar()
    # One TensorBoard folder per run (across requeues), not the Trainer's runs/<date>_<host> per start.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(cfg.output_dir) / "tensorboard")
    return TrainingArguments(
        output_dir=cfg.output_dir,
        per_device_train_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=cfg.learning_rate,
        adam_beta1=cfg.adam_beta1, adam_beta2=cfg.adam_beta2, adam_epsilon=cfg.adam_epsilon,
        weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_steps,
        num_train_epochs=cfg.num_epochs, max_steps=cfg.max_steps,
        bf16=precision == "bf16", fp16=precision == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,
        # Non-reentrant: works when the inputs need no grad (LoRA's frozen embeddings) and under ZeRO-3.
        activation_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        deepspeed=deepspeed_config(cfg),
        use_cpu=cfg.cpu,
        save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=None,  # pruned by CompleteCheckpoints, after the new marker exists
        logging_strategy="steps", logging_steps=cfg.logging_steps, logging_first_step=True,
        report_to=list(cfg.report_to) or "none",
        seed=cfg.seed, data_seed=cfg.seed,
        dataloader_num_workers=cfg.dataloader_workers,
        dataloader_drop_last=True,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        disable_tqdm=not os.isatty(2),
        **extra,
    )


# ---------------------------------------------------------------------------------------------
# Throughput and MFU


def flops_per_token(config: Any, seq_length: int, trainable_only: bool = False) -> float:
    """Training FLOPs per token of a LLaMA-shaped model: 6 × matmul parameters + attention.

    The PaLM accounting: 2 FLOPs per multiply-add, ×3 for forward + backward, over every weight
    matrix a token passes through (the embedding lookup is not a matmul; the LM head is), plus
    12 · layers · hidden · seq for the attention scores. Recomputation under gradient checkpointing
    is not counted, so this is MFU, not hardware utilisation. (LoRA's frozen base still costs the
    forward and the input-gradient backward, 4 of the 6: ``trainable_only`` is not used for it.)
    """
    h, layers = config.hidden_size, config.num_hidden_layers
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or h // heads
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2        # q, o and k, v
    mlp = 3 * h * config.intermediate_size
    matmul_params = layers * (attn + mlp) + h * config.vocab_size  # + LM head
    return 6.0 * matmul_params + 12.0 * layers * heads * head_dim * seq_length


def device_peak_tflops(cfg: RunConfig) -> float | None:
    if cfg.peak_tflops:
        return cfg.peak_tflops
    if cfg.cpu or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((tf for key, tf in PEAK_TFLOPS if key in name), None)


# ---------------------------------------------------------------------------------------------
# Cooperative stop on SIGUSR2


class StopOnSignal(TrainerCallback):
    """SIGUSR2 asks for a checkpoint and a clean exit. Ranks may get the signal at different moments
    (or only some of them), so at every step end the flag is reduced (max) over all ranks and they
    all stop at the same step: the Trainer saves there (a collective under ZeRO-3) and returns.

    Installed for the whole entry point (``with StopOnSignal() as stopper``): a signal during setup
    (loading a 13B model, validating the corpus) ends the run before its first step with the latest
    checkpoint unchanged; one during the export lets the export finish."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped_at: int | None = None
        self._previous: Any = None

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGUSR2, self._on_signal)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGUSR2, self._previous)
            self._previous = None

    def __enter__(self) -> StopOnSignal:
        self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.uninstall()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.requested = True
        print(f"[train] rank {rank()}: SIGUSR2 received: checkpoint at the next step, then exit", flush=True)

    def agreed(self) -> bool:
        """Whether any rank got the signal (a collective: every rank calls it at the same point)."""
        flag = self.requested
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            t = torch.tensor([1 if flag else 0], dtype=torch.int32)
            if torch.distributed.get_backend() == "nccl":
                t = t.cuda()
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.agreed():
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


def on_rank0(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` on rank 0 while the other ranks wait; its result — or its error — reaches every rank.

    A bare barrier after rank-0-only work would leave the others waiting until the collective timeout
    when rank 0 fails (a full disk while sealing a checkpoint, an adapter that fails its check), and
    the job would end with a timeout instead of the reason. Here every rank raises together."""
    distributed = torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
    outcome: list[Any] = [None]
    error: BaseException | None = None
    if not distributed or torch.distributed.get_rank() == 0:
        try:
            outcome = [("ok", fn(*args, **kwargs))]
        except Exception as exc:
            error = exc
            outcome = [("error", f"{type(exc).__name__}: {exc}")]
    if distributed:
        torch.distributed.broadcast_object_list(outcome, src=0)
    status, value = outcome[0]
    if status == "error":
        if error is not None:
            raise error
        raise TrainError(f"rank 0 failed, so this rank stops too: {value}")
    return value


class CompleteCheckpoints(TrainerCallback):
    """After the Trainer has saved ``checkpoint-N`` on every rank: the data position, then the marker."""

    def __init__(self, sampler_state: Any, keep: int, fingerprint: dict[str, Any]) -> None:
        self.sampler_state = sampler_state  # () -> dict, the sampler's position after this step
        self.keep = keep
        self.fingerprint = fingerprint
        self.last: ckpt.Checkpoint | None = None

    def on_save(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> Any:
        if torch.distributed.is_initialized():
            torch.distributed.barrier()  # every rank's ZeRO partitions are written
        # Nobody runs ahead (and gets killed) before the marker exists.
        self.last = on_rank0(self._seal, Path(args.output_dir), state.global_step)
        return control

    def _seal(self, output_dir: Path, step: int) -> ckpt.Checkpoint:
        path = output_dir / f"checkpoint-{step}"
        write_json(path / ckpt.SAMPLER_STATE, self.sampler_state(step), indent=1)
        sealed = ckpt.mark_complete(path, step, {"run": self.fingerprint})
        ckpt.prune(output_dir, self.keep)
        return sealed


# ---------------------------------------------------------------------------------------------
# The Trainer


class SuiteTrainer(Trainer):
    """HF Trainer with the suite's sampler and throughput figures; everything else is stock."""

    def __init__(self, *args: Any, sampler: ResumableSampler, flops_per_token: float,
                 peak_tflops: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.suite_sampler = sampler
        self._flops_per_token = flops_per_token
        self._peak = peak_tflops
        self._last_log: tuple[float, int] | None = None
        # The Trainer prints each log as a dict of strings; train.metrics prints a readable line and
        # writes metrics.jsonl instead. The progress bar (on a terminal) stays.
        self.remove_callback(PrinterCallback)
        if self.pop_callback(ProgressCallback) is not None:
            self.add_callback(_BarOnly)
        self.metrics_log = MetricsLog(self.args.output_dir)
        self.add_callback(self.metrics_log)
        if self.args.eval_strategy != "no":
            self.add_callback(EvaluateAtTheEnd)

    def _get_train_sampler(self, train_dataset: Any = None) -> ResumableSampler:
        return self.suite_sampler

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = super()._prepare_inputs(inputs)
        # Packed batches (train.packing): the model keeps their examples apart only when given them
        # without the 2-D attention mask, which the batch keeps for counting real tokens (a new dict:
        # the Trainer counts on the one it collated).
        if getattr(self.data_collator, "packed", False):
            inputs = self.data_collator.model_inputs(
                inputs, getattr(getattr(self.model, "config", None), "_attn_implementation", None))
        return inputs

    def _run_epoch(self, **kwargs: Any) -> Any:
        # A resumed epoch's dataloader is wrapped twice (accelerate's SkipBatchSampler around its
        # BatchSamplerShard), and set_epoch does not reach the sampler through both: without this a
        # run resumed in the middle of epoch ≥ 1 would replay epoch 0's order.
        self.suite_sampler.set_epoch(kwargs["epoch"])
        if self.state.global_step >= self.state.max_steps:
            # Resumed from the last checkpoint: nothing is left, but the Trainer would take one more step.
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(**kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log line (not the final summary)
            now, tokens = time.perf_counter(), int(self.state.num_input_tokens_seen)
            if self._last_log is not None:
                dt, dtok = now - self._last_log[0], tokens - self._last_log[1]
                if dt > 0 and dtok > 0:
                    per_gpu = dtok / dt / max(self.args.world_size, 1)
                    logs["tokens_per_s_per_gpu"] = round(per_gpu, 1)
                    if self._peak:
                        logs["mfu"] = round(per_gpu * self._flops_per_token / (self._peak * 1e12), 4)
            self._last_log = (now, tokens)
        super().log(logs, start_time)


class _BarOnly(ProgressCallback):
    """The Trainer's progress bar without its printout of every log."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        return None


class EvaluateAtTheEnd(TrainerCallback):
    """Evaluate after the last step too, so the held-out curve ends where training does."""

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= state.max_steps:
            control.should_evaluate = True
        return control


@dataclass
class RunResult:
    status: str                   # "completed" or "preempted"
    step: int
    checkpoint: str | None        # the latest complete checkpoint
    resumed_from: int | None      # the step this run started at (None: from scratch)
    export: str | None = None     # the final model / adapter (completed runs)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_sampler_state(checkpoint: ckpt.Checkpoint, sampler: ResumableSampler) -> None:
    """The data a checkpoint was trained on must be the data this run reads: same size, seed, order.

    Only checked, not loaded: the Trainer itself fast-forwards the (deterministic) sampler by the
    checkpoint's step on resume, without reading the skipped samples."""
    saved = read_json_object(checkpoint.path / ckpt.SAMPLER_STATE, TrainError, "the checkpoint's data position",
                             "data position")
    now = sampler.state_dict()
    changed = [k for k in ("size", "seed", "shuffle", "group_by_length") if saved.get(k) != now.get(k)]
    if changed:
        raise TrainError(f"{checkpoint.path} was trained on other data or another order "
                         f"({', '.join(f'{k}: {saved.get(k)!r} then, {now.get(k)!r} now' for k in changed)}): "
                         f"resuming would not continue at the same sample. Use a new output_dir, or resume: never.")


def sampler_position(sampler: ResumableSampler, args: TrainingArguments) -> Any:
    """The sampler's position after ``step`` optimizer steps, as the Trainer walks the data: each rank
    gets ⌊⌊N / micro⌋ / world⌋ batches per epoch (drop_last), grouped into steps of ``accumulation``
    batches with a shorter last step. (The DataLoader prefetches ahead, so the position comes from the
    step count, not from what the sampler has handed out.)"""
    micro, world, accumulation = args.per_device_train_batch_size, args.world_size, args.gradient_accumulation_steps
    per_rank = len(sampler) // micro // world
    steps_per_epoch = max(math.ceil(per_rank / accumulation), 1)

    def state(step: int) -> dict[str, Any]:
        epoch, within = divmod(step, steps_per_epoch)
        s = dict(sampler.state_dict())
        s.update(epoch=epoch, consumed=min(within * accumulation, per_rank) * micro * world, global_step=step,
                 global_batch=micro * accumulation * world, steps_per_epoch=steps_per_epoch)
        return s
    return state


def train(trainer: SuiteTrainer, cfg: RunConfig, stopper: StopOnSignal, saver: CompleteCheckpoints) -> RunResult:
    """Resume from the latest complete checkpoint, train, and report how the run ended."""
    gone = on_rank0(ckpt.remove_incomplete, cfg.output_dir)  # before any rank looks for a checkpoint
    if gone and trainer.args.process_index == 0:
        print(f"[train] removed unfinished checkpoint(s): {', '.join(p.name for p in gone)}", flush=True)
    try:
        start = ckpt.resolve_resume(cfg.output_dir, cfg.resume)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    if start is not None:
        check_sampler_state(start, trainer.suite_sampler)
        print(f"[train] resuming from {start.path} (step {start.step})", flush=True)
    # metrics.jsonl keeps the steps up to the checkpoint; the later ones are trained (and logged) again.
    on_rank0(trainer.metrics_log.resume, start.step if start else 0)
    if stopper.agreed():  # the signal came during setup: the latest checkpoint stays the one to resume
        latest = ckpt.latest_complete(cfg.output_dir)
        return RunResult(status="preempted", step=start.step if start else 0,
                         checkpoint=str(latest.path) if latest else None, resumed_from=start.step if start else None)
    output = trainer.train(resume_from_checkpoint=str(start.path) if start else None)
    latest = ckpt.latest_complete(cfg.output_dir)
    status = "preempted" if stopper.stopped_at is not None and trainer.state.global_step < trainer.state.max_steps \
        else "completed"
    return RunResult(status=status, step=trainer.state.global_step, checkpoint=str(latest.path) if latest else None,
                     resumed_from=start.step if start else None, metrics=dict(output.metrics))


def export_model(trainer: SuiteTrainer, final: Path, finish: Any) -> Path:
    """The trained model (or adapter) saved by the Trainer into a temporary folder next to ``final``
    — under ZeRO-3 every rank takes part, the 16-bit weights being gathered — then completed by rank 0
    with ``finish(tmp)`` (tokenizer, extras) and swapped in: complete or absent."""

    def prepare() -> str:
        remove_stale_temps(final.parent, f"{final.name}.tmp-")  # what a killed export left behind
        tmp = final.parent / f"{final.name}.tmp-{os.getpid()}"  # rank 0's pid: every rank gets this name
        shutil.rmtree(tmp, ignore_errors=True)
        return str(tmp)

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(on_rank0(prepare))
    trainer.save_model(str(tmp))

    def complete() -> None:
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; the suite's artifacts hold none
        finish(tmp)
        replace_dir(tmp, final)

    on_rank0(complete)
    return final


def run_fingerprint(cfg: RunConfig, **extra: Any) -> dict[str, Any]:
    """What a checkpoint records about the run that wrote it (for people reading the marker)."""
    keep = {k: v for k, v in asdict(cfg).items() if k not in ("resume", "report_to", "dataloader_workers")}
    return {"config": copy.deepcopy(keep), "world_size": world_size(), "transformers": transformers.__version__,
            "torch": torch.__version__, **extra}
