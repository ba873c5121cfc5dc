"""``python -m corpus``: build, plan, run-task, mix, report, train-tokenizer, inspect, validate, calibrate,
train-classifier, merge.

Errors a user can act on (bad config, missing input, corrupt index, a tokenizer other than the
data's) are caught once, by :func:`common.cli.run`, and printed as one line on stderr,
``corpus: error: …``, with exit status 2. The sub-commands that take a config (build, plan, run-task,
mix) also take ``--set KEY=VALUE`` and ``--print-config``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator, Sequence

import numpy as np

from common.cli import Parser, add_config_options, config_from_args, print_config, run
from common.errors import ConfigError, InputDataError
from common.jsonl import read_json_object

PROG = "corpus"


def _load(args: argparse.Namespace):
    """The one corpus config: the YAML (``--config``), or a JSON-lines build from ``--input`` flags."""
    from common.config import load_config
    from corpus.spec import JSONL, CorpusConfig, load_corpus_config

    overrides = {"tokenizer": args.tokenizer, "workers": args.workers, "output_dir": args.output,
                 "seq_length": args.seq_length, "min_tokens": args.min_tokens, "overlap": args.overlap,
                 "progress": False if args.no_progress else None, "force": True if args.force else None}
    if args.config:
        if args.input or args.text_field or args.lang:
            raise ConfigError("--input/--text-field/--lang make a JSON-lines build without --config; with a "
                              "config, set them on its source: --set sources[0].paths=[…]")
        cfg = load_corpus_config(args.config, overrides, args.set)
    else:
        if not args.input:
            raise ConfigError("build: --config FILE, or --input FILE … for a JSON-lines build")
        source = {"name": "corpus", "layout": JSONL, "lang": args.lang or "zh", "paths": args.input,
                  "options": {"fields": {"text": args.text_field}} if args.text_field else {}}
        cfg = load_config(CorpusConfig, None, overrides, args.set, values={"sources": [source], "dedup": None})
    return cfg.with_tasks(args.tasks) if args.tasks is not None else cfg


def _build(args: argparse.Namespace) -> int:
    from corpus.plan import format_report as format_plan_report, run_plan

    cfg = _load(args)
    if args.print_config:
        return print_config(cfg)
    print(format_plan_report(run_plan(cfg)))
    return 0


def _plan(args: argparse.Namespace) -> int:
    import json

    from corpus.plan import make_plan

    cfg = _load(args)
    if args.print_config:
        return print_config(cfg)
    stages = make_plan(cfg)
    if args.json:
        # What an executor reads (slurm/corpus_array.sh): the stages in order, each with its task count.
        print(json.dumps({"stages": [dataclasses.asdict(s) for s in stages]}))
        return 0
    for stage in stages:
        print(f"{stage.name:<8} {stage.tasks:>5} task(s), {stage.cpus} CPU(s) each")
    return 0


def _run_task(args: argparse.Namespace) -> int:
    import json

    from corpus.plan import run_task

    cfg = _load(args)
    if args.print_config:
        return print_config(cfg)
    print(json.dumps(run_task(cfg, args.stage, args.task), ensure_ascii=False, default=str))
    return 0


def _report(args: argparse.Namespace) -> int:
    from corpus.report import write_report

    print(write_report(args.output_dir))
    return 0


def _mix(args: argparse.Namespace) -> int:
    from corpus.mix import build_mix, load_mix_config

    cfg = load_mix_config(args.config, {"output": args.output, "seed": args.seed}, args.set)
    if args.print_config:
        return print_config(cfg)
    report = build_mix(cfg)
    print(f"{report['samples']:,} samples, {report['tokens']:,} tokens, seed {report['seed']}"
          + (f", tokenizer sha256 {report['tokenizer_sha256']}" if report.get("tokenizer_sha256") else ""))
    for s in report["sources"]:
        print(f"  {s['name']:<12} {s['samples']:>12,} samples of {s['sequences']:>12,} "
              f"({s['epochs']:.2f} epochs)  token share {s['token_share']:.1%}")
    return 0


def _train_tokenizer(args: argparse.Namespace) -> int:
    from corpus.build import DocumentError, parse_record
    from corpus.reader import Line, expand_inputs, read_lines
    from corpus.tokenizer import Tokenizer, train_tokenizer

    files = expand_inputs(args.input)
    budget = args.max_bytes

    def texts() -> Iterator[str]:
        nonlocal budget
        for path in files:
            for item in read_lines(path, max_bytes=16 << 20):
                if not isinstance(item, Line) or item.data is None:
                    continue
                try:
                    text, _, _ = parse_record(item.data, args.text_field, None, "zh")
                except DocumentError:
                    continue
                yield text
                budget -= len(item.data)
                if budget <= 0:
                    return

    path = train_tokenizer(texts(), args.out, args.vocab_size)
    print(f"{path}: {Tokenizer(path).vocab_size} pieces")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from corpus.identity import check_tokenizer
    from corpus.indexed import IndexedReader

    if args.tokenizer:
        check_tokenizer(args.prefix, args.tokenizer)   # decoding with another tokenizer prints nonsense
    with IndexedReader(args.prefix) as reader:
        lengths = np.asarray(reader.sequence_lengths)
        print(f"{args.prefix}: {reader.num_documents} documents, {len(reader)} sequences, "
              f"{int(lengths.sum())} tokens, dtype {reader.dtype.name}")
        if len(lengths):
            print(f"sequence length: min {lengths.min()}, median {int(np.median(lengths))}, "
                  f"mean {lengths.mean():.1f}, max {lengths.max()}")
            print(length_histogram(lengths, args.bins))
        report = _sidecar_report(args.prefix)
        if report and "counts" in report and not args.no_report:
            print(format_report(report))
        for k in args.decode:
            tokens = reader[k]
            tok_path = args.tokenizer or (report or {}).get("tokenizer", {}).get("path")
            if not tok_path:
                raise ConfigError("--decode needs --tokenizer (no report next to the index names one)")
            from corpus.tokenizer import Tokenizer

            tok = Tokenizer(tok_path)
            print(f"--- sequence {k} ({len(tokens)} tokens) ---")
            print(tok.decode(tokens.tolist()))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from corpus.identity import check_tokenizer
    from corpus.indexed import stale_temps, validate

    vocab = args.vocab_size
    if vocab is not None and vocab <= 0:
        raise ConfigError(f"--vocab-size: must be positive, got {vocab}")
    recorded = None
    if args.tokenizer:
        from corpus.tokenizer import Tokenizer

        recorded = check_tokenizer(args.prefix, args.tokenizer)
        if vocab is None:
            vocab = Tokenizer(args.tokenizer).vocab_size
    stats = validate(args.prefix, vocab_size=vocab)
    print(f"{args.prefix}: valid ({stats.documents} documents, {stats.sequences} sequences, {stats.tokens} tokens)")
    if args.tokenizer:
        print(f"  tokenizer {args.tokenizer}: " + ("the one it was built with (sha256 matches)" if recorded
              else "not compared (no tokenizer sha256 recorded next to the index)"))
    leftovers = stale_temps(args.prefix)
    if leftovers:
        print(f"  {len(leftovers)} temporary file(s) of a writer that died (safe to delete; a rebuild removes them): "
              + ", ".join(leftovers), file=sys.stderr)
    return 0


def _merge(args: argparse.Namespace) -> int:
    from corpus.build import merge_datasets
    from corpus.identity import unrecorded

    missing = unrecorded(args.inputs)
    if missing and len(missing) < len(args.inputs):
        print(f"corpus: warning: no tokenizer recorded for {', '.join(missing)}: not compared with the others",
              file=sys.stderr)
    stats = merge_datasets(args.inputs, args.output)
    print(f"{args.output}: {stats.documents} documents, {stats.sequences} sequences, {stats.tokens} tokens")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    import json

    from corpus.calibrate import format_figures, main as calibrate

    figures = calibrate(args.labelled, args.config)
    print(json.dumps(figures, ensure_ascii=False) if args.json else format_figures(figures))
    return 0


def _train_classifier(args: argparse.Namespace) -> int:
    from corpus.classifier import TrainConfig, read_texts, save_classifier, train_classifier

    positive = [t for path in args.positive for t in read_texts(path, args.text_key)]
    negative = [t for path in args.negative for t in read_texts(path, args.text_key)]
    cfg = TrainConfig(l2=args.l2, min_df=args.min_df, steps=args.steps)
    clf = train_classifier(positive, negative, cfg)
    header = (f"corpus train-classifier: {len(positive)} positive ({', '.join(args.positive)}), "
              f"{len(negative)} negative ({', '.join(args.negative)})\n"
              f"l2 {cfg.l2}, min_df {cfg.min_df}, {cfg.steps} steps: {len(clf.weights)} features")
    save_classifier(clf, args.out, header)
    print(f"{args.out}: {len(clf.weights)} features from {len(positive)} positive, {len(negative)} negative "
          f"documents (use it as spam_en_model: in a filters YAML, or corpus.classifier.load_classifier)")
    return 0


def _sidecar_report(prefix: str) -> dict | None:
    try:
        return read_json_object(prefix + ".json")
    except InputDataError:
        return None


def length_histogram(lengths: np.ndarray, bins: int, width: int = 40) -> str:
    counts, edges = np.histogram(lengths, bins=bins)
    top = max(int(counts.max()), 1)
    rows = []
    for c, lo, hi in zip(counts.tolist(), edges[:-1], edges[1:]):
        rows.append(f"  {int(lo):>6}-{int(hi):<6} {c:>9} {'#' * round(width * c / top)}")
    return "\n".join(rows)


def format_report(report: dict) -> str:
    c = report["counts"]
    lines = [
        f"corpus {report['output']['prefix']} ({report['output']['dtype']} tokens)",
        f"  records read      {c['records']:>12,}",
        f"  documents written {c['documents']:>12,}   by language: "
        + ", ".join(f"{k} {v:,}" for k, v in c["documents_by_lang"].items()),
        f"  sequences         {c['sequences']:>12,}",
        f"  tokens written    {c['tokens']:>12,}   (documents had {c['document_tokens']:,})",
        f"  text              {c['text_bytes'] / 1e6:>12.2f} MB",
        f"  split documents   {c['split_documents']:>12,}   (longer than one sample; {c['sentences']:,} sentences, "
        f"{c['sentences_cut']:,} cut at token boundaries)",
    ]
    skipped = c["skipped"]
    lines.append(f"  skipped           {sum(skipped.values()):>12,}" + (
        "   " + ", ".join(f"{k} {v:,}" for k, v in skipped.items()) if skipped else ""))
    for reason, where in report.get("skipped_examples", {}).items():
        lines.append(f"    {reason}: {'; '.join(where)}")
    run = report.get("run", {})
    if run.get("seconds") is not None:
        lines.append(f"  took {run['seconds']:.2f} s with {run['workers']} worker(s): "
                     f"{run['docs_per_s']} docs/s, {run['mb_per_s']} MB/s")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m corpus", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def build_options(b: argparse.ArgumentParser) -> None:
        add_config_options(b, required=False, help="YAML file of CorpusConfig keys (corpus.spec); the flags below "
                                                   "override it, --set after them")
        b.add_argument("--input", action="append", help="without --config: a JSON-lines file, directory or glob "
                                                        "(repeatable), one jsonl source")
        b.add_argument("--output", help="output_dir: per source .bin/.idx/.json/.docs.jsonl, blend.mix.*, report.json")
        b.add_argument("--tokenizer", help="sentencepiece tokenizer.model")
        b.add_argument("--workers", type=int)
        b.add_argument("--text-field")
        b.add_argument("--lang", help="default language: zh, en or code")
        b.add_argument("--seq-length", type=int)
        b.add_argument("--min-tokens", type=int)
        b.add_argument("--overlap", action="store_true", default=None, help="CaMA's overlapping samples")
        b.add_argument("--no-progress", action="store_true")
        b.add_argument("--force", action="store_true", help="rebuild even if the output is up to date")
        b.add_argument("--tasks", type=int, help="N prepare tasks (build tasks for a direct jsonl source) for "
                                                 "every source, whatever the config's shards say")

    b = sub.add_parser("build", help="the corpus plan here: sources → steps → dedup → .bin/.idx → mix")
    build_options(b)
    b.set_defaults(func=_build)

    pl = sub.add_parser("plan", help="the plan's stages and task counts (what hpc.submit corpus submits)")
    build_options(pl)
    pl.add_argument("--json", action="store_true", help='one JSON object: {"stages": [{"name", "tasks", "cpus"}, …]}')
    pl.set_defaults(func=_plan)

    rt = sub.add_parser("run-task", help="one task of one stage of the plan (what an array task runs)")
    build_options(rt)
    rt.add_argument("--stage", required=True)
    rt.add_argument("--task", type=int, required=True)
    rt.set_defaults(func=_run_task)

    rp = sub.add_parser("report", help="Markdown + PNG plots for a raw-source build's output folder")
    rp.add_argument("output_dir")
    rp.set_defaults(func=_report)

    mx = sub.add_parser("mix", help="blend built corpora into a seeded sample index (per-source counts or weights)")
    add_config_options(mx, help="YAML mix spec (output, seed, sources: name, prefix, samples|weight)")
    mx.add_argument("--output", help="index prefix, if not the config's")
    mx.add_argument("--seed", type=int)
    mx.set_defaults(func=_mix)

    t = sub.add_parser("train-tokenizer", help="train a small LLaMA-like BPE tokenizer from JSON lines")
    t.add_argument("--input", action="append", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--vocab-size", type=int, default=32000)
    t.add_argument("--text-field", default="text")
    t.add_argument("--max-bytes", type=int, default=100_000_000, help="stop reading after this much text")
    t.set_defaults(func=_train_tokenizer)

    i = sub.add_parser("inspect", help="counts, length histogram, decoded samples")
    i.add_argument("prefix")
    i.add_argument("--decode", type=int, action="append", default=[], metavar="K", help="decode sequence K")
    i.add_argument("--tokenizer", help="decode with this tokenizer (checked against the one the data records)")
    i.add_argument("--bins", type=int, default=10)
    i.add_argument("--no-report", action="store_true", help="leave out the build report next to the index")
    i.set_defaults(func=_inspect)

    v = sub.add_parser("validate", help="check every invariant of a .bin/.idx pair")
    v.add_argument("prefix")
    v.add_argument("--vocab-size", type=int)
    v.add_argument("--tokenizer", help="check tokens against its vocabulary, and that it is the tokenizer "
                                       "the data was built with (the sha256 in PREFIX.json)")
    v.set_defaults(func=_validate)

    cal = sub.add_parser("calibrate", help="the quality rules' false positives and recall on labelled documents")
    cal.add_argument("--labelled", required=True, help='JSON lines: {"text", "lang": zh|en, "label": '
                                                       'clean|junk|harmful, "genre", "source"}')
    cal.add_argument("--config", help="filter thresholds (QualityConfig YAML; default: the built-in defaults)")
    cal.add_argument("--json", action="store_true", help="the figures as one JSON object")
    cal.set_defaults(func=_calibrate)

    tc = sub.add_parser("train-classifier", help="fit a linear text classifier (words and word pairs) on "
                                                 "positive and negative JSON lines, e.g. your own spam rule")
    tc.add_argument("--positive", action="append", required=True, help="JSON lines of the class to catch (repeatable)")
    tc.add_argument("--negative", action="append", required=True, help="JSON lines of the rest (repeatable)")
    tc.add_argument("--out", required=True, help="the model file (weight<TAB>feature lines)")
    tc.add_argument("--text-key", default="text", help="the records' text key (default: text)")
    tc.add_argument("--l2", type=float, default=1.0)
    tc.add_argument("--min-df", type=int, default=3, help="features in fewer documents are not learned")
    tc.add_argument("--steps", type=int, default=300)
    tc.set_defaults(func=_train_classifier)

    m = sub.add_parser("merge", help="concatenate .bin/.idx shards (built with one tokenizer)")
    m.add_argument("output")
    m.add_argument("inputs", nargs="+")
    m.set_defaults(func=_merge)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run(PROG, lambda: args.func(args))
