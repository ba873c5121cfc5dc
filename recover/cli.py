"""``python -m recover``: make-diff, apply (alias ``recover`` with CaMA's flags), verify, convert-meta, merge-lora.

Each command builds its typed config (``--config FILE`` and/or flags; flags win) and calls the same
function the tests and ``hpc.submit`` call. The summary is printed as JSON on stdout. A checksum or
sum mismatch exits with status 1, any other bad input or config with status 2, one line on stderr.
SIGTERM (``scancel``) and SIGUSR2 (Slurm's time-limit warning, forwarded by slurm/lib.sh) become an
exception, so the temporary output is removed before the job is requeued.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from common.config import ConfigError, load_config
from recover.errors import IntegrityError, RecoverError


def _apply_args(p: argparse.ArgumentParser, cama: bool = False) -> None:
    if cama:  # weight_diff.py's spelling
        p.add_argument("--path_raw", dest="raw")
        p.add_argument("--path_diff", dest="diff")
        p.add_argument("--path_tuned", dest="out")
    else:
        p.add_argument("--raw", help="base model directory (LLaMA, HF layout)")
        p.add_argument("--diff", help="the published diff directory")
        p.add_argument("--out", help="output directory for the restored model")
    p.add_argument("--config", help="YAML ApplyConfig (flags override it)")
    p.add_argument("--dtype", help="output dtype (default: the manifest's tuned dtype, else the raw model's)")
    p.add_argument("--force", action="store_true", default=None, help="replace an existing output")
    p.add_argument("--manifest", help="manifest path (default: DIFF/recover-manifest.json when present)")
    p.add_argument("--require-manifest", action="store_true", default=None)
    p.add_argument("--check-raw", choices=("inline", "first", "off"))
    p.add_argument("--check-sum", type=float, metavar="VALUE", help="CaMA's check: expected sum of all parameters")
    p.add_argument("--check-sum-tol", type=float, metavar="TOL")
    p.add_argument("--no-check-tokenizer", dest="check_tokenizer", action="store_false", default=None)
    p.add_argument("--max-shard-size")
    p.add_argument("--no-fsync", dest="fsync", action="store_false", default=None,
                   help="do not fsync each output shard before the final rename")
    p.add_argument("--merge-lora", help="LoRA adapter to merge into the restored model afterwards")
    p.add_argument("--merge-out", help="output directory of the merged model")
    p.add_argument("--device")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config of the command (flags override it)")
    p.add_argument("--force", action="store_true", default=None, help="replace an existing output")
    p.add_argument("--max-shard-size")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recover", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-diff", help="diff = tuned - raw, with a checksum manifest")
    p.add_argument("--raw")
    p.add_argument("--tuned")
    p.add_argument("--out")
    p.add_argument("--diff-dtype", choices=("float32", "float64"))
    _common(p)

    _apply_args(sub.add_parser("apply", help="restore the tuned model: raw + diff"))
    _apply_args(sub.add_parser("recover", help="the same as apply, with CaMA's --path_raw/--path_diff/--path_tuned"),
                cama=True)

    p = sub.add_parser("verify", help="check a checkpoint against a manifest")
    p.add_argument("dir")
    p.add_argument("--manifest", required=True)
    p.add_argument("--role", choices=("raw", "diff", "tuned"), help="which checksums it must match (default: any)")

    p = sub.add_parser("convert-meta", help="Meta consolidated.*.pth + params.json → HF LLaMA")
    p.add_argument("--input")
    p.add_argument("--size", help="7B, 13B, 30B, 65B (checked against params.json), or any")
    p.add_argument("--out")
    p.add_argument("--dtype")
    p.add_argument("--max-position-embeddings", type=int)
    _common(p)

    p = sub.add_parser("merge-lora", help="merge a LoRA adapter into a full checkpoint")
    p.add_argument("--base")
    p.add_argument("--lora")
    p.add_argument("--out")
    p.add_argument("--dtype")
    p.add_argument("--device")
    p.add_argument("--no-verify", dest="verify", action="store_false", default=None)
    _common(p)
    return parser


def _overrides(args: argparse.Namespace, *skip: str) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("command", "config", *skip) and v is not None}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.command in ("apply", "recover"):
        from recover.apply import ApplyConfig, main

        return main(load_config(ApplyConfig, args.config, _overrides(args)))
    if args.command == "make-diff":
        from recover.diff import MakeDiffConfig, make_diff

        return make_diff(load_config(MakeDiffConfig, args.config, _overrides(args)))
    if args.command == "verify":
        from recover.manifest import verify_checkpoint

        return {"command": "verify", **verify_checkpoint(args.dir, args.manifest, args.role)}
    if args.command == "convert-meta":
        from recover.meta import ConvertMetaConfig, convert_meta

        return convert_meta(load_config(ConvertMetaConfig, args.config, _overrides(args)))
    if args.command == "merge-lora":
        from recover.lora import MergeLoraConfig, merge_lora

        return merge_lora(load_config(MergeLoraConfig, args.config, _overrides(args)))
    raise AssertionError(args.command)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = {s: signal.signal(s, _on_sigterm) for s in (signal.SIGTERM, signal.SIGUSR2)}
    try:
        summary = run(args)
    except IntegrityError as exc:
        print(f"recover {args.command}: integrity check failed: {exc}", file=sys.stderr)
        return 1
    except (RecoverError, ConfigError) as exc:
        print(f"recover {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(json.dumps(summary, indent=2))
    return 0
