"""pipeline.yaml → :class:`Chain`: every stage's typed config, resolved once and frozen.

A stage section is its own config file plus overrides written next to it::

    pretrain:
      config: pretrain.yaml      # the file the stage takes alone (relative to pipeline.yaml)
      max_steps: 60              # an override: pipeline.yaml's, and blamed on pipeline.yaml

The chain's paths (data, tokenizer, output folders under ``run_dir``) are set on top. Each stage's
config is built here, at submission (with ``--set`` overrides applied to pipeline.yaml), and carried to
every job as plain data (:class:`hpc.jobs.Frozen`): a job rebuilds exactly the config that was checked,
whatever has become of the YAML files since.

Who is blamed for an error: a stage file that is wrong on its own (with the chain's paths) is named
itself; an override that breaks a file that was fine is pipeline.yaml's, with the key path
(``pipeline.yaml: pretrain: unknown key 'max_step' (did you mean 'max_steps'?…)``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import ConfigError, apply_sets, from_dict, load_yaml
from hpc.chain.markers import STAGES, TUNING_STAGES, stages_for
from hpc.jobs import Frozen, resolve

GPU_STAGES = {"pretrain": "pretrain", "lora": "lora", "sft": "sft"}  # stage → job kind whose shape and entry it uses
ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_INSTRUCTIONS = ROOT / "examples" / "data" / "instructions" / "zh.jsonl"


@dataclass(frozen=True)
class TokenizerSpec:
    """Train the run's tokenizer (corpus train-tokenizer) from these samples."""

    train_from: str
    vocab_size: int = 3000
    text_field: str = "text"


@dataclass(frozen=True)
class RecoverOptions:
    """The publish-and-restore stage: merge-lora, make-diff, apply (None: each tool's default)."""

    dtype: str | None = None
    diff_dtype: str = "float32"
    max_shard_size: str | None = None
    device: str = "auto"


@dataclass(frozen=True)
class ChainConfig:
    """pipeline.yaml as written."""

    run_dir: str
    corpus: Any                                # a CorpusConfig YAML path, or {config: PATH, **overrides}
    pretrain: Any                              # a PretrainConfig YAML path, or {config: PATH, **overrides}
    lora: Any = None                           # a LoraConfig YAML path, or {config: PATH, **overrides}
    sft: Any = None                            # a SftConfig YAML path, or {config: PATH, **overrides}
    # How the pretrained model is tuned: lora (the lora stage, then merge + diff) or full (the sft
    # stage, full-parameter; the diff is taken of its model directly). Only that section is needed.
    tuning: str = "lora"
    tokenizer: Any = None                      # a tokenizer.model, or {train_from: DIR, vocab_size: N}
    recover: RecoverOptions = field(default_factory=RecoverOptions)
    generate: dict[str, Any] = field(default_factory=dict)  # cases: FILE, batch_size, decoding keys
    slurm: dict[str, Any] = field(default_factory=dict)     # per stage: {nodes, gpus_per_node, time}

    def __post_init__(self) -> None:
        if self.tuning not in TUNING_STAGES:
            raise ConfigError(f"key 'tuning': {self.tuning!r} is not one of {', '.join(TUNING_STAGES)}")
        tuner = TUNING_STAGES[self.tuning]
        if getattr(self, tuner) is None:
            raise ConfigError(f"key {tuner!r}: missing, and tuning: {self.tuning} runs the {tuner} stage "
                              f"(give {tuner}: {{config: FILE, …overrides}})")
        known = list(STAGES) + ["sft"]
        unknown = sorted(set(self.slurm) - set(known))
        if unknown:
            raise ConfigError(f"key 'slurm': unknown stage {unknown[0]!r} (stages: {', '.join(known)})")
        for stage, shape in self.slurm.items():
            allowed = {"nodes", "gpus_per_node", "time"} if stage in GPU_STAGES else {"time"}
            allowed |= {"shards"} if stage == "corpus" else set()
            bad = sorted(set(shape) - allowed) if isinstance(shape, dict) else ["(not a mapping)"]
            if bad:
                raise ConfigError(f"key 'slurm': {stage}: unknown key {bad[0]!r} ({', '.join(sorted(allowed))})")


@dataclass(frozen=True)
class GenerateOptions:
    cases: str                                 # a JSON-lines case file
    decoding: Frozen                           # train.generate.Decoding
    batch_size: int = 4


@dataclass(frozen=True)
class Chain:
    """The resolved chain: what every stage job runs with (plain data, pickled into each job)."""

    source: str                                # the pipeline.yaml it was resolved from
    run_dir: str
    tokenizer: str                             # the tokenizer.model every stage uses
    train_tokenizer: TokenizerSpec | None      # trained into `tokenizer` by the first stage, or None
    corpus: Frozen                             # corpus.spec.CorpusConfig
    pretrain: Frozen                           # train.pretrain.PretrainConfig
    lora: Frozen | None                        # train.lora.LoraConfig (tuning: lora)
    recover: RecoverOptions
    generate: GenerateOptions
    slurm: dict[str, Any] = field(default_factory=dict)
    tuning: str = "lora"
    sft: Frozen | None = None                  # train.sft.SftConfig (tuning: full)

    @property
    def run(self) -> Path:
        return Path(self.run_dir)

    @property
    def stages(self) -> tuple[str, ...]:
        """This chain's stages, in order (the tuning stage is lora or sft)."""
        return stages_for(self.tuning)

    def shape(self, stage: str) -> dict[str, Any]:
        return dict(self.slurm.get(stage) or {})

    def corpus_shards(self) -> int:
        return int(self.shape("corpus").get("shards", 1))


@dataclass(frozen=True)
class ResolvedChain:
    """The chain with every stage's config rebuilt: what ``--print-config`` shows."""

    run_dir: str
    tokenizer: str
    train_tokenizer: TokenizerSpec | None
    corpus: Any
    pretrain: Any
    tuning: str
    lora: Any
    sft: Any
    recover: RecoverOptions
    generate_cases: str
    generate_batch_size: int
    decoding: Any
    slurm: dict[str, Any]


def resolved(chain: Chain) -> ResolvedChain:
    def load(frozen: Frozen | None) -> Any:
        return frozen.load() if frozen is not None else None

    return ResolvedChain(chain.run_dir, chain.tokenizer, chain.train_tokenizer, chain.corpus.load(),
                         chain.pretrain.load(), chain.tuning, load(chain.lora), load(chain.sft), chain.recover,
                         chain.generate.cases, chain.generate.batch_size, chain.generate.decoding.load(), chain.slurm)


def stage_config(chain: Chain, stage: str) -> Any:
    """The typed config a stage runs with, rebuilt from the frozen copy."""
    if stage == "tokenizer":
        return chain.train_tokenizer or Path(chain.tokenizer)
    if stage in ("corpus", "pretrain", "lora", "sft"):
        frozen = getattr(chain, stage)
        if frozen is None:
            raise ConfigError(f"{chain.source}: this chain tunes with tuning: {chain.tuning}; it has no {stage} stage")
        return frozen.load()
    if stage == "recover":
        return chain.recover
    if stage == "generate":
        return chain.generate.decoding.load()
    if stage == "report":
        return None
    raise ConfigError(f"unknown stage {stage!r} (stages: {', '.join(stages_for(chain.tuning))})")


def load_chain(path: str | os.PathLike, sets: Iterable[str] = ()) -> Chain:
    """Load pipeline.yaml (with ``--set`` overrides) and resolve every stage's config: a bad key
    anywhere fails here, naming the file that holds it and the key."""
    path = Path(path).absolute()
    sets = list(sets)
    values = apply_sets(ChainConfig, load_yaml(path), sets)
    cfg = from_dict(ChainConfig, values, str(path))
    base = path.parent

    def absolute(p: str) -> str:
        return p if os.path.isabs(p) else str((base / p).resolve())

    # Stage config paths are relative to pipeline.yaml; the paths inside stage files to the working directory.
    run = Path(absolute(cfg.run_dir))
    train_tokenizer = None
    tokenizer = run / "tokenizer.model"        # None: one put there beforehand
    if isinstance(cfg.tokenizer, dict):
        spec = from_dict(TokenizerSpec, cfg.tokenizer, f"{path}: tokenizer")
        train_tokenizer = TokenizerSpec(absolute(spec.train_from), spec.vocab_size, spec.text_field)
    elif isinstance(cfg.tokenizer, str):
        tokenizer = Path(absolute(cfg.tokenizer))
    elif cfg.tokenizer is not None:
        raise ConfigError(f"{path}: key 'tokenizer': a tokenizer.model path, or {{train_from: DIR, vocab_size: N}}")

    sets = list(sets)

    def stage(name: str, cls_ref: str, fixed: dict[str, Any], defaults: dict[str, Any] | None = None) -> Frozen:
        # An override given with --set is blamed on the --set, not on the file.
        mine = [s for s in sets if s.partition("=")[0].replace("[", ".").split(".")[0] == name]
        where = f"{path} (with --set {', '.join(mine)})" if mine else str(path)
        cfg_obj = _resolve_stage(where, name, getattr(cfg, name), resolve(cls_ref), fixed, defaults or {}, absolute)
        return Frozen.of(cfg_obj, f"the {name} stage's config frozen at submission (from {path})")

    corpus = stage("corpus", "corpus.spec:CorpusConfig",
                   {"output_dir": str(run / "corpus"), "tokenizer": str(tokenizer), "progress": False})
    # Pretraining reads the corpus plan's mix (corpus.plan: OUTPUT_DIR/blend).
    pretrain = stage("pretrain", "train.pretrain:PretrainConfig",
                     {"data": str(run / "corpus" / "blend"), "tokenizer": str(tokenizer), "output_dir": str(run / "pretrain"),
                      "export_dir": str(run / "pretrain" / "final")})
    # Only the tuning stage the chain runs is resolved: the other section may be there, unused.
    lora = sft = None
    if cfg.tuning == "lora":
        lora = stage("lora", "train.lora:LoraConfig",
                     {"base": str(run / "pretrain" / "final"), "output_dir": str(run / "lora"),
                      "export_dir": str(run / "lora" / "adapter")},
                     {"data": str(DEFAULT_INSTRUCTIONS)})
    else:
        sft = stage("sft", "train.sft:SftConfig",
                    {"base": str(run / "pretrain" / "final"), "output_dir": str(run / "sft"),
                     "export_dir": str(run / "sft" / "final")},
                    {"data": str(DEFAULT_INSTRUCTIONS)})
    generate = _generate_options(path, cfg.generate, absolute)
    return Chain(str(path), str(run), str(tokenizer), train_tokenizer, corpus, pretrain, lora, cfg.recover,
                 generate, dict(cfg.slurm), cfg.tuning, sft)


def _resolve_stage(pipeline: str, stage: str, section: Any, cls: type, fixed: dict[str, Any],
                   defaults: dict[str, Any], absolute: Any) -> Any:
    """One stage's typed config: its file, then pipeline.yaml's overrides, then the chain's paths."""
    if isinstance(section, str):
        source, overrides = absolute(section), {}
    elif isinstance(section, dict):
        overrides = dict(section)
        source = overrides.pop("config", None)
        source = absolute(source) if isinstance(source, str) else source
    else:
        raise ConfigError(f"{pipeline}: key {stage!r}: a YAML path or a mapping ({{config: PATH, …overrides}})")
    own = {**defaults, **(load_yaml(source) if source else {})}
    # The file as the stage would read it alone (with the chain's paths): an error is the file's.
    try:
        from_dict(cls, {**own, **fixed}, str(source) if source else f"{pipeline}: {stage}")
        file_error = None
    except ConfigError as exc:
        if not overrides:
            raise
        file_error = exc
    # With pipeline.yaml's overrides: an error that the file alone did not have is pipeline.yaml's.
    try:
        return from_dict(cls, {**own, **overrides, **fixed}, f"{pipeline}: {stage}")
    except ConfigError:
        if file_error is not None:
            raise file_error from None
        raise


def _generate_options(pipeline: Path, values: dict[str, Any], absolute: Any) -> GenerateOptions:
    from train.generate import Decoding

    values = dict(values)
    cases = values.pop("cases", None)
    batch = values.pop("batch_size", 4)
    if not isinstance(cases, str) or not Path(absolute(cases)).is_file():
        raise ConfigError(f"{pipeline}: key 'generate': 'cases' must name a JSON-lines case file (got {cases!r})")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ConfigError(f"{pipeline}: generate: key 'batch_size': expected an integer >= 1, got {batch!r}")
    decoding = from_dict(Decoding, values, f"{pipeline}: generate")
    return GenerateOptions(absolute(cases), Frozen.of(decoding, f"the generate stage's decoding (from {pipeline})"),
                           batch)
