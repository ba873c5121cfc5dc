"""Typed configs from YAML: dataclasses validated all the way down, before any work starts.

Every entry point takes a dataclass; the CLI, ``hpc.submit`` and the tests all build it through
:func:`load_config`, so one set of rules holds everywhere:

- ``yaml.safe_load`` only; the top level must be a mapping.
- A field typed as a dataclass (or ``list[...]`` / ``dict[str, ...]`` of one) is checked recursively:
  an unknown key is named with its path and the closest known key
  (``pretrain.yaml: model_config: unknown key 'hiden_size' (did you mean 'hidden_size'?; known keys: …)``).
- Scalars are checked against their annotation (``int``, ``float``, ``bool``, ``str``, ``Literal[...]``,
  unions, ``None``); ``__post_init__`` errors are prefixed with where the mapping came from.
- ``--set a.b=c`` overrides (:func:`apply_sets`) are checked against the dataclass before they are applied,
  so a typo is blamed on the ``--set``, not on the file.

:func:`to_dict` turns a config back into plain data (``from_dict(cls, to_dict(cfg)) == cfg``): that is how
``hpc`` freezes the resolved config of a job at submission, and what :func:`format_config`
(``--print-config``) prints with each key's default.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from common.errors import ConfigError

T = TypeVar("T")

_MISSING = dataclasses.MISSING


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping at the top of a YAML file; ConfigError naming the file otherwise."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` from a YAML file (or ``values``), then flat ``overrides`` (None values are ignored,
    so argparse defaults can be passed as they are), then ``--set`` strings."""
    where = str(path) if path is not None else "<arguments>"
    data: dict[str, Any] = dict(values or {})
    if path is not None:
        data.update(load_yaml(path))
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    data = apply_sets(cls, data, sets)
    return from_dict(cls, data, where)


def close_match(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    best = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {best[0]!r}?)" if best else ""


def unknown_key(where: str, name: str, known: Iterable[str]) -> ConfigError:
    known = sorted(known)
    hint = close_match(name, known)
    hint = f"{hint[:-1]}; known keys: " if hint else " (known keys: "
    return ConfigError(f"{where}: unknown key {name!r}{hint}{', '.join(known)})")


def from_dict(cls: type[T], values: Mapping[str, Any], where: str = "<config>") -> T:
    """``cls(**values)`` with every key and value checked, recursively; errors start with ``where``."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    for name in values:
        if name not in fields:
            raise unknown_key(where, str(name), fields)
    kwargs = {name: _coerce(hints[name], value, where, name) for name, value in values.items()}
    missing = [name for name, f in fields.items()
               if name not in kwargs and f.default is _MISSING and f.default_factory is _MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(where) else f"{where}: {text}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _join(where: str, name: str) -> str:
    """``file: a.b`` for nested mappings: the file stays in front, the key path grows."""
    head, sep, tail = where.rpartition(": ")
    if sep and tail and not tail.startswith("key ") and " " not in tail:
        return f"{head}: {tail}.{name}"
    return f"{where}: {name}"


def _coerce(tp: Any, value: Any, where: str, name: str) -> Any:
    """``value`` checked against annotation ``tp``; ``name`` is the key (or ``key[i]``) it sits under."""
    key = f"{where}: key {name!r}"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: unexpected value {value!r}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}"
                          f"{close_match(str(value), map(str, choices))}")
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if isinstance(value, str):
            value = [value]  # a single string where a list is expected is the common short form
        elif not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return [_coerce(item, v, where, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) or tp is dict:
        args = typing.get_args(tp)
        item = args[1] if len(args) == 2 else Any
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return {str(k): _coerce(item, v, _join(where, name), str(k)) for k, v in value.items()}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, _join(where, name))
    if tp is Any or tp is object:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads 3e-4 and 5e5 as strings: a number written the usual way is a number.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, os.PathLike)):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


# --- --set overrides -----------------------------------------------------------------------------

def parse_set(text: str) -> tuple[list[str | int], Any]:
    """``a.b[0].c=VALUE`` → (['a', 'b', 0, 'c'], VALUE parsed as YAML: ``3``, ``true``, ``[a, b]``, ``null``)."""
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE (for example --set model_config.hidden_size=64)")
    path: list[str | int] = []
    for part in key.replace("[", ".[").split("."):
        if part.startswith("[") and part.endswith("]") and part[1:-1].isdigit():
            path.append(int(part[1:-1]))
        elif part and not part.startswith("["):
            path.append(part)
        else:
            raise ConfigError(f"--set {text!r}: {key!r} is not a key path like a.b or a.b[0].c")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc})") from None
    return path, value


def _structured(tp: Any, step: str | int) -> Any:
    """The one member of a union that a key (str) or an index (int) can step into: ``ModelConfig`` in
    ``ModelConfig | str | None``; None when there is none or more than one."""
    def fits(a: Any) -> bool:
        origin = typing.get_origin(a)
        if isinstance(step, int):
            return origin in (list, tuple)
        return (dataclasses.is_dataclass(a) and isinstance(a, type)) or origin in (dict, Mapping) or a is dict
    members = [a for a in typing.get_args(tp) if a is not type(None) and fits(a)]
    return members[0] if len(members) == 1 else None


def _field_type(tp: Any, step: str | int) -> Any:
    """The annotation one step below ``tp`` (a dataclass field, a list item, a dict value), or Any."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = _structured(tp, step)
        return _field_type(inner, step) if inner is not None else Any
    if isinstance(step, int):
        return typing.get_args(tp)[0] if origin in (list, tuple) and typing.get_args(tp) else Any
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return typing.get_type_hints(tp).get(step, Any)
    if origin in (dict, Mapping):
        args = typing.get_args(tp)
        return args[1] if len(args) == 2 else Any
    return Any


def _check_step(tp: Any, step: str | int, text: str, done: str) -> None:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = _structured(tp, step)
        if inner is not None:
            _check_step(inner, step, text, done)
        return
    if isinstance(step, str) and dataclasses.is_dataclass(tp) and isinstance(tp, type):
        names = [f.name for f in dataclasses.fields(tp) if f.init]
        if step not in names:
            raise unknown_key(f"--set {text}{' in ' + done if done else ''}", step, names)


def apply_sets(cls: type, values: dict[str, Any], sets: Iterable[str]) -> dict[str, Any]:
    """``values`` with each ``KEY=VALUE`` of ``sets`` applied, every step of KEY checked against ``cls``."""
    for text in sets:
        path, value = parse_set(text)
        tp: Any = cls
        node: Any = values
        done = ""
        for i, step in enumerate(path):
            _check_step(tp, step, text, done)
            last = i == len(path) - 1
            if isinstance(step, int):
                if not isinstance(node, list) or not -len(node) <= step < len(node):
                    raise ConfigError(f"--set {text}: {done or 'the config'} has no item [{step}]")
            elif not isinstance(node, dict):
                raise ConfigError(f"--set {text}: {done} is not a mapping, it cannot have a key {step!r}")
            if last:
                node[step] = value
            else:
                child = node[step] if isinstance(step, int) else node.get(step)
                if child is None:
                    child = {}
                    node[step] = child
                elif isinstance(child, dict):
                    child = dict(child)  # never write into the caller's nested mappings
                    node[step] = child
                elif isinstance(child, list):
                    child = list(child)
                    node[step] = child
                node = child
            tp = _field_type(tp, step)
            done = f"{done}[{step}]" if isinstance(step, int) else (f"{done}.{step}" if done else step)
    return values


# --- back to plain data, and printing ------------------------------------------------------------

def to_dict(cfg: Any) -> Any:
    """Plain data (dicts, lists, scalars) that :func:`from_dict` turns back into an equal config."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    if isinstance(cfg, Mapping):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, os.PathLike):
        return os.fspath(cfg)
    return cfg


def _default(f: dataclasses.Field) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return _MISSING


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(to_dict(value), default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text.removesuffix("...").rstrip()


def format_config(cfg: Any, indent: int = 0) -> str:
    """The resolved config as YAML, every key with its value, and ``# default: X`` where it differs
    (``# required`` where there is no default): what ``--print-config`` shows."""
    lines: list[str] = []
    pad = "  " * indent
    for f in dataclasses.fields(cfg):
        if not f.init:
            continue
        value = getattr(cfg, f.name)
        default = _default(f)
        note = "  # required" if default is _MISSING else (
            "" if to_dict(default) == to_dict(value) else f"  # default: {_scalar(default)}")
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:{note}")
            lines.append(format_config(value, indent + 1))
        elif isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
            lines.append(f"{pad}{f.name}:{note}")
            for item in value:
                body = format_config(item, indent + 2).splitlines()
                lines.append(f"{pad}  - {body[0].lstrip()}")
                lines.extend(body[1:])
        else:
            lines.append(f"{pad}{f.name}: {_scalar(value)}{note}")
    return "\n".join(lines)
