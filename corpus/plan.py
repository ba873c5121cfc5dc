"""A corpus build as a plan: ordered stages, each with its task count, derived from one
:class:`~corpus.spec.CorpusConfig`. Executors run plans and know nothing of what a stage does:
:func:`run_plan` runs every task here, in order; ``hpc.submit corpus`` makes each stage an array job
that starts after the previous one succeeded (``afterok``), each task calling :func:`run_task`.

| stage     | tasks                                              | does (module)                             |
|-----------|----------------------------------------------------|-------------------------------------------|
| prepare   | per (prepared source, shard)                       | read → steps → dedup rows (corpus.pipeline) |
| bands     | per (dedup group, band range), when dedup is on     | LSH candidate pairs (corpus.pipeline)     |
| dedup     | per dedup group                                    | exact + near dedup → docs.jsonl (corpus.pipeline) |
| build     | per prepared source; per (direct source, shard)    | tokenize + pack → .bin/.idx + sidecar (corpus.build) |
| mix       | one                                                | join a direct source's shards, mix, ``report.json`` |

A stage with no task is left out (a JSON-lines build is ``build`` + ``mix``). Every task writes its
outputs atomically and its fingerprinted marker last, and a task finds what it needs from earlier
stages by their markers (redoing any that is missing), so any order of tasks, any number of them and
any rerun after a ``kill -9`` give the same bytes. :func:`executor_plan` is what an executor that runs
tasks elsewhere asks for (the config as its tasks must see it, checked, and its stages);
``python -m corpus plan --json`` prints the stages for shell executors (``slurm/corpus_array.sh``).

Outputs under ``output_dir``: ``<source>/<source>_text_document.{bin,idx,json,docs.jsonl}`` per
source, ``blend.mix.*`` (the mix pretraining reads: ``data: OUTPUT_DIR/blend``) and ``report.json``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import remove_stale_temps, write_json
from common.errors import ConfigError
from common.markers import file_sha256
from corpus import pipeline
from corpus.build import BuildConfig, build, merge_shards
from corpus.mix import MixConfig, MixSource, build_mix
from corpus.quality import load_quality_config
from corpus.spec import CorpusConfig, SourceSpec

STAGES = ("prepare", "bands", "dedup", "build", "mix")


@dataclass(frozen=True)
class Stage:
    name: str
    tasks: int
    cpus: int = 1          # CPUs a task of it uses (the build's tokenizing workers)


def _prepare_tasks(cfg: CorpusConfig) -> list[tuple[int, int]]:
    return [(i, k) for i in pipeline.prepared_sources(cfg) for k in range(cfg.num_shards(cfg.sources[i]))]


def _band_tasks(cfg: CorpusConfig) -> list[tuple[int, int]]:
    if not cfg.dedups:
        return []
    return [(g, j) for g in range(len(pipeline.dedup_groups(cfg))) for j in range(cfg.band_tasks)]


def _build_tasks(cfg: CorpusConfig) -> list[tuple[int, int, int]]:
    """(source, part, parts): a prepared source is one task; a direct one, one per shard."""
    out = []
    for i, spec in enumerate(cfg.sources):
        parts = cfg.num_shards(spec) if cfg.direct(spec) else 1
        out += [(i, p, parts) for p in range(parts)]
    return out


def make_plan(cfg: CorpusConfig) -> list[Stage]:
    counts = {"prepare": len(_prepare_tasks(cfg)), "bands": len(_band_tasks(cfg)),
              "dedup": len(pipeline.dedup_groups(cfg)), "build": len(_build_tasks(cfg)), "mix": 1}
    cpus = {"dedup": cfg.workers, "build": cfg.workers, "mix": 1}
    return [Stage(name, counts[name], cpus.get(name, 1)) for name in STAGES if counts[name]]


def check_inputs(cfg: CorpusConfig) -> None:
    """Before any work: the tokenizer, the filters file and every source's inputs exist."""
    if not Path(cfg.tokenizer).is_file():
        raise ConfigError(f"key 'tokenizer': file not found: {cfg.tokenizer}")
    if cfg.filters and not Path(cfg.filters).is_file():
        raise ConfigError(f"key 'filters': file not found: {cfg.filters}")
    prepared = set(pipeline.prepared_sources(cfg))
    for i, spec in enumerate(cfg.sources):
        try:
            pipeline.expand_source(spec)
            if i in prepared:   # a big file's byte ranges (its multistream index is read and checked)
                pipeline.source_pieces(spec, cfg.num_shards(spec))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"sources[{i}] ({spec.name}): {exc}") from None


def executor_plan(cfg: CorpusConfig, tasks: int | None = None) -> tuple[CorpusConfig, list[Stage]]:
    """What an executor that runs tasks elsewhere (Slurm arrays) submits: the config as its tasks
    must see it — ``tasks`` tasks per source when given (:meth:`CorpusConfig.with_tasks`), absolute
    paths (a task may start in another directory), no progress bars — checked before any work
    (:func:`check_inputs`), and its plan."""
    if tasks is not None:
        cfg = cfg.with_tasks(tasks)
    cfg = dataclasses.replace(cfg.absolute(), progress=False)
    check_inputs(cfg)
    return cfg, make_plan(cfg)


def _parts(cfg: CorpusConfig) -> tuple[Any, Any]:
    return load_quality_config(cfg.filters), cfg.dedup_config()


def _progress(cfg: CorpusConfig) -> bool:
    return cfg.progress if cfg.progress is not None else sys.stderr.isatty()


def source_prefix(cfg: CorpusConfig, spec: SourceSpec) -> Path:
    return Path(cfg.output_dir) / spec.name / f"{spec.name}_text_document"


def build_config(cfg: CorpusConfig, spec: SourceSpec) -> BuildConfig:
    """The tokenize + pack step of one source: its own files (direct) or its prepared docs.jsonl."""
    common = dict(output=str(source_prefix(cfg, spec)), tokenizer=cfg.tokenizer, lang=spec.lang,
                  seq_length=cfg.seq_length, min_tokens=cfg.min_tokens, overlap=cfg.overlap,
                  add_bos=cfg.add_bos, add_eos=cfg.add_eos, workers=cfg.workers, progress=_progress(cfg),
                  force=cfg.force, source=spec.name, batch_bytes=cfg.batch_bytes,
                  max_record_bytes=cfg.max_record_bytes)
    if cfg.direct(spec):
        o = spec.direct_fields()
        return BuildConfig(input=list(spec.paths), text_field=o.text_field, lang_field=o.lang_field,
                           id_field=o.id_field, source_field=None, **common)
    return BuildConfig(input=[str(Path(cfg.output_dir) / spec.name / "docs.jsonl")], text_field="text",
                       lang_field=None, id_field="id", source_field="source", **common)


def run_task(cfg: CorpusConfig, stage: str, task: int) -> dict[str, Any]:
    """Task ``task`` of stage ``stage``: the one function every executor calls."""
    tasks: dict[str, list] = {"prepare": _prepare_tasks(cfg), "bands": _band_tasks(cfg),
                              "dedup": list(range(len(pipeline.dedup_groups(cfg)))), "build": _build_tasks(cfg),
                              "mix": [0]}
    if stage not in tasks:
        raise ConfigError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    if not 0 <= task < len(tasks[stage]):
        raise ConfigError(f"stage {stage!r}: task {task} outside 0..{len(tasks[stage]) - 1}")
    item = tasks[stage][task]
    if stage == "prepare":
        i, k = item
        c = pipeline.prepare_shard(cfg, cfg.sources[i], k, *_parts(cfg))
        return {"source": c["source"], "shard": k, "read": c["read"], "passed_filters": c["passed_filters"]}
    if stage == "bands":
        g, j = item
        return {"group": g, "task": j, "pairs": int(len(pipeline.band_task(cfg, g, j, *_parts(cfg))))}
    if stage == "dedup":
        counts = pipeline.dedup_group(cfg, item, *_parts(cfg))
        return {"group": item, "kept": {c["source"]: c["kept"] for c in counts}}
    if stage == "build":
        i, p, parts = item
        return _build_part(cfg, cfg.sources[i], p, parts)
    return finish(cfg)


def _prepared_counts(cfg: CorpusConfig, index: int) -> dict[str, Any]:
    quality, dedup_cfg = _parts(cfg)
    for g, members in enumerate(pipeline.dedup_groups(cfg, dedup_cfg)):
        if index in members:
            return pipeline.dedup_group(cfg, g, quality, dedup_cfg)[members.index(index)]
    raise AssertionError("every prepared source is in a dedup group")


def _build_part(cfg: CorpusConfig, spec: SourceSpec, part: int, parts: int) -> dict[str, Any]:
    bcfg = build_config(cfg, spec)
    if cfg.direct(spec):
        if parts > 1:
            bcfg = dataclasses.replace(bcfg, shard=part, num_shards=parts)
        report = build(bcfg)
        return {"source": spec.name, "part": part, "sequences": report["counts"]["sequences"]}
    prepared = _prepared_counts(cfg, cfg.sources.index(spec))
    if not prepared["kept"]:
        return {"source": spec.name, "part": 0, "sequences": 0}
    report = build(bcfg)
    return {"source": spec.name, "part": 0, "sequences": report["counts"]["sequences"]}


def _direct_counts(build_counts: dict[str, Any]) -> dict[str, Any]:
    """A direct jsonl source's counts in the shape of a prepared one's (no steps, no dedup)."""
    skipped = build_counts["skipped"]
    return {"read": build_counts["records"], "skipped_by_reader": skipped, "rejected": {}, "steps": {},
            "passed_filters": build_counts["documents"] + skipped.get("too_short", 0),
            "exact_duplicates": 0, "near_duplicates": 0, "kept": build_counts["documents"],
            "dedup_scope": None}


def finish(cfg: CorpusConfig) -> dict[str, Any]:
    """The mix stage: every source's build complete (missing ones are made here), then the mix and
    ``report.json``."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    per_source = []
    for i, spec in enumerate(cfg.sources):
        # Not forced here: `force` is the build stage's, which has just rebuilt what this finds
        # (a forced finish would tokenize every source a second time).
        bcfg = dataclasses.replace(build_config(cfg, spec), force=False)
        if cfg.direct(spec):
            parts = cfg.num_shards(spec)
            if parts > 1:
                for p in range(parts):   # each skipped when its marker matches
                    build(dataclasses.replace(bcfg, shard=p, num_shards=parts))
                built = merge_shards(bcfg, parts)
            else:
                built = build(bcfg)
            prepared = _direct_counts(built["counts"])
        else:
            prepared = _prepared_counts(cfg, i)
            built = build(bcfg) if prepared["kept"] else None
        per_source.append({"name": spec.name, "layout": spec.layout, "lang": spec.lang, "steps": spec.step_names,
                           "prepare": prepared,
                           "build": built and {"prefix": built["output"]["prefix"], "counts": built["counts"]}})
    mixable = [(spec, s) for spec, s in zip(cfg.sources, per_source) if s["build"] and s["build"]["counts"]["sequences"]]
    mix_report = None
    if mixable:
        sources = []
        for spec, s in mixable:
            # A source with neither target nor weight takes its own size: every sample once.
            samples = spec.samples if spec.samples is not None or spec.weight is not None \
                else s["build"]["counts"]["sequences"]
            sources.append(MixSource(spec.name, s["build"]["prefix"], samples=samples, weight=spec.weight))
        mix_report = build_mix(MixConfig(output=str(out / "blend"), sources=sources, seed=cfg.mix_seed,
                                         total_samples=cfg.total_samples))
        targets = {spec.name: {"samples": spec.samples, "weight": spec.weight} for spec, _ in mixable}
        for s in mix_report["sources"]:
            s["target"] = targets.get(s["name"])
    report = {
        "sources": per_source,
        "mix": mix_report,
        "plan": [dataclasses.asdict(s) for s in make_plan(cfg)],
        "tokenizer": {"path": cfg.tokenizer, "sha256": file_sha256(cfg.tokenizer)},
        "config": dataclasses.asdict(cfg),
    }
    write_json(out / "report.json", report)
    return report


def run_plan(cfg: CorpusConfig) -> dict[str, Any]:
    """Every stage's every task here, in plan order; returns (and writes) ``OUTPUT_DIR/report.json``."""
    check_inputs(cfg)
    report: dict[str, Any] = {}
    for stage in make_plan(cfg):
        for t in range(stage.tasks):
            result = run_task(cfg, stage.name, t)
            if stage.name == "mix":
                report = result
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{'source':<12} {'read':>8} {'rejected':>9} {'exact dup':>9} {'near dup':>9} {'kept':>8} "
             f"{'sequences':>10} {'tokens':>12}"]
    for s in report["sources"]:
        p, b = s["prepare"], (s["build"] or {}).get("counts", {})
        lines.append(f"{s['name']:<12} {p['read']:>8,} {sum(p['rejected'].values()):>9,} {p['exact_duplicates']:>9,} "
                     f"{p['near_duplicates']:>9,} {p['kept']:>8,} {b.get('sequences', 0):>10,} {b.get('tokens', 0):>12,}")
        for rule, n in p["rejected"].items():
            lines.append(f"    rejected by {rule}: {n}")
        for reason, n in p["skipped_by_reader"].items():
            lines.append(f"    skipped by the reader ({reason}): {n}")
    if report["mix"]:
        m = report["mix"]
        lines.append(f"mix: {m['samples']:,} samples, {m['tokens']:,} tokens, seed {m['seed']}: "
                     + ", ".join(f"{s['name']} {s['token_share']:.1%}" for s in m["sources"]))
    return "\n".join(lines)
