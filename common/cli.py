"""The frame every command line of the suite shares.

- :class:`Parser`: argparse without abbreviations (``--out`` must not quietly become ``--output``), also
  for every sub-command.
- :func:`add_config_options`: ``--config FILE``, ``--set KEY=VALUE`` (repeatable, nested keys with dots)
  and ``--print-config`` (the resolved config, every key with its default, then exit).
- :func:`run`: call the command once; a :class:`~common.errors.UserError` (or an OSError: a missing or
  unreadable file, which names itself) becomes one line ``PROG: error: MESSAGE`` and exit status 2,
  Ctrl-C exit 130; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from common.config import format_config, load_config
from common.errors import UserError

T = TypeVar("T")


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def add_config_options(p: argparse.ArgumentParser, required: bool = True,
                       help: str = "YAML config of the job") -> None:  # noqa: A002 - argparse's own word
    p.add_argument("--config", required=required, metavar="FILE", help=help)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set",
                   help="override one config key (a.b=c for nested keys; the value is YAML); repeatable")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (every key, with its default where it differs) and exit")


def config_from_args(cls: type[T], args: argparse.Namespace, overrides: Mapping[str, Any] | None = None,
                     values: Mapping[str, Any] | None = None) -> T:
    """The config ``--config``, ``overrides`` (flag values; None = not given) and ``--set`` describe."""
    return load_config(cls, getattr(args, "config", None), overrides, getattr(args, "set", ()) or (), values)


def print_config(cfg: Any) -> int:
    print(format_config(cfg))
    return 0


def run(prog: str, command: Callable[[], int | None],
        user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``command`` and turn a user's error into one line on stderr and exit status 2."""
    try:
        rc = command()
    except (UserError, OSError, *user_errors) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0 if rc is None else int(rc)


def main_of(prog: str, build: Callable[[], argparse.ArgumentParser],
            user_errors: tuple[type[BaseException], ...] = ()) -> Callable[[Sequence[str] | None], int]:
    """``main(argv)`` for a parser whose sub-commands set ``func(args) -> int``."""
    def main(argv: Sequence[str] | None = None) -> int:
        args = build().parse_args(argv)
        return run(prog, lambda: args.func(args), user_errors)
    return main
