"""Typed configs from YAML: unknown keys and wrong types fail at once, naming the key and the file.

Entry points take a dataclass; the CLI, the Slurm launchers and the tests all build it through
:func:`load_config`, so a bad config is caught before any work (or any job) starts.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or value is wrong; the message names the file and the key."""


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
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
) -> T:
    """Build ``cls`` from a YAML file, then apply ``overrides`` (values that are None are ignored)."""
    where = str(path) if path is not None else "<arguments>"
    values = load_yaml(path) if path is not None else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    return from_dict(cls, values, where)


def load_config_with_list(
    cls: type[T],
    path: str | os.PathLike,
    key: str,
    item_cls: type,
    overrides: Mapping[str, Any] | None = None,
    item_keys: str = "",
) -> T:
    """Like :func:`load_config` for a config whose ``key`` is a list of ``item_cls`` mappings.

    Errors in an item name it by position: ``mix.yaml: sources[2]: unknown key 'sampels'``.
    """
    values = load_yaml(path)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    raw = values.get(key)
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        hint = f" ({item_keys})" if item_keys else ""
        raise ConfigError(f"{path}: key {key!r} must be a list of mappings{hint}")
    values[key] = [from_dict(item_cls, item, f"{path}: {key}[{i}]") for i, item in enumerate(raw)]
    return from_dict(cls, values, str(path))


def from_dict(cls: type[T], values: Mapping[str, Any], where: str = "<config>") -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(fields))})")
    kwargs = {name: _coerce(hints[name], value, f"{where}: key {name!r}") for name, value in values.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
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
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            # A single string where a list is expected is the common short form.
            if isinstance(value, str):
                value = [value]
            else:
                raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, os.PathLike)):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value
