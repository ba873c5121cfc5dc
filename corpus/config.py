"""Transitional: the list-of-mappings loader of the mix and pipeline configs (the rest moved to common.config)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from common.config import from_dict, load_yaml
from common.errors import ConfigError

T = TypeVar("T")

__all__ = ["ConfigError", "load_config_with_list", "load_yaml"]


def load_config_with_list(cls: type[T], path: str | os.PathLike, key: str, item_cls: type,
                          overrides: Mapping[str, Any] | None = None, item_keys: str = "") -> T:
    values = load_yaml(path)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    raw = values.get(key)
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        hint = f" ({item_keys})" if item_keys else ""
        raise ConfigError(f"{path}: key {key!r} must be a list of mappings{hint}")
    values[key] = [from_dict(item_cls, item, f"{path}: {key}[{i}]") for i, item in enumerate(raw)]
    return from_dict(cls, values, str(path))
