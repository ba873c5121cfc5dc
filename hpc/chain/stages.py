"""What each stage of the chain does, and the job function every chain step runs (:func:`run_stage`).

A stage runs with the configs frozen in its :class:`~hpc.chain.config.Chain` (never re-reading the
YAML files) and is skipped when its marker matches.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from common.atomic import write_text
from common.config import ConfigError, to_dict
from hpc.chain import markers
from hpc.chain.config import GPU_STAGES, Chain, stage_config

# Settings that change how a stage reports, not what it produces: no reason to redo the stage.
_COSMETIC = ("progress", "logging_steps", "report_to", "dataloader_workers")


def _settings(chain: Chain, stage: str) -> Any:
    if stage == "tokenizer":
        return {"path": chain.tokenizer, "train": to_dict(chain.train_tokenizer)}
    if stage in ("corpus", "pretrain", "lora", "sft"):
        return {k: v for k, v in getattr(chain, stage).data.items() if k not in _COSMETIC}
    if stage == "recover":
        return to_dict(chain.recover)
    if stage == "generate":
        g = chain.generate
        return {"cases": g.cases, "batch_size": g.batch_size, "decoding": g.decoding.data}
    return None


def fingerprint(chain: Chain, stage: str) -> str:
    """What a stage's output depends on: its own settings and, through the previous stage's
    fingerprint, everything upstream (a new corpus makes pretraining, and all after it, stale)."""
    order = chain.stages
    i = order.index(stage)
    return markers.fingerprint({"stage": stage, "config": _settings(chain, stage),
                                "upstream": fingerprint(chain, order[i - 1]) if i else None})


def _rank() -> int:
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)


def run_stage(stage: str, chain: Chain, distributed: bool = True) -> Any:
    """One stage, skipped when its marker matches; the job function of every chain step."""
    fp = fingerprint(chain, stage)
    previous = markers.read(chain.run, stage, fp)
    if previous is not None:
        print(f"[chain] {stage}: already done ({markers.marker_path(chain.run, stage)}), skipped", flush=True)
        return {"stage": stage, "skipped": True, "result": previous.get("result")}
    started = time.time()
    print(f"[chain] {stage}: starting", flush=True)
    if stage in GPU_STAGES:
        if _rank() == 0:
            _set_aside_stale(chain.run / stage, fp)
        result = _train(stage, stage_config(chain, stage), distributed)
    else:
        result = STAGE_FUNCS[stage](chain)
    if _rank() == 0:
        markers.write(chain.run, stage, fp, result, time.time() - started)
    print(f"[chain] {stage}: done in {time.time() - started:.1f} s", flush=True)
    return {"stage": stage, "skipped": False, "result": result}


def _train(stage: str, cfg: Any, distributed: bool) -> Any:
    from hpc.tasks import run

    if distributed:
        result = run(GPU_STAGES[stage], cfg, distributed=True)
    else:
        # Here, one stage after another: each training run gets a fresh process, so that nothing of
        # one (the process group, accelerate's and DeepSpeed's process-wide state, memory) leaks
        # into the next.
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(1) as pool:
            result = pool.apply(run, (GPU_STAGES[stage], cfg, False))
    if result.get("status") != "completed":
        # Stopped by the signal outside Slurm (nothing requeues it here): not done, rerun resumes.
        raise RuntimeError(f"{stage} stopped at step {result.get('step')} ({result.get('status')}); "
                           f"rerun the pipeline to resume from {result.get('checkpoint')}")
    return result


def _set_aside_stale(folder: Path, fp: str) -> None:
    """A training stage resumes from its folder's checkpoints: those of other settings or other
    upstream data must not be resumed from. They are moved aside (``<folder>.old-<time>``), not deleted.
    Runs on rank 0 before any rank looks for checkpoints (they do so after a barrier)."""
    stamp = folder / ".chain-fingerprint"
    if folder.exists():
        try:
            same = stamp.read_text(encoding="utf-8").strip() == fp
        except OSError:
            same = False
        if same:
            return  # the same run, interrupted: resume it
        aside = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        folder.rename(aside)
        print(f"[chain] {folder.name}: earlier output of other settings moved to {aside}", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(stamp, fp + "\n")


# ---------------------------------------------------------------------------------------------
# The CPU stages


def stage_tokenizer(chain: Chain) -> dict[str, Any]:
    path, spec = Path(chain.tokenizer), chain.train_tokenizer
    if spec is None:
        if not path.is_file():
            raise ConfigError(f"{chain.source}: key 'tokenizer': file not found: {path}")
        return {"tokenizer": str(path), "trained": False}
    from corpus.cli import main as corpus_cli

    path.parent.mkdir(parents=True, exist_ok=True)
    rc = corpus_cli(["train-tokenizer", "--input", spec.train_from, "--vocab-size", str(spec.vocab_size),
                     "--text-field", spec.text_field, "--out", str(path)])
    if rc != 0:
        raise RuntimeError(f"training the tokenizer from {spec.train_from} failed (exit status {rc})")
    return {"tokenizer": str(path), "trained": True}


def corpus_plan_config(chain: Chain) -> Any:
    """The corpus stage's CorpusConfig, with ``slurm: corpus: shards`` as its shards per source."""
    cfg = stage_config(chain, "corpus")
    n = chain.corpus_shards()
    return cfg.with_tasks(n) if n > 1 else cfg


def corpus_task(chain: Chain, stage: str, task: int) -> dict[str, Any]:
    """One array task of one stage of the corpus plan (a task whose marker matches is skipped by it)."""
    from corpus.plan import run_task

    result = run_task(corpus_plan_config(chain), stage, task)
    return {"stage": stage, "task": task} if stage == "mix" else result


def stage_corpus(chain: Chain) -> dict[str, Any]:
    """The corpus plan (read → steps → dedup → pack → mix): on Slurm its stages ran as arrays already
    and every task is skipped here by its marker; the report and the mix are what is left."""
    from corpus.plan import run_plan

    report = run_plan(corpus_plan_config(chain))
    mix = report["mix"] or {}
    return {"prefix": str(Path(report["config"]["output_dir"]) / "blend"),
            "sources": {s["name"]: {"kept": s["prepare"]["kept"],
                                    "sequences": (s["build"] or {}).get("counts", {}).get("sequences", 0)}
                        for s in report["sources"]},
            "samples": mix.get("samples", 0), "tokens": mix.get("tokens", 0)}


def tuned_model(chain: Chain) -> Path:
    """The model the chain publishes: LoRA's adapter merged into the base (run_dir/tuned), or the
    sft stage's own export (run_dir/sft/final) — full tuning has nothing to merge."""
    return chain.run / "tuned" if chain.tuning == "lora" else chain.run / "sft" / "final"


def stage_recover(chain: Chain) -> dict[str, Any]:
    """Publish the tuned model as a diff against the pretrained one and restore it from that diff."""
    from recover.apply import ApplyConfig, apply_diff
    from recover.diff import MakeDiffConfig, make_diff
    from recover.lora import MergeLoraConfig, merge_lora
    from recover.manifest import verify_checkpoint

    run, opts = chain.run, chain.recover
    base, tuned = run / "pretrain" / "final", tuned_model(chain)
    shared: dict[str, Any] = {"force": True, "progress": False}
    if opts.max_shard_size is not None:
        shared["max_shard_size"] = opts.max_shard_size
    merged = None
    if chain.tuning == "lora":
        merged = merge_lora(MergeLoraConfig(base=str(base), lora=str(run / "lora" / "adapter"), out=str(tuned),
                                            device=opts.device, **shared))
    diff = make_diff(MakeDiffConfig(raw=str(base), tuned=str(tuned), out=str(run / "diff"),
                                    diff_dtype=opts.diff_dtype, **shared))
    restored = apply_diff(ApplyConfig(raw=str(base), diff=str(run / "diff"), out=str(run / "restored"),
                                      dtype=opts.dtype, require_manifest=True, **shared))
    check = verify_checkpoint(run / "restored", run / "diff" / "recover-manifest.json", role="tuned")
    return {"merged": merged, "diff": diff, "restored": restored, "verified": check}


def stage_generate(chain: Chain) -> dict[str, Any]:
    from common.jsonl import write_jsonl
    from train.generate import Generator, load_model, read_cases, run_cases

    g = chain.generate
    model, tokenizer = load_model(chain.run / "restored")
    cases, bad = read_cases(g.cases)
    for line in bad:
        print(f"[chain] generate: skipped case {line}", flush=True)
    outputs = run_cases(Generator(model, tokenizer), cases, g.decoding.load(), batch_size=g.batch_size,
                        log=lambda line: print(line, file=sys.stderr, flush=True))
    out = chain.run / "generations.jsonl"
    write_jsonl(outputs, out)
    finish = {k: sum(1 for o in outputs if o["finish"] == k) for k in ("eos", "length")}
    return {"cases": len(outputs), "skipped": len(bad), "finish": finish, "out": str(out)}


def stage_report(chain: Chain) -> dict[str, Any]:
    from hpc.chain.report import write_run_report

    return {"report": str(write_run_report(chain.run, chain.stages))}


STAGE_FUNCS: dict[str, Callable[[Chain], Any]] = {
    "tokenizer": stage_tokenizer, "corpus": stage_corpus, "recover": stage_recover,
    "generate": stage_generate, "report": stage_report,
}


def run_local(chain: Chain) -> list[dict[str, Any]]:
    """Every stage here, in order (what `hpc.submit pipeline --local` and `make demo` do)."""
    return [run_stage(stage, chain, distributed=False) for stage in chain.stages]
