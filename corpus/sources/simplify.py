"""Traditional → Simplified Chinese with OpenCC, by profile.

One setting, ``to_simplified``, names the OpenCC profile a source needs. Profiles differ in more than
characters: ``tw2s`` also maps Taiwan's variant characters and ``tw2sp`` Taiwan's *phrases*
(滑鼠 → 鼠标, 軟體 → 软件), ``hk2s`` Hong Kong's variants; plain ``t2s`` knows none of them and leaves
滑鼠 as 滑鼠. So a source of Taiwan or Hong Kong text should say which it is.

Accepted values: a profile name below, ``true`` (= ``t2s``, the only choice before profiles existed),
``false`` or ``null`` (off). Anything else is a :class:`~common.errors.ConfigError` listing the names.

The converter is OpenCC itself (the maintained, phrase-aware converter — not a character table); its
profiles are checked against OpenCC's own test cases in ``tests/test_opencc.py``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from common.errors import ConfigError

# OpenCC's profiles whose output is Simplified Chinese (mainland usage), with what each reads.
PROFILES: dict[str, str] = {
    "t2s": "Traditional Chinese (OpenCC standard) → Simplified",
    "tw2s": "Taiwan Traditional → Simplified (variant characters)",
    "tw2sp": "Taiwan Traditional → Simplified, with mainland phrases (滑鼠 → 鼠标)",
    "hk2s": "Hong Kong Traditional → Simplified (variant characters)",
    "hk2sp": "Hong Kong Traditional → Simplified, with mainland phrases",
}


def profile(value: object, where: str = "key 'to_simplified'") -> str | None:
    """The OpenCC profile a ``to_simplified`` value names, None for off; a bad value raises ConfigError."""
    if value is None or value is False:
        return None
    if value is True:
        return "t2s"
    if isinstance(value, str) and value.strip().lower() in PROFILES:
        return value.strip().lower()
    from common.config import close_match

    raise ConfigError(f"{where}: {value!r} is not an OpenCC profile to Simplified Chinese{close_match(str(value), PROFILES)}"
                      f" (known: {', '.join(PROFILES)}; true = t2s, false or null = off)")


@lru_cache(maxsize=None)
def converter(name: str) -> Callable[[str], str]:
    """OpenCC's ``convert`` for profile ``name``, built once per process (its dictionaries take ~10 ms)."""
    import opencc  # imported lazily: only zh sources that convert need it

    if name not in PROFILES:
        raise ConfigError(f"unknown OpenCC profile {name!r} (known: {', '.join(PROFILES)})")
    return opencc.OpenCC(name).convert
