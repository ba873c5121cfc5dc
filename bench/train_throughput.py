"""Training throughput and MFU: HF Trainer + DeepSpeed ZeRO-3 (the suite's pretraining) against a plain
PyTorch loop of the same LLaMA on the same device, in one run.

    python bench/train_throughput.py                          # GPU if there is one: a ~1B LLaMA, bf16, SDPA
    python bench/train_throughput.py --preset tiny --cpu      # the CPU sanity run (what this repo's CI machine can do)
    python bench/train_throughput.py --preset 1b --seq-length 2048 --micro-batch 4 --steps 30

Both sides train the same model config on the same random tokens (fixed length, no padding) with the
same micro batch, AdamW and precision; the suite side goes through train.pretrain.main (ZeRO-3 over
one process, checkpoints off except the last, logging every step) and reads its own tokens/s/GPU
log lines; the baseline is a hand-written loop (autocast, fused AdamW on GPU). Figures are medians
over the steps after warm-up. MFU uses the PaLM accounting of train.runtime.flops_per_token and the
device's dense bf16/fp16 peak (train.runtime.PEAK_TFLOPS, or --peak-tflops). Target on a GPU: ≥ 40 %
MFU for the ~1B preset (CaMA's run reached 14.7 %). Ratio = suite / plain (1.0: no overhead).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PRESETS = {
    # ~1.1B parameters: LLaMA proportions (TinyLlama-1.1B's shape, vocabulary 32000).
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4),
    "350m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=16),
    "small": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=8),
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=8),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="model shape (default: 1b on GPU, tiny on CPU)")
    p.add_argument("--tokenizer", default=None,
                   help="a LLaMA tokenizer.model (its size is the model's vocabulary; LLaMA's: 32000). "
                        "Default: one trained here on the bundled samples, 3000 pieces")
    p.add_argument("--seq-length", type=int, default=None, help="default 2048 on GPU, 256 on CPU")
    p.add_argument("--micro-batch", type=int, default=None, help="default 8 on GPU, 4 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on GPU, 8 on CPU)")
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the medians")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is visible")
    p.add_argument("--precision", choices=["bf16", "fp16", "fp32"], default=None)
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak, where the GPU is not in the table")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--only", choices=["plain", "suite"], default=None)
    return p.parse_args(argv)


def setup(args: argparse.Namespace) -> argparse.Namespace:
    import torch

    gpu = torch.cuda.is_available() and not args.cpu
    args.cpu = not gpu
    args.preset = args.preset or ("1b" if gpu else "tiny")
    args.seq_length = args.seq_length or (2048 if gpu else 256)
    args.micro_batch = args.micro_batch or (8 if gpu else 4)
    args.steps = args.steps or (20 if gpu else 8)
    if args.precision is None:
        args.precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if gpu else "fp32"
    args.device_name = torch.cuda.get_device_name() if gpu else f"CPU ({os.cpu_count()} cores)"
    if args.tokenizer is None:
        from corpus.tokenizer import train_tokenizer

        samples = Path(__file__).resolve().parent.parent / "examples" / "data" / "corpus"
        texts = [json.loads(line)["text"] for f in sorted(samples.glob("*.jsonl"))
                 for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        args.tokenizer = str(train_tokenizer(texts, Path(tempfile.mkdtemp(prefix="bench-tok-")) / "tokenizer.model",
                                             vocab_size=3000))
    import sentencepiece as spm

    args.vocab_size = spm.SentencePieceProcessor(model_file=args.tokenizer).get_piece_size()
    return args


def llama_config(args: argparse.Namespace):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=args.vocab_size, max_position_embeddings=args.seq_length, **PRESETS[args.preset])


def plain_loop(args: argparse.Namespace) -> list[float]:
    """Seconds per optimizer step of a hand-written loop (the baseline)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cpu" if args.cpu else "cuda"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(llama_config(args), attn_implementation="sdpa").to(device)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=not args.cpu)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(enabled=args.precision == "fp16")
    g = torch.Generator().manual_seed(1)
    times = []
    for _ in range(args.warmup + args.steps):
        x = torch.randint(3, args.vocab_size, (args.micro_batch, args.seq_length), generator=g).to(device)
        if not args.cpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device_type="cpu" if args.cpu else "cuda", dtype=dtype, enabled=dtype is not None):
            loss = model(input_ids=x, labels=x).loss
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if not args.cpu:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    del model, opt
    if not args.cpu:
        torch.cuda.empty_cache()
    return times[args.warmup:]


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
    """Tokens/s per GPU of train.pretrain (HF Trainer + ZeRO-3), one log line per step."""
    from train.pretrain import PretrainConfig, main

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        steps = args.warmup + args.steps
        data = random_corpus(tmp, args, samples=args.micro_batch * (steps + 1))
        cfg = PretrainConfig(
            data=str(data), tokenizer=args.tokenizer, output_dir=str(tmp / "run"),
            model_config={k: v for k, v in llama_config(args).to_dict().items()
                          if k in PRESETS[args.preset] or k in ("max_position_embeddings",)},
            seq_length=args.seq_length, micro_batch_size=args.micro_batch, gradient_accumulation_steps=1,
            max_steps=steps, warmup_steps=1, save_steps=steps, logging_steps=1, report_to=[],
            cpu=args.cpu, precision=args.precision, gradient_checkpointing=args.gradient_checkpointing,
            dataloader_workers=0 if args.cpu else 2, validate_data=False, peak_tflops=args.peak_tflops)
        main(cfg)
        state = json.loads((tmp / "run" / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    rates = [r["tokens_per_s_per_gpu"] for r in state["log_history"] if "tokens_per_s_per_gpu" in r]
    return rates[max(args.warmup - 1, 0):]


def main(argv=None) -> int:
    args = setup(parse_args(argv))
    from train.runtime import PEAK_TFLOPS, flops_per_token

    config = llama_config(args)
    fpt = flops_per_token(config, args.seq_length)
    peak = args.peak_tflops or next((tf for key, tf in PEAK_TFLOPS if key in args.device_name), None)
    tokens_per_step = args.micro_batch * args.seq_length
    print(f"device: {args.device_name}; model: {args.preset} LLaMA ({fpt / 6 / 1e6:.0f}M matmul params), "
          f"seq {args.seq_length}, micro batch {args.micro_batch}, {args.precision}, "
          f"{args.steps} timed steps after {args.warmup} warm-up")

    def report(name: str, rate: float) -> None:
        mfu = f", MFU {rate * fpt / (peak * 1e12):.1%}" if peak else ""
        print(f"  {name:<34} {rate:>12,.0f} tokens/s/device{mfu}")

    plain = suite = None
    if args.only in (None, "plain"):
        times = plain_loop(args)
        plain = tokens_per_step / statistics.median(times)
        report("plain PyTorch loop (median)", plain)
    if args.only in (None, "suite"):
        rates = suite_run(args)
        suite = statistics.median(rates)
        report("HF Trainer + ZeRO-3 (median)", suite)
    if plain and suite:
        print(f"  ratio suite / plain: {suite / plain:.2f}")
    if not peak:
        print("  (no MFU: the device's peak is unknown; pass --peak-tflops)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
