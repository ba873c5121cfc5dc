"""The command lines of generation and information extraction, and the one place that joins them.

    python -m train.generate --base DIR [--lora DIR] [--load-8bit] [--interactive | --chat [--system TEXT]]
                             [--cases FILE --out FILE] [--run-ie-cases FILE [--out FILE]]
    python -m train.ie --task ner|re|ee --input FILE --lang zh|en --out FILE.jsonl [--schema FILE] [--seed N]
    python -m train.ie_eval --cases GOLD --outputs OUT [--json]

(``python -m train.web`` takes the model options of :func:`add_model_args` too.) The libraries —
:mod:`train.generate` and :mod:`train.ie` — know nothing of each other; :func:`run_ie_cases` here
generates the answers of IE cases and scores them. Bad input fails before generation with one line
``PROG: error: MESSAGE`` and exit status 2 (:func:`common.cli.run`); a bad case line is reported as
``file:line: reason`` and skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from common.cli import Parser, run
from common.jsonl import write_jsonl
from train.generate import FINISH, MODES, Case, Decoding, GenerateError, Generator, interactive, load_model, read_cases, \
    run_cases
from train.ie import (LANGS, TASKS, IECase, Report, build, format_table, instruction, load_ie_templates, load_schema,
                      read_ie_cases, read_outputs, score_outputs)

# ---------------------------------------------------------------------------------------------
# Generation


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options shared with ``python -m train.web``."""
    p.add_argument("--base", required=True, help="Hugging Face checkpoint folder (config.json, weights, tokenizer)")
    p.add_argument("--lora", help="peft LoRA adapter folder (adapter_config.json + adapter_model.safetensors)")
    p.add_argument("--load-8bit", action="store_true", help="load the base in 8 bits (bitsandbytes, CUDA only)")
    p.add_argument("--device", default="auto", help="auto (cuda if visible, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="auto: bf16/fp16 on GPU, fp32 on CPU")
    p.add_argument("--ignore-base-name", action="store_true",
                   help="load an adapter recorded for another base (another fingerprint in its base_model.json, "
                        "or for older adapters another base_model_name_or_path); shapes are still checked")
    p.add_argument("--template", default="alpaca", help="prompt template name or JSON file (default alpaca)")
    p.add_argument("--chat-template", metavar="NAME|FILE",
                   help="chat mode: a chat template of train/templates/*.jinja or a Jinja file (default: the one "
                        "saved with the adapter, else with the base, else alpaca_chat)")
    p.add_argument("--mode", default="auto", choices=MODES,
                   help="interactive/web prompts: instruction (template) or continuation; auto: instruction "
                        "with --lora, else continuation")
    d = Decoding()
    p.add_argument("--num-beams", type=int, default=d.num_beams)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--top-k", type=int, default=d.top_k)
    p.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--sample", action="store_true",
                   help="sample (temperature, top-p, top-k apply); without it, beam search / greedy as CaMA ran")


def decoding_from_args(args: argparse.Namespace) -> Decoding:
    return Decoding(num_beams=args.num_beams, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                    repetition_penalty=args.repetition_penalty, max_new_tokens=args.max_new_tokens,
                    do_sample=args.sample)


def say(text: str) -> None:
    """A progress line on stderr (plain: the log may be a file)."""
    print(text, file=sys.stderr, flush=True)


def generator_from_args(args: argparse.Namespace) -> Generator:
    from train.chat import check_chat_template, load_chat_template
    from train.prompts import load_template

    template = load_template(args.template)
    chat = load_chat_template(args.chat_template) if getattr(args, "chat_template", None) else None
    if not sys.stderr.isatty():  # transformers' loading bars would fill a log file with carriage returns
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    started = time.perf_counter()
    say(f"loading model {args.base}" + (f" with adapter {args.lora}" if args.lora else "") + " …")
    model, tokenizer = load_model(args.base, args.lora, args.load_8bit, args.device, args.dtype, args.ignore_base_name)
    say(f"model loaded in {time.perf_counter() - started:.1f} s on {next(model.parameters()).device}")
    mode = args.mode if args.mode != "auto" else ("instruction" if args.lora else "continuation")
    if chat is not None:
        check_chat_template(tokenizer, *chat)
    return Generator(model, tokenizer, template, mode, chat_template=chat[0] if chat else None)


def run_ie_cases(generator: Generator, cases: Sequence[IECase], decoding: Decoding, batch_size: int = 8,
                 progress: bool = False, log: Callable[[str], None] | None = None) -> Report:
    """Generate each IE case's answer (the alpaca template around the case's instruction and text)
    and score it (``progress``, ``log``: as :func:`train.generate.run_cases`)."""
    templates = {lang: load_ie_templates(lang) for lang in {c.lang for c in cases}}
    gen_cases = [Case(c.where, {"id": c.id, "instruction": instruction(c, templates[c.lang]), "input": c.text},
                      "instruction") for c in cases]
    results = run_cases(generator, gen_cases, decoding, batch_size, progress, log)
    outputs = {r["id"]: r["output"] for r in results}
    extra = {r["id"]: {"finish": r["finish"], "new_tokens": r["new_tokens"]} for r in results}
    return score_outputs(cases, outputs, extra)


def generate_parser() -> Parser:
    p = Parser(prog="train.generate",
               description="Generation from a checkpoint: continuation, instructions, case files, IE cases.")
    add_model_args(p)
    what = p.add_argument_group("what to run (one of)")
    what.add_argument("--interactive", action="store_true", help="read prompts from stdin, stream the answers")
    what.add_argument("--chat", action="store_true",
                      help="a multi-turn conversation on stdin: one message a line, the history formatted with the "
                           "chat template (see --chat-template); /reset starts a new one")
    what.add_argument("--cases", help="JSON lines: {\"prompt\"} or {\"instruction\", \"input\"?}, optional \"id\"")
    what.add_argument("--run-ie-cases", metavar="FILE", help="IE cases with gold answers: print P/R/F1 per task")
    p.add_argument("--out", help="output JSON lines (required with --cases; optional with --run-ie-cases)")
    p.add_argument("--batch-size", type=int, default=8, help="cases generated together (default 8)")
    p.add_argument("--no-stream", action="store_true", help="interactive: print each answer when complete")
    p.add_argument("--system", help="--chat: a system message opening the conversation")
    return p


def _progress() -> dict[str, Any]:
    """A bar on a terminal; plain lines where stderr is a file (a Slurm log), which a bar would fill with
    carriage returns and only show at the end."""
    return {"progress": True} if sys.stderr.isatty() else {"log": say}


def _generate(args: argparse.Namespace) -> int:
    decoding = decoding_from_args(args)
    if args.batch_size < 1:
        raise GenerateError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    if args.cases:
        cases, bad = read_cases(args.cases)   # before the model: a bad file fails fast
        for line in bad:
            print(f"skipped {line}", file=sys.stderr)
        generator = generator_from_args(args)
        results = run_cases(generator, cases, decoding, args.batch_size, **_progress())
        write_jsonl(results, args.out)
        counts = {f: sum(r["finish"] == f for r in results) for f in FINISH}
        print(f"{len(results)} cases → {args.out} (eos {counts['eos']}, length {counts['length']}); "
              f"{len(bad)} bad line(s) skipped", file=sys.stderr)
        return 0
    if args.run_ie_cases:
        ie_cases, bad = read_ie_cases(args.run_ie_cases)
        for line in bad:
            print(f"skipped {line}", file=sys.stderr)
        generator = generator_from_args(args)
        report = run_ie_cases(generator, ie_cases, decoding, args.batch_size, **_progress())
        print(format_table(report.scores))
        if args.out:
            write_jsonl(report.records, args.out)
        return 0
    generator = generator_from_args(args)
    if args.chat:
        interactive(generator, decoding, "chat", stream=not args.no_stream, system=args.system)
    else:
        interactive(generator, decoding, generator.default_mode, stream=not args.no_stream)
    return 0


def generate_main(argv: Sequence[str] | None = None) -> int:
    p = generate_parser()
    args = p.parse_args(argv)
    chosen = [x for x in ("interactive", "chat", "cases", "run_ie_cases") if getattr(args, x)]
    if len(chosen) != 1:
        p.error("choose exactly one of --interactive, --chat, --cases FILE, --run-ie-cases FILE")
    if args.system and not args.chat:
        p.error("--system goes with --chat")
    if args.cases and not args.out:
        p.error("--cases needs --out FILE")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run("train.generate", lambda: _generate(args))


# ---------------------------------------------------------------------------------------------
# Information extraction


def ie_main(argv: Sequence[str] | None = None) -> int:
    """``python -m train.ie``: NER / relation / event data → instruction records."""
    p = Parser(prog="train.ie", description="Turn NER / relation / event data into instruction records.")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--input", required=True, help="BIO file (ner) or JSON lines (re, ee)")
    p.add_argument("--lang", required=True, choices=LANGS)
    p.add_argument("--out", required=True, help="output JSON lines of {instruction, input, output}")
    p.add_argument("--schema", help="JSON schema file (default: the types seen in the input)")
    p.add_argument("--seed", type=int, default=0, help="seed for the choice of instruction phrasing")
    args = p.parse_args(argv)

    def command() -> int:
        schema = load_schema(args.schema) if args.schema else None
        records, skipped, _ = build(args.task, args.input, args.lang, schema, args.seed)
        write_jsonl(records, args.out)
        print(f"{len(records)} {args.task} records written to {args.out}", file=sys.stderr)
        if skipped:
            reasons = ", ".join(f"{k}: {v}" for k, v in skipped.most_common())
            print(f"skipped {sum(skipped.values())} ({reasons}); first ones:", file=sys.stderr)
            for example in skipped.examples:
                print(f"  {example}", file=sys.stderr)
        return 0

    return run("train.ie", command)


def ie_eval_main(argv: Sequence[str] | None = None) -> int:
    """``python -m train.ie_eval``: score answers already generated against gold, P/R/F1 per task."""
    p = Parser(prog="train.ie_eval", description="Score IE answers already generated against gold: P/R/F1 per task.")
    p.add_argument("--cases", required=True, help="IE case file with gold answers (JSON lines)")
    p.add_argument("--outputs", required=True, help="JSON lines {\"id\", \"output\"}")
    p.add_argument("--json", action="store_true", help="print the scores as JSON instead of a table")
    args = p.parse_args(argv)

    def command() -> int:
        cases, bad = read_ie_cases(args.cases)
        outputs = read_outputs(args.outputs)
        for line in bad:
            print(f"skipped {line}", file=sys.stderr)
        missing = [c.id for c in cases if c.id not in outputs]
        if missing:
            print(f"warning: {len(missing)} case(s) without an output, scored as empty: {', '.join(missing[:5])}",
                  file=sys.stderr)
        report = score_outputs(cases, outputs)
        if args.json:
            print(json.dumps({k: c.as_dict() for k, c in report.scores.items()}, indent=2))
        else:
            print(format_table(report.scores))
        return 0

    return run("train.ie_eval", command)


