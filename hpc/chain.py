"""The main job end to end: tokenizer → corpus → pretrain → LoRA → publish + restore → generate → report.

    python -m hpc.submit pipeline --config configs/tiny/pipeline.yaml          # Slurm if there, else here
    python -m hpc.submit pipeline --config configs/tiny/pipeline.yaml --local  # here, stage after stage

One YAML names the run folder and each stage's own config (the same files the stages take alone),
with overrides; the chain wires the paths between stages so that everything lands in ``run_dir``:

    run_dir/tokenizer.model      trained from the samples unless the config names one
    run_dir/corpus.{bin,idx,json}
    run_dir/pretrain/final       the pretrained model (HF, safetensors); checkpoints beside it
    run_dir/lora/adapter         the LoRA adapter
    run_dir/tuned                base + adapter merged (recover merge-lora): the model to publish
    run_dir/diff                 tuned − pretrained, with its manifest (recover make-diff)
    run_dir/restored             pretrained + diff (recover apply), checked bit-exact against the manifest
    run_dir/generations.jsonl    the case file run through the restored model
    run_dir/report.md + *.png    corpus statistics, loss curves, tokens/s, samples, where things are

Every stage writes ``run_dir/stages/<stage>.json`` when it is done, with a fingerprint of what it was
given; a rerun skips a stage whose marker matches, so each stage can be rerun alone (delete its
marker) and an interrupted chain picks up where it stopped. On Slurm every stage is its own job,
started only after the previous one succeeded (afterok); pretraining and LoRA take the GPU shape
(one task per GPU, ``hpc.dist`` env, requeue on preemption), the others one task each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from common.config import ConfigError, from_dict, load_yaml

STAGES = ("tokenizer", "corpus", "pretrain", "lora", "recover", "generate", "report")
GPU_STAGES = {"pretrain": "pretrain", "lora": "lora"}  # stage → job kind whose shape and entry it uses


@dataclass(frozen=True)
class ChainConfig:
    run_dir: str
    corpus: Any                                # a BuildConfig YAML path, or {config: PATH, **overrides}
    pretrain: Any                              # a PretrainConfig YAML path, or {config: PATH, **overrides}
    lora: Any                                  # a LoraConfig YAML path, or {config: PATH, **overrides}
    tokenizer: Any = None                      # a tokenizer.model, or {train_from: DIR, vocab_size: N}
    recover: dict[str, Any] = field(default_factory=dict)   # make-diff / apply options (dtype, diff_dtype…)
    generate: dict[str, Any] = field(default_factory=dict)  # cases: FILE, decoding keys, batch_size
    slurm: dict[str, Any] = field(default_factory=dict)     # per stage: {nodes, gpus_per_node, time}

    def __post_init__(self) -> None:
        unknown = sorted(set(self.slurm) - set(STAGES))
        if unknown:
            raise ConfigError(f"key 'slurm': unknown stage {unknown[0]!r} (stages: {', '.join(STAGES)})")
        for stage, shape in self.slurm.items():
            allowed = {"nodes", "gpus_per_node", "time"} if stage in GPU_STAGES else {"time"}
            allowed |= {"shards"} if stage == "corpus" else set()
            bad = sorted(set(shape) - allowed) if isinstance(shape, dict) else ["(not a mapping)"]
            if bad:
                raise ConfigError(f"key 'slurm': {stage}: unknown key {bad[0]!r} ({', '.join(sorted(allowed))})")

    @property
    def run(self) -> Path:
        return Path(self.run_dir)


def load_chain_config(path: str | os.PathLike) -> ChainConfig:
    """Load and check the chain and every stage's config (a bad key anywhere fails here, named)."""
    path = Path(path)
    values = load_yaml(path)
    cfg = from_dict(ChainConfig, values, str(path))
    base = path.parent

    def absolute(p: Any) -> Any:
        return str((base / p).resolve()) if isinstance(p, str) and not os.path.isabs(p) else p

    # Stage config paths are relative to this file; the files' own paths to the working directory.
    fixed = {"run_dir": absolute(cfg.run_dir)}
    for stage in ("corpus", "pretrain", "lora"):
        section = getattr(cfg, stage)
        fixed[stage] = absolute(section) if isinstance(section, str) else {
            **section, **({"config": absolute(section["config"])} if "config" in section else {})}
    if isinstance(cfg.tokenizer, str):
        fixed["tokenizer"] = absolute(cfg.tokenizer)
    elif isinstance(cfg.tokenizer, dict) and "train_from" in cfg.tokenizer:
        fixed["tokenizer"] = {**cfg.tokenizer, "train_from": absolute(cfg.tokenizer["train_from"])}
    if "cases" in cfg.generate:
        fixed["generate"] = {**cfg.generate, "cases": absolute(cfg.generate["cases"])}
    cfg = dataclasses.replace(cfg, **fixed)
    for stage in ("corpus", "pretrain", "lora", "tokenizer", "generate", "recover"):
        stage_config(cfg, stage)  # raises ConfigError naming the stage and key
    return cfg


def _section(cfg: ChainConfig, stage: str) -> tuple[dict[str, Any], str]:
    section = getattr(cfg, stage)
    if isinstance(section, str):
        return load_yaml(section), section
    if not isinstance(section, dict):
        raise ConfigError(f"key {stage!r}: a YAML path or a mapping ({{config: PATH, …overrides}})")
    section = dict(section)
    source = section.pop("config", None)
    values = load_yaml(source) if source else {}
    values.update(section)
    return values, source or f"key {stage!r}"


def stage_config(cfg: ChainConfig, stage: str) -> Any:
    """The typed config a stage runs with: its own file + overrides + the chain's paths."""
    run = cfg.run
    tokenizer = tokenizer_path(cfg)
    if stage == "tokenizer":
        return tokenizer
    if stage == "corpus":
        from corpus.build import BuildConfig

        values, where = _section(cfg, "corpus")
        values.update(output=str(run / "corpus"), tokenizer=str(tokenizer), progress=False)
        return from_dict(BuildConfig, values, f"corpus ({where})")
    if stage == "pretrain":
        from train.pretrain import PretrainConfig

        values, where = _section(cfg, "pretrain")
        values.update(data=str(run / "corpus"), tokenizer=str(tokenizer), output_dir=str(run / "pretrain"),
                      export_dir=str(run / "pretrain" / "final"))
        return from_dict(PretrainConfig, values, f"pretrain ({where})")
    if stage == "lora":
        from train.lora import LoraConfig

        values, where = _section(cfg, "lora")
        values.update(base=str(run / "pretrain" / "final"), output_dir=str(run / "lora"),
                      export_dir=str(run / "lora" / "adapter"))
        values.setdefault("data", str(Path(__file__).resolve().parent.parent / "examples/data/instructions/zh.jsonl"))
        return from_dict(LoraConfig, values, f"lora ({where})")
    if stage == "recover":
        unknown = sorted(set(cfg.recover) - {"dtype", "diff_dtype", "max_shard_size", "device"})
        if unknown:
            raise ConfigError(f"key 'recover': unknown key {unknown[0]!r} (dtype, diff_dtype, max_shard_size, device)")
        return dict(cfg.recover)
    if stage == "generate":
        from train.generate import Decoding

        values = dict(cfg.generate)
        cases = values.pop("cases", None)
        batch = values.pop("batch_size", 4)
        if cases is None or not Path(cases).is_file():
            raise ConfigError(f"key 'generate': 'cases' must name a JSON-lines case file (got {cases!r})")
        return {"cases": str(Path(cases).resolve()), "batch_size": batch, "decoding": Decoding.from_dict(values, "generate")}
    if stage == "report":
        return None
    raise ConfigError(f"unknown stage {stage!r}")


def tokenizer_path(cfg: ChainConfig) -> Path:
    t = cfg.tokenizer
    if t is None or isinstance(t, dict):
        return cfg.run / "tokenizer.model"
    return Path(t).resolve()


# ---------------------------------------------------------------------------------------------
# Stage markers


# Settings that change how a stage reports, not what it produces: no reason to redo the stage.
_COSMETIC = ("progress", "logging_steps", "report_to", "dataloader_workers")


def fingerprint(cfg: ChainConfig, stage: str) -> str:
    """What a stage's output depends on: its own settings and, through the previous stage's
    fingerprint, everything upstream (a new corpus makes pretraining, and all after it, stale)."""
    def plain(x: Any) -> Any:
        return dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x

    own = plain(stage_config(cfg, stage))
    if isinstance(own, dict):
        own = {k: v for k, v in own.items() if k not in _COSMETIC}
    i = STAGES.index(stage)
    data = {"stage": stage, "config": own, "tokenizer": plain(cfg.tokenizer),
            "upstream": fingerprint(cfg, STAGES[i - 1]) if i else None}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def marker_path(cfg: ChainConfig, stage: str) -> Path:
    return cfg.run / "stages" / f"{stage}.json"


def done(cfg: ChainConfig, stage: str, fp: str | None = None) -> dict[str, Any] | None:
    """The stage's marker if it was written for these settings (``fp``: its fingerprint, if known)."""
    try:
        marker = json.loads(marker_path(cfg, stage).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if marker.get("fingerprint") == (fp or fingerprint(cfg, stage)) else None


def mark_done(cfg: ChainConfig, stage: str, result: Any, seconds: float, fp: str) -> dict[str, Any]:
    marker = {"stage": stage, "fingerprint": fp, "seconds": round(seconds, 2),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "job_id": os.environ.get("SLURM_JOB_ID"),
              "result": result}
    path = marker_path(cfg, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    tmp.write_text(json.dumps(marker, indent=1, default=str, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return marker


def _rank() -> int:
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)


def run_stage(stage: str, cfg: ChainConfig, distributed: bool = True) -> Any:
    """One stage, skipped when its marker matches; the job function of every chain step."""
    fp = fingerprint(cfg, stage)
    previous = done(cfg, stage, fp)
    if previous is not None:
        print(f"[chain] {stage}: already done ({marker_path(cfg, stage)}), skipped", flush=True)
        return {"stage": stage, "skipped": True, "result": previous.get("result")}
    started = time.time()
    print(f"[chain] {stage}: starting", flush=True)
    if stage in GPU_STAGES and _rank() == 0:
        _set_aside_stale(cfg.run / stage, fp)
    if stage in GPU_STAGES:
        from hpc.jobs import run

        if distributed:
            result = run(GPU_STAGES[stage], stage_config(cfg, stage), distributed=True)
        else:
            # Here, one stage after another: each training run gets a fresh process, so that nothing of
            # one (the process group, accelerate's and DeepSpeed's process-wide state, memory) leaks
            # into the next.
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(1) as pool:
                result = pool.apply(run, (GPU_STAGES[stage], stage_config(cfg, stage), False))
        if result.get("status") != "completed":
            # Stopped by the signal outside Slurm (nothing requeues it here): not done, rerun resumes.
            raise RuntimeError(f"{stage} stopped at step {result.get('step')} ({result.get('status')}); "
                               f"rerun the pipeline to resume from {result.get('checkpoint')}")
    else:
        result = STAGE_FUNCS[stage](cfg)
    if _rank() == 0:
        mark_done(cfg, stage, result, time.time() - started, fp)
    print(f"[chain] {stage}: done in {time.time() - started:.1f} s", flush=True)
    return {"stage": stage, "skipped": False, "result": result}


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
    stamp.write_text(fp + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The CPU stages


def stage_tokenizer(cfg: ChainConfig) -> dict[str, Any]:
    path = tokenizer_path(cfg)
    t = cfg.tokenizer
    if not isinstance(t, dict):
        if not path.is_file():
            raise ConfigError(f"key 'tokenizer': file not found: {path}")
        return {"tokenizer": str(path), "trained": False}
    from corpus.cli import main as corpus_cli

    unknown = sorted(set(t) - {"train_from", "vocab_size", "text_field"})
    if unknown:
        raise ConfigError(f"key 'tokenizer': unknown key {unknown[0]!r} (train_from, vocab_size, text_field)")
    path.parent.mkdir(parents=True, exist_ok=True)
    rc = corpus_cli(["train-tokenizer", "--input", str(t["train_from"]), "--vocab-size", str(t.get("vocab_size", 3000)),
                     "--text-field", str(t.get("text_field", "text")), "--out", str(path)])
    if rc != 0:
        raise RuntimeError(f"training the tokenizer from {t['train_from']} failed (exit status {rc})")
    return {"tokenizer": str(path), "trained": True}


def corpus_shards(cfg: ChainConfig) -> int:
    return int(cfg.slurm.get("corpus", {}).get("shards", 1))


def corpus_shard(cfg: ChainConfig, shard: int, num_shards: int) -> dict[str, Any]:
    """One array task of the corpus stage (a completed shard is skipped by the build itself)."""
    from hpc.jobs import corpus_shard as build_shard

    return build_shard(stage_config(cfg, "corpus"), shard, num_shards)


def stage_corpus(cfg: ChainConfig) -> dict[str, Any]:
    """The corpus: merged from its shards when the chain runs them as an array, else built here."""
    from corpus.build import build, merge_shards

    build_cfg, n = stage_config(cfg, "corpus"), corpus_shards(cfg)
    if n > 1:
        for k in range(n):  # on Slurm the array did them all already: each one is skipped
            corpus_shard(cfg, k, n)
        report = merge_shards(build_cfg, n)
    else:
        report = build(build_cfg)
    return {"prefix": report["output"]["prefix"], "counts": report["counts"]}


def stage_recover(cfg: ChainConfig) -> dict[str, Any]:
    """Publish the tuned model as a diff against the pretrained one and restore it from that diff."""
    from recover.apply import ApplyConfig, apply_diff
    from recover.diff import MakeDiffConfig, make_diff
    from recover.lora import MergeLoraConfig, merge_lora
    from recover.manifest import verify_checkpoint

    run, opts = cfg.run, stage_config(cfg, "recover")
    base, adapter = run / "pretrain" / "final", run / "lora" / "adapter"
    common = {"force": True, "progress": False}
    if "max_shard_size" in opts:
        common["max_shard_size"] = opts["max_shard_size"]
    merged = merge_lora(MergeLoraConfig(base=str(base), lora=str(adapter), out=str(run / "tuned"),
                                        device=opts.get("device", "auto"), **common))
    diff = make_diff(MakeDiffConfig(raw=str(base), tuned=str(run / "tuned"), out=str(run / "diff"),
                                    diff_dtype=opts.get("diff_dtype", "float32"), **common))
    restored = apply_diff(ApplyConfig(raw=str(base), diff=str(run / "diff"), out=str(run / "restored"),
                                      dtype=opts.get("dtype"), require_manifest=True, **common))
    check = verify_checkpoint(run / "restored", run / "diff" / "recover-manifest.json", role="tuned")
    return {"merged": merged, "diff": diff, "restored": restored, "verified": check}


def stage_generate(cfg: ChainConfig) -> dict[str, Any]:
    from train.files import write_jsonl_atomic
    from train.generate import Generator, load_model, read_cases, run_cases

    opts = stage_config(cfg, "generate")
    model, tokenizer = load_model(cfg.run / "restored")
    cases, bad = read_cases(opts["cases"])
    for line in bad:
        print(f"[chain] generate: skipped case {line}", flush=True)
    outputs = run_cases(Generator(model, tokenizer), cases, opts["decoding"], batch_size=opts["batch_size"])
    write_jsonl_atomic(outputs, cfg.run / "generations.jsonl")
    finish = {k: sum(1 for o in outputs if o["finish"] == k) for k in ("eos", "length")}
    return {"cases": len(outputs), "skipped": len(bad), "finish": finish, "out": str(cfg.run / "generations.jsonl")}


def stage_report(cfg: ChainConfig) -> dict[str, Any]:
    from hpc.chain_report import write_run_report

    page = write_run_report(cfg)
    return {"report": str(page)}


STAGE_FUNCS: dict[str, Callable[[ChainConfig], Any]] = {
    "tokenizer": stage_tokenizer, "corpus": stage_corpus, "recover": stage_recover,
    "generate": stage_generate, "report": stage_report,
}


def run_local(cfg: ChainConfig) -> list[dict[str, Any]]:
    """Every stage here, in order (what `hpc.submit pipeline --local` and `make demo` do)."""
    return [run_stage(stage, cfg, distributed=False) for stage in STAGES]
