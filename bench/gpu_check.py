"""The suite's figures on one GPU, in one run of a few minutes: ``bench/gpu_check.sh`` (which calls this).

    bench/gpu_check.sh                      # one GPU: ~1B LLaMA, bf16, DeepSpeed ZeRO-3 over NCCL (< 8 min on an H100/H200)
    bench/gpu_check.sh --cpu                # the smoke run: tiny sizes, CPU, gloo, no 8-bit step (~2 min on 2 cores)
    options: --out RESULTS.json (default bench/.cache/gpu-check.json)  --workdir DIR  --keep  --nproc N

Nothing is downloaded (the GPU machine has no network): the tokenizer is trained here on the bundled
samples (3000 pieces, so the ~1B preset has 1.0B parameters with its small vocabulary), pretraining reads
random tokens written as a .bin/.idx pair, and instruction tuning reads records made from the bundled
corpus samples. Every step is the suite's own entry point, started the way a job starts it
(``torchrun --standalone --nproc_per_node N -m …``: RANK, LOCAL_RANK, WORLD_SIZE… for
``train.runtime.init_distributed``, which joins NCCL on GPUs and gloo with ``cpu: true``):

1. ``train.pretrain`` — a LLaMA of bench/train_throughput.py's "1b" preset from scratch, seq 2048,
   micro batch 8, no gradient checkpointing, bf16, ZeRO-3: tokens/s/GPU and MFU (medians of the
   steps after warm-up, from ``metrics.jsonl``); its export is the base of every later step.
2. ``train.lora`` — LoRA (r 16, CaMA's target modules) on that base, ZeRO-3, bf16: tokens/s/GPU, MFU;
   the run checks its own adapter (``verify_adapter``) before it returns.
3. ``train.sft`` — full-parameter instruction tuning of the same base with the same data: tokens/s/GPU, MFU.
4. ``train.generate --cases`` in bf16, then with ``--load-8bit`` (bitsandbytes; skipped, saying why,
   on the CPU or where it is not installed): new tokens/s, greedy, batches after the first one.
5. ``train.lora.verify_adapter`` again here: the base + saved adapter against the trained logits, at
   the half-precision tolerance the run uses (2e-2 relative; 1e-4 in fp32): max |Δ|.

It prints every figure at the end and writes them to the results file as JSON (a failed step is
recorded with its error and the log's tail, and the exit status is 1). Large checkpoints (a 1B model's
ZeRO-3 optimizer state is 16 GB) are deleted as soon as their step is done; ``--keep`` keeps them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from train_throughput import PRESETS  # noqa: E402  (bench/, next to this file)

SIZES: dict[str, dict[str, Any]] = {
    "gpu": dict(model=PRESETS["1b"], seq_length=2048, micro_batch=8, steps=30, warmup=5,
                cutoff_len=512, tune_micro_batch=8, tune_steps=20, tune_warmup=3, records=512,
                cases=24, gen_batch=8, new_tokens=128, precision="bf16", peak_tflops=None, timeout=330),
    # A few seconds a step on a loaded 2-core machine; the peak is nominal, so the MFU figure exists.
    "cpu": dict(model=dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2),
                seq_length=128, micro_batch=2, steps=6, warmup=2, cutoff_len=128, tune_micro_batch=2,
                tune_steps=4, tune_warmup=1, records=48, cases=4, gen_batch=2, new_tokens=32,
                precision="fp32", peak_tflops=1.0, timeout=300),
}
# Everything within the budget: a step gets what is left of it (a hung step cannot eat the next ones' time).
BUDGET_S = {"gpu": 7.5 * 60, "cpu": 10 * 60}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="the smoke run: tiny sizes on the CPU (gloo), no 8-bit step")
    p.add_argument("--out", default=str(BENCH / ".cache" / "gpu-check.json"), help="results file (JSON)")
    p.add_argument("--workdir", default=None, help="where the runs write (default: a temporary folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the work folder and every checkpoint")
    p.add_argument("--nproc", type=int, default=1, help="processes (GPUs) per training step (default 1)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Inputs


def make_tokenizer(work: Path) -> Path:
    from corpus.tokenizer import train_tokenizer

    texts = [json.loads(line)["text"] for f in sorted((ROOT / "examples" / "data" / "corpus").glob("*.jsonl"))
             for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return train_tokenizer(texts, work / "tokenizer" / "tokenizer.model", vocab_size=3000)


def vocab_size(tokenizer: Path) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(tokenizer)).get_piece_size()


def random_tokens(work: Path, vocab: int, seq_length: int, samples: int) -> Path:
    """Full-length samples of random ids as a .bin/.idx pair (what ``python -m corpus`` writes)."""
    import numpy as np

    from corpus.indexed import IndexedWriter, dtype_for_vocab

    rng = np.random.default_rng(0)
    prefix = work / "data" / "random"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with IndexedWriter(prefix, dtype_for_vocab(vocab)) as w:
        for _ in range(samples):
            w.add_document(rng.integers(3, vocab, seq_length), [seq_length])
    return prefix


def instruction_records(work: Path, count: int) -> Path:
    """Alpaca-style records long enough to fill ``cutoff_len``: the bundled instructions, then records
    made from the bundled corpus documents (continue the text), repeated up to ``count``."""
    rows = [json.loads(line) for f in sorted((ROOT / "examples" / "data" / "instructions").glob("*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = [json.loads(line)["text"] for f in sorted((ROOT / "examples" / "data" / "corpus").glob("*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows += [{"instruction": "Continue the text.", "input": d[:200], "output": d[200:3000]} for d in docs if len(d) > 400]
    path = work / "data" / "instructions.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            f.write(json.dumps(rows[i % len(rows)], ensure_ascii=False) + "\n")
    return path


def generation_cases(work: Path, count: int) -> Path:
    prompts = ["The history of the Yangtze River", "def binary_search(items, target):", "长江是中国最长的河流，",
               "In the morning the library", "人工智能的发展", "import numpy as np\n"]
    path = work / "data" / "cases.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(count):
            f.write(json.dumps({"id": f"c{i}", "prompt": prompts[i % len(prompts)]}, ensure_ascii=False) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Running the entry points


class StepFailed(RuntimeError):
    pass


def child_env(cpu: bool, nproc: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    if cpu:
        env["OMP_NUM_THREADS"] = str(max((os.cpu_count() or 1) // nproc, 1))
    return env


DEADLINE = [float("inf")]  # time.perf_counter() by which every step must be over


def run(name: str, cmd: list[str], logs: Path, env: dict[str, str], timeout: float) -> str:
    """Run one step, its output to logs/NAME.log; returns the output, raises StepFailed with its tail."""
    log = logs / f"{name}.log"
    started = time.perf_counter()
    timeout = min(timeout, DEADLINE[0] - started)
    if timeout < 20:
        raise StepFailed(f"{name}: not started, the check's time budget is spent")
    print(f"[gpu_check] {name}: {' '.join(cmd)}", flush=True)
    with log.open("w", encoding="utf-8") as f:
        # A session of its own: on a timeout the whole group goes (torchrun's workers too), or they would
        # keep the GPU's memory through the steps after it.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    text = log.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        why = f"timed out after {timeout:.0f} s" if code is None else f"exit status {code}"
        raise StepFailed(f"{name}: {why}; the end of {log}:\n{text[-2500:]}")
    print(f"[gpu_check] {name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return text


def launcher(nproc: int, module: str, config: Path) -> list[str]:
    """What a job runs: torchrun gives each rank the torch.distributed env (a lone GPU too)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, "--config", str(config)]


def write_config(path: Path, values: dict[str, Any]) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


def training_figures(output_dir: Path, warmup: int) -> dict[str, Any]:
    """Medians of tokens/s/GPU and MFU over the logged steps after ``warmup`` (train.metrics' file)."""
    from train.metrics import read_metrics

    records = [r for r in read_metrics(output_dir / "metrics.jsonl") if r["step"] > warmup]
    rates = [r["tokens_per_s_per_gpu"] for r in records if "tokens_per_s_per_gpu" in r]
    mfus = [r["mfu"] for r in records if "mfu" in r]
    if not rates:
        raise StepFailed(f"{output_dir / 'metrics.jsonl'}: no tokens/s after step {warmup}")
    out: dict[str, Any] = {"tokens_per_s_per_gpu": statistics.median(rates), "timed_steps": len(rates),
                           "last_loss": records[-1].get("loss")}
    if mfus:
        out["mfu"] = statistics.median(mfus)
    return out


def drop_checkpoints(output_dir: Path, keep: bool) -> None:
    if not keep:
        for ckpt in output_dir.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)


_BATCH_LINE = re.compile(r"case (\d+)/(\d+) done, (\d+) new tokens in ([\d.]+) s")


def generation_figures(log: str) -> dict[str, Any]:
    """New tokens/s from train.generate's per-batch lines, the first batch (CUDA warm-up) left out."""
    batches = [(int(m[3]), float(m[4])) for m in _BATCH_LINE.finditer(log)]
    if not batches:
        raise StepFailed("train.generate printed no 'case N/M done' line")
    timed = batches[1:] or batches
    if sum(s for _, s in timed) <= 0:   # batches faster than the log's resolution (the CPU smoke run)
        timed = batches
    tokens, seconds = sum(t for t, _ in timed), sum(s for _, s in timed)
    if seconds <= 0:
        raise StepFailed(f"generation took no measurable time ({batches})")
    return {"tokens_per_s": tokens / seconds, "new_tokens": tokens, "seconds": seconds, "timed_batches": len(timed)}


# ---------------------------------------------------------------------------------------------
# The check


def main(argv=None) -> int:
    args = parse_args(argv)
    size = SIZES["cpu" if args.cpu else "gpu"]
    started = time.perf_counter()
    DEADLINE[0] = started + BUDGET_S["cpu" if args.cpu else "gpu"]
    if args.cpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    env = child_env(args.cpu, args.nproc)
    results: dict[str, Any] = {"mode": "cpu" if args.cpu else "gpu", "nproc": args.nproc, "work": str(work),
                               "precision": size["precision"]}
    results.update(environment(args.cpu, env))
    if "environment_error" in results:
        print(f"[gpu_check] {results['environment_error'].strip()}", file=sys.stderr)
        return 2
    failed: list[str] = []

    def step(name: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:  # StepFailed, or an OOM / unreadable output: the other steps still run
            print(f"[gpu_check] FAILED {exc}", file=sys.stderr, flush=True)
            results[name] = {"error": str(exc)[:4000]}
            failed.append(name)
            return None
        if isinstance(value, dict):
            value["elapsed_s"] = round(time.perf_counter() - t0, 1)
        results[name] = value
        return value

    tokenizer = make_tokenizer(work)
    vocab = vocab_size(tokenizer)
    results["peak_tflops_assumed"] = size["peak_tflops"]
    steps = size["warmup"] + size["steps"]
    data = random_tokens(work, vocab, size["seq_length"], size["micro_batch"] * args.nproc * (steps + 1))
    records = instruction_records(work, size["records"])
    jobs = job_configs(size, work, tokenizer, data, records, args.nproc, args.cpu)
    configs = {name: write_config(work / "configs" / f"{name}.yaml", values) for name, values in jobs.items()}
    pre_out, lora_out, sft_out = (Path(jobs[name]["output_dir"]) for name in ("pretrain", "lora", "sft"))
    pre_cfg, lora_cfg, sft_cfg = configs["pretrain"], configs["lora"], configs["sft"]

    # 1. pretraining
    def pretrain() -> dict[str, Any]:
        run("pretrain", launcher(args.nproc, "train.pretrain", pre_cfg), logs, env, size["timeout"])
        figures = training_figures(pre_out, size["warmup"])
        drop_checkpoints(pre_out, args.keep)
        figures["params"] = model_params(pre_out / "final")
        return figures

    base = pre_out / "final"
    if step("pretrain", pretrain) is None:
        return finish(results, failed, args, work, started)

    # 2. LoRA and 3. full-parameter tuning, on the same records
    def lora() -> dict[str, Any]:
        log = run("lora", launcher(args.nproc, "train.lora", lora_cfg), logs, env, size["timeout"])
        figures = training_figures(lora_out, size["tune_warmup"])
        found = re.search(r"adapter verified: .*\(max \|Δ\| ([0-9.eE+-]+)\)", log)
        if found:
            figures["adapter_max_abs_diff_in_run"] = float(found[1])
        drop_checkpoints(lora_out, args.keep)
        return figures

    lora_ok = step("lora", lora) is not None

    def sft() -> dict[str, Any]:
        run("sft", launcher(args.nproc, "train.sft", sft_cfg), logs, env, size["timeout"])
        figures = training_figures(sft_out, size["tune_warmup"])
        drop_checkpoints(sft_out, args.keep)
        if not args.keep:
            shutil.rmtree(sft_out / "final", ignore_errors=True)
        return figures

    step("sft", sft)

    # 4. generation, bf16 then 8-bit
    cases = generation_cases(work, size["cases"])
    # bf16 on the CPU too: the smoke run takes the very flags of the GPU run.
    gen = [sys.executable, "-m", "train.generate", "--base", str(base), "--cases", str(cases), "--batch-size",
           str(size["gen_batch"]), "--max-new-tokens", str(size["new_tokens"]), "--num-beams", "1",
           "--device", "cpu" if args.cpu else "cuda", "--dtype", "bf16"]

    def generate(name: str, *extra: str) -> dict[str, Any]:
        log = run(name, [*gen, "--out", str(work / f"{name}.jsonl"), *extra], logs, env, size["timeout"])
        return {**generation_figures(log), "batch_size": size["gen_batch"], "max_new_tokens": size["new_tokens"],
                "decoding": "greedy"}

    step("generate_bf16", lambda: generate("generate_bf16"))
    skip = eight_bit_unavailable(args.cpu)
    if skip:
        print(f"[gpu_check] generate_8bit: SKIPPED: {skip}", flush=True)
        results["generate_8bit"] = {"skipped": skip}
    else:
        step("generate_8bit", lambda: generate("generate_8bit", "--load-8bit"))

    # 5. the adapter against the trained logits, at the run's tolerance
    if lora_ok:
        step("adapter", lambda: adapter_check(base, lora_out / "adapter", size["precision"]))
    else:
        results["adapter"] = {"error": "no adapter: the LoRA step failed"}
        failed.append("adapter")
    return finish(results, failed, args, work, started)


def job_configs(size: dict[str, Any], work: Path, tokenizer: Path | str, data: Path | str, records: Path | str,
                nproc: int, cpu: bool) -> dict[str, dict[str, Any]]:
    """The YAML of each training step (the keys of PretrainConfig, LoraConfig and SftConfig)."""
    common = {"cpu": cpu, "precision": size["precision"], "deepspeed": "zero3", "gradient_checkpointing": False,
              "logging_steps": 1, "report_to": [], "dataloader_workers": 0 if cpu else 2, "seed": 1}
    if size["peak_tflops"]:
        common["peak_tflops"] = size["peak_tflops"]
    steps = size["warmup"] + size["steps"]
    pretrain = {
        "data": str(data), "tokenizer": str(tokenizer), "output_dir": str(work / "pretrain"),
        "model_config": {**size["model"], "max_position_embeddings": size["seq_length"]},
        "seq_length": size["seq_length"], "micro_batch_size": size["micro_batch"], "gradient_accumulation_steps": 1,
        "max_steps": steps, "warmup_steps": 2, "save_steps": steps, "learning_rate": 3e-4, **common}
    tune_steps = size["tune_warmup"] + size["tune_steps"]
    # SFT takes LoRA's fields but the lora_* ones (train.instruct.InstructionConfig); its warm-up is its
    # default warmup_ratio.
    tune = {"base": str(work / "pretrain" / "final"), "data": str(records), "template": "alpaca",
            "cutoff_len": size["cutoff_len"], "micro_batch_size": size["tune_micro_batch"],
            "batch_size": size["tune_micro_batch"] * nproc, "max_steps": tune_steps, "save_steps": tune_steps,
            **common}
    lora = {**tune, "output_dir": str(work / "lora"), "warmup_steps": 2, "lora_r": 16, "lora_alpha": 32,
            "verify_adapter": True}
    sft = {**tune, "output_dir": str(work / "sft")}
    return {"pretrain": pretrain, "lora": lora, "sft": sft}


_ENVIRONMENT = """
import json, os, sys
import torch
info = {"torch": torch.__version__, "python": sys.version.split()[0]}
for name in ("transformers", "deepspeed", "peft", "accelerate", "bitsandbytes"):
    try:
        info[name] = __import__(name).__version__
    except Exception:  # not installed, or it fails to import here (bitsandbytes without CUDA)
        info[name] = None
if sys.argv[1] == "cpu":
    info["device"] = f"CPU ({os.cpu_count()} cores)"
else:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device is visible (use --cpu for the CPU smoke run)")
    p = torch.cuda.get_device_properties(0)
    info.update(device=p.name, cuda=torch.version.cuda, gpu_memory_gib=round(p.total_memory / 2**30, 1))
print(json.dumps(info))
"""


def environment(cpu: bool, env: dict[str, str]) -> dict[str, Any]:
    """Versions and the device, asked in a child: a CUDA context here would hold GPU memory all along."""
    out = subprocess.run([sys.executable, "-c", _ENVIRONMENT, "cpu" if cpu else "gpu"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        return {"environment_error": out.stderr[-2000:] or f"exit status {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def eight_bit_unavailable(cpu: bool) -> str | None:
    if cpu:
        return "--cpu: bitsandbytes' 8-bit kernels need a CUDA GPU"
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed (make install-gpu)"
    return None


def model_params(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                n = 1
                for d in f.get_slice(name).get_shape():
                    n *= d
                total += n
    return total


def adapter_check(base: Path, adapter: Path, precision: str) -> dict[str, Any]:
    from transformers.utils import logging as hf_logging

    from train.config import TrainError
    from train.lora import verify_adapter

    hf_logging.disable_progress_bar()  # a "Loading weights" bar in the middle of the summary
    atol = 1e-4 if precision == "fp32" else 2e-2  # train.lora's own tolerances
    try:
        diff = verify_adapter(base, adapter, atol=atol)
    except TrainError as exc:
        raise StepFailed(f"adapter: {exc}") from None
    return {"max_abs_diff": diff, "atol": atol}


def finish(results: dict[str, Any], failed: list[str], args: argparse.Namespace, work: Path, started: float) -> int:
    results["failed"] = failed
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(summary(results))
    print(f"[gpu_check] results: {out}" + (f"; runs kept in {work}" if args.keep or args.workdir else ""))
    if not (args.keep or args.workdir):
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def summary(r: dict[str, Any]) -> str:
    lines = [f"summary ({r['mode']}: {r.get('device')}, {r['precision']}, {r['nproc']} process(es), "
             f"{r['elapsed_s']:.0f} s)"]
    for name in ("pretrain", "lora", "sft"):
        v = r.get(name) or {}
        if "tokens_per_s_per_gpu" in v:
            mfu = f", MFU {v['mfu']:.1%}" if "mfu" in v else ""
            params = "" if "params" not in v else (f" ({v['params'] / 1e9:.2f}B params)" if v["params"] >= 1e8
                                                   else f" ({v['params'] / 1e6:.2f}M params)")
            lines.append(f"  {name:<14} {v['tokens_per_s_per_gpu']:>12,.0f} tokens/s/GPU{mfu}{params}")
        else:
            lines.append(f"  {name:<14} {'FAILED' if 'error' in v else 'not run'}")
    for name in ("generate_bf16", "generate_8bit"):
        v = r.get(name) or {}
        if "tokens_per_s" in v:
            lines.append(f"  {name:<14} {v['tokens_per_s']:>12,.1f} new tokens/s (batch {v['batch_size']}, greedy)")
        else:
            lines.append(f"  {name:<14} {'skipped: ' + v['skipped'] if 'skipped' in v else 'FAILED'}")
    v = r.get("adapter") or {}
    lines.append(f"  {'adapter':<14} max |Δ| {v['max_abs_diff']:.3g} (tolerance {v['atol']:g} × max(1, |logits|))"
                 if "max_abs_diff" in v else f"  {'adapter':<14} FAILED")
    if r.get("peak_tflops_assumed"):
        lines.append(f"  (MFU against a nominal {r['peak_tflops_assumed']:g} TFLOP/s: a CPU has no entry in PEAK_TFLOPS)")
    if r.get("failed"):
        lines.append(f"  failed: {', '.join(r['failed'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
