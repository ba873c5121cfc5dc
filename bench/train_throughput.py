"""Training throughput and MFU: the suite's pretraining (HF Trainer + DeepSpeed ZeRO-3) against a
hand-written DeepSpeed ZeRO-3 loop of the same LLaMA with the same DeepSpeed config, in one run.

    python bench/train_throughput.py                          # CPU: the "small" preset (~29M), 2 rounds, ~3-4 min
    python bench/train_throughput.py --preset tiny --rounds 1 # a quick look
    python bench/train_throughput.py --nproc 2                # 2 processes over gloo, like the tests
    python bench/train_throughput.py --preset 1b --seq-length 2048 --micro-batch 4 --steps 30   # a GPU

Three sides, each in fresh processes (``--nproc`` ranks), on the same model config, random tokens of
full length (no padding), micro batch, precision and gradient checkpointing:

- **zero3 loop (the baseline)**: ``deepspeed.initialize`` with exactly the DeepSpeed config the suite
  runs with (train/deepspeed/zero3.json, its ``auto`` values filled by transformers from the same
  TrainingArguments; the model built under ``zero.Init`` the same way), then forward,
  ``engine.backward``, ``engine.step``. Same optimizer (DeepSpeed's AdamW from the config), same
  ZeRO stage, same gradient clipping.
- **suite**: ``train.pretrain.main`` (HF Trainer, our callbacks, sampler, metrics log every step,
  data read from a .bin/.idx pair); its figure is its own per-step ``tokens_per_s_per_gpu``.
- **plain PyTorch (a reference, one process only)**: the same model without DeepSpeed (autocast,
  torch AdamW, fused on GPU): what ZeRO-3 itself costs on this device.

A step's time is the interval between consecutive step ends (the suite's log lines are exactly that),
so data loading and per-step bookkeeping count on every side. Figures are medians over the steps
after warm-up; the sides run in alternating order, ``--rounds`` times, and the ratio is the median of
each round's suite / zero3 loop (the machine's load changes between rounds, far less within one).
MFU uses the PaLM accounting of train.runtime.flops_per_token and the device's dense bf16/fp16 peak
(train.runtime.PEAK_TFLOPS, or --peak-tflops). Results also go to bench/.cache/results-train-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = Path(__file__).resolve().parent / ".cache"

PRESETS = {
    # ~1.1B parameters: LLaMA proportions (TinyLlama-1.1B's shape, vocabulary 32000).
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4),
    "350m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=16),
    # ~29M matmul parameters (with the 3000-piece bench tokenizer): a step of a second or two on 2 cores.
    "small": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=8),
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=8),
}
SIDES = ("zero3", "suite", "plain")
LABELS = {"zero3": "DeepSpeed ZeRO-3 loop (baseline)", "suite": "suite: HF Trainer + ZeRO-3",
          "plain": "plain PyTorch loop (reference)"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="model shape (default: 1b on GPU, small on CPU)")
    p.add_argument("--tokenizer", default=None,
                   help="a LLaMA tokenizer.model (its size is the model's vocabulary; LLaMA's: 32000). "
                        "Default: one trained here on the bundled samples, 3000 pieces")
    p.add_argument("--seq-length", type=int, default=None, help="default 2048 on GPU, 256 on CPU")
    p.add_argument("--micro-batch", type=int, default=None, help="default 8 on GPU, 4 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on GPU, 6 on CPU)")
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the medians (≥ 1)")
    p.add_argument("--rounds", type=int, default=2, help="times each side runs, in alternating order")
    p.add_argument("--nproc", type=int, default=1, help="processes per side (gloo on CPU, NCCL on GPUs)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU: torch threads per process (default 1: on a shared machine more threads than free "
                        "cores make every op wait for a descheduled thread; 2 on a quiet 2-core box)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is visible")
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default=None)
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak, where the GPU is not in the table")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--only", choices=SIDES, action="append", default=None, help="run only this side (repeatable)")
    p.add_argument("--json", default=None, help="results file (default bench/.cache/results-train-….json)")
    # Internal: one rank of one side, started by the parent run.
    p.add_argument("--worker", choices=SIDES, default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--vocab-size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup < 1:
        p.error("--warmup must be ≥ 1 (the suite's first step has no interval to time)")
    return args


def setup(args: argparse.Namespace) -> argparse.Namespace:
    """Defaults that depend on the device, and the tokenizer (the model's vocabulary)."""
    import torch

    gpu = torch.cuda.is_available() and not args.cpu
    args.cpu = not gpu
    args.preset = args.preset or ("1b" if gpu else "small")
    args.seq_length = args.seq_length or (2048 if gpu else 256)
    args.micro_batch = args.micro_batch or (8 if gpu else 4)
    args.steps = args.steps or (20 if gpu else 6)
    if args.precision is None:
        args.precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if gpu else "fp32"
    args.device_name = torch.cuda.get_device_name() if gpu else f"CPU ({os.cpu_count()} cores)"
    if args.tokenizer is None:
        from corpus.tokenizer import train_tokenizer

        cached = CACHE / "train-bench-tokenizer-v3000.model"
        if not cached.is_file():
            samples = ROOT / "examples" / "data" / "corpus"
            texts = [json.loads(line)["text"] for f in sorted(samples.glob("*.jsonl"))
                     for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
            CACHE.mkdir(parents=True, exist_ok=True)
            made = train_tokenizer(texts, Path(tempfile.mkdtemp(prefix="bench-tok-")) / "tokenizer.model",
                                   vocab_size=3000)
            os.replace(made, cached)
        args.tokenizer = str(cached)
    import sentencepiece as spm

    args.vocab_size = spm.SentencePieceProcessor(model_file=args.tokenizer).get_piece_size()
    return args


def llama_config(args: argparse.Namespace):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=args.vocab_size, max_position_embeddings=args.seq_length, **PRESETS[args.preset])


def run_config(args: argparse.Namespace, output_dir: str, data: str = "unused"):
    """The suite's job config; the zero3 loop takes its DeepSpeed config and TrainingArguments from it too."""
    from train.pretrain import PretrainConfig

    steps = args.warmup + args.steps
    return PretrainConfig(
        data=data, tokenizer=args.tokenizer, output_dir=output_dir,
        model_config={**PRESETS[args.preset], "max_position_embeddings": args.seq_length},
        seq_length=args.seq_length, micro_batch_size=args.micro_batch, gradient_accumulation_steps=1,
        max_steps=steps, warmup_steps=1, save_steps=steps, logging_steps=1, report_to=[],
        cpu=args.cpu, precision=args.precision, gradient_checkpointing=args.gradient_checkpointing,
        dataloader_workers=0 if args.cpu else 2, validate_data=False, peak_tflops=args.peak_tflops)


def random_batches(args: argparse.Namespace, device: str, seed: int):
    """What the suite's collator hands the model for full-length samples: ids, an all-ones mask, labels."""
    import torch

    g = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randint(3, args.vocab_size, (args.micro_batch, args.seq_length), generator=g)
        yield {"input_ids": x.to(device), "attention_mask": torch.ones_like(x).to(device), "labels": x.clone().to(device)}


def step_rates(args: argparse.Namespace, step, sync) -> list[float]:
    """Tokens/s/device of each timed step: ``step()`` runs one optimizer step; intervals end to end."""
    tokens = args.micro_batch * args.seq_length
    ends = [time.perf_counter()]
    for _ in range(args.warmup + args.steps):
        step()
        sync()
        ends.append(time.perf_counter())
    return [tokens / (b - a) for a, b in zip(ends[args.warmup:], ends[args.warmup + 1:])]


def plain_loop(args: argparse.Namespace) -> list[float]:
    """The reference: the model without DeepSpeed (one process)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cpu" if args.cpu else "cuda"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(llama_config(args), attn_implementation="sdpa").to(device)
    model.config.use_cache = False
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=not args.cpu)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(enabled=args.precision == "fp16")
    batches = random_batches(args, device, seed=1)

    def step() -> None:
        with torch.autocast(device_type=device, dtype=dtype, enabled=dtype is not None):
            loss = model(**next(batches)).loss
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    return step_rates(args, step, (lambda: None) if args.cpu else torch.cuda.synchronize)


def zero3_loop(args: argparse.Namespace) -> list[float]:
    """The baseline: a hand-written DeepSpeed loop with the suite's own DeepSpeed config."""
    import deepspeed
    import torch
    from transformers import AutoModelForCausalLM

    from train import runtime

    cfg = run_config(args, args.workdir)
    runtime.init_distributed(cfg)  # the same process group (gloo / NCCL) and environment as the suite
    targs = runtime.training_arguments(cfg)  # the DeepSpeed config, and zero.Init for the model built next
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(llama_config(args), attn_implementation="sdpa")
    model.config.use_cache = False
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ds = targs.hf_deepspeed_config
    ds.trainer_config_finalize(targs, model, cfg.max_steps)  # the "auto" sizes from the model, as the Trainer does
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=ds.config)
    engine.train()
    batches = random_batches(args, "cpu" if args.cpu else f"cuda:{torch.cuda.current_device()}",
                             seed=1 + runtime.rank())

    def step() -> None:
        loss = engine(**next(batches)).loss
        engine.backward(loss)
        engine.step()

    rates = step_rates(args, step, (lambda: None) if args.cpu else torch.cuda.synchronize)
    runtime.leave_distributed()
    return rates


def random_corpus(folder: Path, args: argparse.Namespace, samples: int) -> Path:
    import numpy as np

    from corpus.indexed import IndexedWriter, dtype_for_vocab

    rng = np.random.default_rng(1)
    prefix = folder / "random"
    with IndexedWriter(prefix, dtype_for_vocab(args.vocab_size)) as w:
        for _ in range(samples):
            w.add_document(rng.integers(3, args.vocab_size, args.seq_length), [args.seq_length])
    return prefix


def suite_run(args: argparse.Namespace) -> list[float]:
    """train.pretrain.main; its own tokens/s/GPU of every step, from metrics.jsonl (rank 0)."""
    from train.metrics import read_metrics
    from train.pretrain import main

    cfg = run_config(args, str(Path(args.workdir) / "run"), data=args.data)
    main(cfg)
    records = read_metrics(Path(cfg.output_dir) / "metrics.jsonl")
    rates = [r["tokens_per_s_per_gpu"] for r in records if "tokens_per_s_per_gpu" in r]
    return rates[args.warmup - 1:]  # the first step has no rate: rates[k] is step k + 2


def worker(args: argparse.Namespace) -> int:
    if args.cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    rates = {"plain": plain_loop, "zero3": zero3_loop, "suite": suite_run}[args.worker](args)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(args.out).write_text(json.dumps({"side": args.worker, "rates": rates}), encoding="utf-8")
    return 0


def launch(side: str, args: argparse.Namespace, data: Path, tmp: Path, round_: int) -> list[float]:
    """``args.nproc`` ranks of one side (a fresh process each: no state carried between sides)."""
    import socket

    nproc = 1 if side == "plain" else args.nproc
    workdir = tmp / f"{side}-{round_}"
    workdir.mkdir()
    out = workdir / "result.json"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    cmd = [sys.executable, __file__, "--worker", side, "--out", str(out), "--data", str(data), "--workdir", str(workdir),
           "--tokenizer", args.tokenizer, "--preset", args.preset, "--seq-length", str(args.seq_length),
           "--micro-batch", str(args.micro_batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--precision", args.precision, *(["--cpu"] if args.cpu else []),
           *(["--gradient-checkpointing"] if args.gradient_checkpointing else [])]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TOKENIZERS_PARALLELISM="false", MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
               WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc))
    if args.cpu:
        env["OMP_NUM_THREADS"] = str(args.threads)
    procs = []
    try:
        for r in range(nproc):
            log = (workdir / f"rank-{r}.log").open("wb")
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                          env=dict(env, RANK=str(r), LOCAL_RANK=str(r))))
        codes = [p.wait() for p in procs]
    finally:  # interrupted: no rank left running
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(codes) or not out.is_file():
        log = (workdir / "rank-0.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{side} failed (exit codes {codes}):\n{log}")
    return json.loads(out.read_text())["rates"]


def main(argv=None) -> int:
    args = parse_args(argv)
    args = setup(args)
    if args.worker:
        return worker(args)
    from train.runtime import PEAK_TFLOPS, flops_per_token

    sides = [s for s in SIDES if args.only is None or s in args.only]
    if args.nproc > 1 and "plain" in sides:
        sides.remove("plain")  # a plain loop of several processes would be DDP: another comparison
    fpt = flops_per_token(llama_config(args), args.seq_length)
    peak = args.peak_tflops or next((tf for key, tf in PEAK_TFLOPS if key in args.device_name), None)
    print(f"device: {args.device_name}; model: {args.preset} LLaMA ({fpt / 6 / 1e6:.0f}M matmul params), "
          f"seq {args.seq_length}, micro batch {args.micro_batch}, {args.precision}, {args.nproc} process(es)"
          + (f" × {args.threads} thread(s)" if args.cpu else "") + ", "
          f"{args.steps} timed steps after {args.warmup} warm-up, {args.rounds} round(s)", flush=True)

    per_round: dict[str, list[float]] = {s: [] for s in sides}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        data = random_corpus(tmp, args, samples=args.micro_batch * args.nproc * (args.warmup + args.steps + 1))
        for round_ in range(args.rounds):
            order = sides if round_ % 2 == 0 else sides[::-1]
            for side in order:
                t0 = time.perf_counter()
                rates = launch(side, args, data, tmp, round_)
                per_round[side].append(statistics.median(rates))
                print(f"  round {round_ + 1} {side:<6} median {per_round[side][-1]:>10,.1f} tokens/s/device "
                      f"(steps: {', '.join(f'{r:,.0f}' for r in rates)}; {time.perf_counter() - t0:.0f} s)", flush=True)

    def figure(side: str) -> str:
        rate = statistics.median(per_round[side])
        mfu = f", MFU {rate * fpt / (peak * 1e12):.1%}" if peak else ""
        return f"  {LABELS[side]:<36} {rate:>12,.1f} tokens/s/device{mfu}"

    results = {"device": args.device_name, "preset": args.preset, "matmul_params": fpt / 6, "seq_length": args.seq_length,
               "micro_batch": args.micro_batch, "precision": args.precision, "nproc": args.nproc,
               "threads": args.threads if args.cpu else None,
               "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
               "tokens_per_s_per_device": {s: statistics.median(v) for s, v in per_round.items()},
               "per_round": per_round}
    print("medians over rounds:")
    for side in sides:
        print(figure(side))
    for base in ("zero3", "plain"):
        if "suite" in per_round and base in per_round:
            ratios = [s / b for s, b in zip(per_round["suite"], per_round[base])]
            results[f"ratio_suite_{base}"] = statistics.median(ratios)
            print(f"  ratio suite / {base}: {statistics.median(ratios):.2f} "
                  f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})")
    if "zero3" in per_round and "plain" in per_round:
        ratios = [z / p for z, p in zip(per_round["zero3"], per_round["plain"])]
        results["ratio_zero3_plain"] = statistics.median(ratios)
        print(f"  ratio zero3 loop / plain (what ZeRO-3 itself costs here): {statistics.median(ratios):.2f}")
    if peak:
        results["mfu"] = {s: v * fpt / (peak * 1e12) for s, v in results["tokens_per_s_per_device"].items()}
    else:
        print("  (no MFU: the device's peak is unknown; pass --peak-tflops)")
    path = Path(args.json) if args.json else CACHE / (
        f"results-train-{args.preset}-{'cpu' if args.cpu else 'gpu'}-np{args.nproc}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
