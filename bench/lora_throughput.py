"""LoRA instruction-tuning throughput: alpaca-lora's way (plain peft + HF Trainer, each micro batch padded
to its longest example) against the suite's (packing + length grouping), on the same data, in one run.

    PYTHONPATH=. python bench/lora_throughput.py --threads 1      # CPU: tiny LLaMA, 1 warm-up + 3 runs a side
    PYTHONPATH=. python bench/lora_throughput.py --ablations      # also grouping alone and packing alone
    options: --preset tiny|tiny-h256|small|1b --copies N --repeat R --warmup W --cutoff-len 512
             --micro-batch 4 --pad-multiple 8 --threads T --tokenizer LLaMA/tokenizer.model --no-ie --no-chat --cpu

Both sides tune the same LoRA adapters (CaMA's: r 16, alpha 32, dropout 0.05 on the 7 projections) on
the same LLaMA (random weights from a LlamaConfig, saved once and loaded by both) over the same
examples — the bundled instruction mix (examples/data/instructions/*.jsonl) plus the IE records
``python -m train.ie`` builds from examples/data/ie and the multi-turn conversations of
examples/data/chat, ``--copies`` times, tokenized once at CaMA's cutoff
of 512 with the prompt masked — for exactly one epoch, every example trained once (no example dropped
at an epoch's end on either side), with the same micro batch budget: ``--micro-batch`` sequences of
at most cutoff_len tokens each. Baseline: ``transformers.Trainer`` with its random sampler and
``DataCollatorForSeq2Seq`` (alpaca-lora's collator). Ours: ``train.instruct.instruction_data`` with
``packing`` and ``group_by_length`` (what ``train.lora`` builds) and ``train.runtime.SuiteTrainer``.
Both pad to a multiple of ``--pad-multiple`` (alpaca-lora's 8). Tokens/s counts real (non-pad)
tokens trained, from the batches each side actually collated, over the wall time of the training
loop (the Trainer's on_train_begin to on_train_end) and over this process's CPU time (steadier on a
shared machine); the figures are medians of ``--repeat`` runs with the sides interleaved, after
``--warmup`` untimed ones. It also prints the padding bound: the ratio of tokens computed (padding
included) baseline / ours, which is what packing would gain if every token cost the same on both sides.
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
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "bench" / ".cache"

PRESETS = {
    # LLaMA's head size (128) and a width the attention at 512 tokens does not dwarf, as in the real models.
    "tiny": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4),
    # bench/train_throughput.py's tiny: head size 32, so attention is a larger share than in any LLaMA.
    "tiny-h256": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                      num_key_value_heads=8),
    "small": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                  num_key_value_heads=8),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4),
}
IE_INPUTS = [("ner", "ner_zh.bio", "zh"), ("ner", "ner_en.bio", "en"), ("re", "re_zh.jsonl", "zh"),
             ("re", "re_en.jsonl", "en"), ("ee", "ee_zh.jsonl", "zh"), ("ee", "ee_en.jsonl", "en")]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="model shape (default: tiny on CPU, 1b on GPU)")
    p.add_argument("--tokenizer", default=None, help="a LLaMA tokenizer.model (default: a 3000-piece one trained "
                                                     "here on the bundled samples, cached in bench/.cache)")
    p.add_argument("--copies", type=int, default=2, help="times the example set is repeated (default 2)")
    p.add_argument("--no-ie", action="store_true", help="the instruction mix only, without the IE records")
    p.add_argument("--no-chat", action="store_true", help="without the multi-turn conversations of examples/data/chat")
    p.add_argument("--cutoff-len", type=int, default=512)
    p.add_argument("--micro-batch", type=int, default=4, help="sequences per micro batch, both sides (alpaca-lora: 4)")
    p.add_argument("--pad-multiple", type=int, default=8, help="pad to a multiple of this, both sides (alpaca-lora: 8)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each side first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is visible")
    p.add_argument("--ablations", action="store_true", help="also: length grouping alone, packing alone")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------
# Inputs


def bench_tokenizer(args) -> str:
    if args.tokenizer:
        return args.tokenizer
    path = CACHE / "lora-tokenizer-v3000.model"
    if not path.exists():
        from corpus.tokenizer import train_tokenizer

        texts = [json.loads(line)["text"] for f in sorted((ROOT / "examples/data/corpus").glob("*.jsonl"))
                 for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        CACHE.mkdir(parents=True, exist_ok=True)
        train_tokenizer(texts, path, vocab_size=3000)
    return str(path)


def records_file(args) -> tuple[Path, dict[str, int]]:
    """The example mix as one JSON-lines file, ``--copies`` times; and how many records of each part."""
    from common.jsonl import iter_jsonl
    from train.ie import build

    parts: dict[str, list[dict]] = {}
    for f in sorted((ROOT / "examples/data/instructions").glob("*.jsonl")):
        parts[f"instructions/{f.name}"] = [obj for _, obj in iter_jsonl(f)]
    if not args.no_ie:
        for task, name, lang in IE_INPUTS:
            records, _, _ = build(task, ROOT / "examples/data/ie" / name, lang)  # what `python -m train.ie` writes
            parts[f"ie/{name}"] = records
    if not args.no_chat:
        for f in sorted((ROOT / "examples/data/chat").glob("*.jsonl")):
            parts[f"chat/{f.name}"] = [obj for _, obj in iter_jsonl(f)]
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"lora-mix{'-noie' if args.no_ie else ''}{'-nochat' if args.no_chat else ''}-x{args.copies}.jsonl"
    lines = [json.dumps(r, ensure_ascii=False) for _ in range(args.copies) for rs in parts.values() for r in rs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, {k: len(v) for k, v in parts.items()}


def save_base(args, tokenizer, folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from train.tokenizer import save_tokenizer

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=max(args.cutoff_len, 512),
                         **PRESETS[args.preset])
    LlamaForCausalLM(config).save_pretrained(folder)
    save_tokenizer(tokenizer, folder)
    return folder


# --------------------------------------------------------------------------------------------
# One timed epoch


class Counted:
    """A dataset whose reads are counted (examples), for the epoch actually trained: with
    dataloader_num_workers 0 every item read is collated into a batch that is trained on."""

    def __init__(self, dataset, examples_per_item):
        self.dataset, self.examples_per_item, self.examples = dataset, examples_per_item, 0
        self.lengths = getattr(dataset, "lengths", None)

    def reset(self):
        self.examples = 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.examples += self.examples_per_item(i)
        return self.dataset[i]


class CountingCollator:
    """Wraps a collator: real (attention-mask) tokens and padded tokens of every batch it makes."""

    def __init__(self, collator):
        self.collator = collator
        self.reset()
        for name in ("packed", "model_inputs"):
            if hasattr(collator, name):
                setattr(self, name, getattr(collator, name))

    def reset(self):
        self.real = self.padded = self.batches = 0

    def __call__(self, features):
        batch = self.collator(features)
        self.real += int(batch["attention_mask"].sum())
        self.padded += int(batch["input_ids"].numel())
        self.batches += 1
        return batch


def lora_model(args, base: Path):
    import peft
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from train.lora import CAMA_TARGETS

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32, attn_implementation="sdpa")
    model.config.use_cache = False
    transformers.set_seed(0)
    lora = peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=list(CAMA_TARGETS), bias="none",
                           task_type="CAUSAL_LM")
    return peft.get_peft_model(model, lora)


def training_args(args, out: Path, group_by_length: bool = False):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.micro_batch, gradient_accumulation_steps=1,
        learning_rate=3e-4, warmup_steps=2, num_train_epochs=1, lr_scheduler_type="linear",
        bf16=args.precision == "bf16", use_cpu=args.cpu, save_strategy="no", logging_strategy="no",
        report_to="none", seed=0, data_seed=0, dataloader_num_workers=0, dataloader_drop_last=False,
        remove_unused_columns=False, disable_tqdm=True,
        train_sampling_strategy="group_by_length" if group_by_length else "random",
        include_num_input_tokens_seen="no")


class Clock:
    """on_train_begin → on_train_end: the training loop, without model loading or Trainer setup."""

    def __init__(self, *counters):
        from transformers import TrainerCallback

        clock = self

        class _Cb(TrainerCallback):
            def on_train_begin(self, *a, **k):
                for c in counters:  # HF's LengthGroupedSampler reads every example once to learn its length
                    c.reset()
                clock._sync()
                clock.start, clock.cpu_start = time.perf_counter(), time.process_time()

            def on_train_end(self, *a, **k):
                clock._sync()
                clock.seconds = time.perf_counter() - clock.start
                clock.cpu_seconds = time.process_time() - clock.cpu_start

        self.callback = _Cb()
        self.start = self.seconds = self.cpu_start = self.cpu_seconds = 0.0

    @staticmethod
    def _sync():
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def run_baseline(args, base: Path, data_path: Path, tokenizer, group: bool = False) -> dict:
    """alpaca-lora: plain Trainer (random sampler; HF's length grouping with ``group``), padded batches."""
    from transformers import DataCollatorForSeq2Seq, Trainer

    from train.prompts import InstructionDataset, load_template

    examples = InstructionDataset(data_path, tokenizer, load_template("alpaca"), args.cutoff_len)
    dataset = Counted(examples, lambda i: 1)
    collator = CountingCollator(DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=args.pad_multiple,
                                                       return_tensors="pt", padding=True))
    clock = Clock(dataset, collator)
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        trainer = Trainer(model=lora_model(args, base), args=training_args(args, Path(tmp), group),
                          train_dataset=dataset, data_collator=collator, callbacks=[clock.callback])
        trainer.train()
    return dict(seconds=clock.seconds, cpu_seconds=clock.cpu_seconds, real=collator.real, padded=collator.padded, batches=collator.batches,
                examples=dataset.examples)


def run_ours(args, base: Path, data_path: Path, tokenizer, group: bool = True) -> dict:
    """train.lora's data (packing, length grouping) through SuiteTrainer."""
    from train import runtime
    from train.instruct import InstructionConfig, instruction_data

    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        targs = training_args(args, Path(tmp))
        cfg = InstructionConfig(base=str(base), data=str(data_path), output_dir=tmp, cutoff_len=args.cutoff_len,
                                packing=True, group_by_length=group, micro_batch_size=args.micro_batch, seed=0,
                                cpu=args.cpu)
        data = instruction_data(cfg, tokenizer, SimpleNamespace(
            process_index=1, per_device_train_batch_size=args.micro_batch, gradient_accumulation_steps=1,
            world_size=1), "bench")
        from train.packing import PackingCollator

        packed = data.train_set
        dataset = Counted(packed, lambda i: len(packed.packs[i]))
        collator = CountingCollator(PackingCollator(tokenizer.pad_token_id, pad_to_multiple_of=args.pad_multiple))
        clock = Clock(dataset, collator)
        trainer = runtime.SuiteTrainer(model=lora_model(args, base), args=targs, train_dataset=dataset,
                                       data_collator=collator, callbacks=[clock.callback], sampler=data.sampler,
                                       flops_per_token=1.0, peak_tflops=None)
        trainer.train()
    return dict(seconds=clock.seconds, cpu_seconds=clock.cpu_seconds, real=collator.real, padded=collator.padded, batches=collator.batches,
                examples=dataset.examples, sequences=len(packed))


# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.is_available() and not args.cpu
    args.cpu = not gpu
    args.preset = args.preset or ("1b" if gpu else "tiny")
    args.precision = "bf16" if gpu and torch.cuda.is_bf16_supported() else "fp32"
    device = torch.cuda.get_device_name() if gpu else f"CPU ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"

    from train.config import quiet_known_warnings
    from train.prompts import InstructionDataset, load_template
    from train.tokenizer import load_tokenizer

    quiet_known_warnings(args.cpu)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    tokenizer = load_tokenizer(bench_tokenizer(args))
    data_path, parts = records_file(args)
    examples = InstructionDataset(data_path, tokenizer, load_template("alpaca"), args.cutoff_len)
    lengths = examples.lengths
    print(f"device: {device}; model: {args.preset} LLaMA, vocab {len(tokenizer)}, {args.precision}; LoRA r 16 on "
          f"7 projections; cutoff {args.cutoff_len}, micro batch {args.micro_batch} sequences, pad to × "
          f"{args.pad_multiple}; one epoch per run, medians of {args.repeat}")
    print(f"data: {len(examples)} examples ({args.copies} × {', '.join(f'{k} {v}' for k, v in parts.items())}); "
          f"tokens per example min {lengths.min()}, median {int(statistics.median(lengths.tolist()))}, "
          f"max {lengths.max()}, total {lengths.sum():,}")

    sides = {"alpaca-lora (plain peft + Trainer, padded)": lambda b: run_baseline(args, b, data_path, tokenizer),
             "ours (packing + length grouping)": lambda b: run_ours(args, b, data_path, tokenizer)}
    if args.ablations:
        sides["alpaca-lora + HF length grouping"] = lambda b: run_baseline(args, b, data_path, tokenizer, group=True)
        sides["ours, packing without grouping"] = lambda b: run_ours(args, b, data_path, tokenizer, group=False)
    results: dict[str, list[dict]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="bench-lora-base-") as tmp:
        base = save_base(args, tokenizer, Path(tmp) / "base")
        for r in range(-args.warmup, args.repeat):
            for name, run in sides.items():
                out = run(base)
                out["tokens_per_s"] = out["real"] / out["seconds"]
                out["tokens_per_cpu_s"] = out["real"] / out["cpu_seconds"]
                label = f"warm-up {r + args.warmup + 1}" if r < 0 else f"run {r + 1}"
                print(f"  {label:<10} {name:<44} {out['tokens_per_s']:>9,.0f} tokens/s, "
                      f"{out['tokens_per_cpu_s']:>9,.0f} per CPU-s  ({out['seconds']:.2f} s, "
                      f"{out['batches']} micro batches)", flush=True)
                if r >= 0:
                    results[name].append(out)

    def median(name: str, key: str) -> float:
        return statistics.median(o[key] for o in results[name])

    base_name, ours_name = list(sides)[:2]
    print(f"\nmedians of {args.repeat} (real tokens trained per second of wall time, and per CPU-second of this "
          f"process — the steadier figure on a shared machine):")
    for name, outs in results.items():
        first = outs[0]
        assert all(o["real"] == first["real"] and o["examples"] == first["examples"] for o in outs)
        assert first["examples"] == len(examples) and first["real"] == int(lengths.sum()), (name, first)
        extra = f", {first['sequences']} packed sequences" if "sequences" in first else ""
        print(f"  {name:<44} {median(name, 'tokens_per_s'):>9,.0f} tokens/s ×{median(name, 'tokens_per_s') / median(base_name, 'tokens_per_s'):.2f}"
              f"  {median(name, 'tokens_per_cpu_s'):>9,.0f} per CPU-s ×{median(name, 'tokens_per_cpu_s') / median(base_name, 'tokens_per_cpu_s'):.2f}"
              f"   ({first['examples']} examples, {first['real']:,} real tokens in {first['batches']} micro batches "
              f"of {first['padded']:,} tokens: {first['real'] / first['padded']:.0%} real{extra})")
    ratio = median(ours_name, "tokens_per_s") / median(base_name, "tokens_per_s")
    cpu_ratio = median(ours_name, "tokens_per_cpu_s") / median(base_name, "tokens_per_cpu_s")
    bound = results[base_name][0]["padded"] / results[ours_name][0]["padded"]
    print(f"  ratio ours / alpaca-lora: {ratio:.2f} (wall), {cpu_ratio:.2f} (CPU time); target ≥ 1.5; "
          f"padding bound {bound:.2f} (tokens computed, baseline / ours)")
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / f"results-lora-{args.preset}.json").write_text(json.dumps(
        {"device": device, "args": vars(args), "results": results, "ratio": ratio, "cpu_ratio": cpu_ratio,
         "padding_bound": bound},
        indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
