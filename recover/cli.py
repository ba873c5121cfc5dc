"""``python -m recover``: make-diff, apply (alias ``recover`` with CaMA's flags), verify, convert-meta, merge-lora,
download.

Each command builds its typed config (``--config FILE``, then flags, then ``--set KEY=VALUE``; the later
wins; ``--print-config`` shows the result and exits) and calls the same function the tests and
``hpc.submit`` call. The summary is printed as JSON on stdout. A checksum or sum mismatch exits with
status 1 (``recover: integrity check failed: …``), any other bad input or config with status 2
(``recover: error: …``), one line on stderr.
SIGTERM (``scancel``) and SIGUSR2 (Slurm's time-limit warning, forwarded by slurm/lib.sh) become an
exception, so the temporary output is removed before the job is requeued.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

from common.cli import Parser, add_config_options, config_from_args, print_config, run
from recover.config import ApplyConfig, ConvertMetaConfig, DownloadConfig, MakeDiffConfig, MergeLoraConfig
from recover.errors import IntegrityError

PROG = "recover"


def _apply_args(p: argparse.ArgumentParser, cama: bool = False) -> None:
    if cama:  # weight_diff.py's spelling
        p.add_argument("--path_raw", dest="raw")
        p.add_argument("--path_diff", dest="diff")
        p.add_argument("--path_tuned", dest="out")
    else:
        p.add_argument("--raw", help="base model directory (LLaMA, HF layout)")
        p.add_argument("--diff", help="the published diff directory")
        p.add_argument("--out", help="output directory for the restored model")
    add_config_options(p, required=False, help="YAML ApplyConfig (flags and --set override it)")
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
    p.set_defaults(func=_apply)


def _common(p: argparse.ArgumentParser) -> None:
    add_config_options(p, required=False, help="YAML config of the command (flags and --set override it)")
    p.add_argument("--force", action="store_true", default=None, help="replace an existing output")
    p.add_argument("--max-shard-size")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m recover", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-diff", help="diff = tuned - raw, with a checksum manifest")
    p.add_argument("--raw")
    p.add_argument("--tuned")
    p.add_argument("--out")
    p.add_argument("--diff-dtype", choices=("float32", "float64"))
    _common(p)
    p.set_defaults(func=_make_diff)

    _apply_args(sub.add_parser("apply", help="restore the tuned model: raw + diff"))
    _apply_args(sub.add_parser("recover", help="the same as apply, with CaMA's --path_raw/--path_diff/--path_tuned"),
                cama=True)

    p = sub.add_parser("verify", help="check a checkpoint against a manifest")
    p.add_argument("dir")
    p.add_argument("--manifest", required=True)
    p.add_argument("--role", choices=("raw", "diff", "tuned"), help="which checksums it must match (default: any)")
    p.set_defaults(func=_verify)

    p = sub.add_parser("convert-meta", help="Meta consolidated.*.pth + params.json → HF LLaMA")
    p.add_argument("--input")
    p.add_argument("--size", help="7B, 13B, 30B, 65B (checked against params.json), or any")
    p.add_argument("--out")
    p.add_argument("--dtype")
    p.add_argument("--max-position-embeddings", type=int)
    _common(p)
    p.set_defaults(func=_convert_meta)

    p = sub.add_parser("merge-lora", help="merge a LoRA adapter into a full checkpoint")
    p.add_argument("--base")
    p.add_argument("--lora")
    p.add_argument("--out")
    p.add_argument("--dtype")
    p.add_argument("--device")
    p.add_argument("--no-verify", dest="verify", action="store_false", default=None)
    _common(p)
    p.set_defaults(func=_merge_lora)

    p = sub.add_parser("download", help="fetch published weights from the Hugging Face Hub (resumable), then verify")
    p.add_argument("--repo", help="the Hub repo id, OWNER/NAME")
    p.add_argument("--out", help="local folder (a rerun resumes)")
    p.add_argument("--only", choices=("diff", "lora"), help="only the files of a diff/checkpoint, or of a LoRA adapter")
    p.add_argument("--revision", help="branch, tag or commit (default: main)")
    p.add_argument("--no-verify", dest="verify", action="store_false", default=None,
                   help="skip the checks after the download")
    add_config_options(p, required=False, help="YAML DownloadConfig (flags and --set override it)")
    p.set_defaults(func=_download)
    return parser


# Namespace entries that are not config keys.
_NOT_CONFIG = ("command", "func", "config", "set", "print_config")

Summary = dict[str, Any] | None  # None: nothing to print (the config was printed instead)


def _configured(cls: type, args: argparse.Namespace, module: str, function: str) -> Summary:
    """The command's typed config from file, flags and --set — checked before the command's module (and
    torch with it) is imported; printed with --print-config, else ``module.function(cfg)``."""
    flags = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}
    cfg = config_from_args(cls, args, flags)
    if args.print_config:
        print_config(cfg)
        return None
    return getattr(importlib.import_module(module), function)(cfg)


def _apply(args: argparse.Namespace) -> Summary:
    return _configured(ApplyConfig, args, "recover.apply", "main")


def _make_diff(args: argparse.Namespace) -> Summary:
    return _configured(MakeDiffConfig, args, "recover.diff", "make_diff")


def _verify(args: argparse.Namespace) -> Summary:
    from recover.manifest import verify_checkpoint

    return {"command": "verify", **verify_checkpoint(args.dir, args.manifest, args.role)}


def _convert_meta(args: argparse.Namespace) -> Summary:
    return _configured(ConvertMetaConfig, args, "recover.meta", "convert_meta")


def _merge_lora(args: argparse.Namespace) -> Summary:
    return _configured(MergeLoraConfig, args, "recover.lora", "merge_lora")


def _download(args: argparse.Namespace) -> Summary:
    return _configured(DownloadConfig, args, "recover.download", "download")


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _command(args: argparse.Namespace) -> int:
    previous = {s: signal.signal(s, _on_sigterm) for s in (signal.SIGTERM, signal.SIGUSR2)}
    try:
        summary = args.func(args)
    except IntegrityError as exc:
        # Not "error": the inputs are readable and consistent, but not the ones the manifest vouches for.
        print(f"{PROG}: integrity check failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if summary is not None:
        print(json.dumps(summary, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(PROG, lambda: _command(args))
