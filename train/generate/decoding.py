"""Decoding settings (CaMA's defaults) and the error of the generation side; no torch.

``hpc`` checks a chain's ``generate:`` section with :meth:`Decoding.from_dict` on the login node, so
this module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from common.config import close_match
from common.errors import UserError

MODES = ("auto", "instruction", "continuation")
FINISH = ("eos", "length", "stopped")


class GenerateError(UserError, ValueError):
    """Generation cannot start: a bad model folder, adapter, decoding value or case file."""


@dataclass
class Decoding:
    """Decoding settings; CaMA's defaults. Out-of-range values raise GenerateError naming the key."""

    num_beams: int = 2
    temperature: float = 0.2
    top_p: float = 0.75
    top_k: int = 40
    repetition_penalty: float = 1.3
    max_new_tokens: int = 512
    do_sample: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": float, "bool": bool}[f.type if isinstance(f.type, str) else f.type.__name__]
            # bool is an int in Python; neither belongs where the other is expected.
            if kind is bool:
                ok = isinstance(value, bool)
            elif kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if ok:
                    setattr(self, f.name, float(value))
            if not ok:
                what = {int: "an integer", float: "a number", bool: "true or false"}[kind]
                raise GenerateError(f"{f.name} must be {what}, got {value!r}")
        checks = (
            ("num_beams", self.num_beams >= 1, "≥ 1"),
            ("temperature", self.temperature > 0, "> 0"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("top_k", self.top_k >= 0, "≥ 0 (0 turns top-k off)"),
            ("repetition_penalty", self.repetition_penalty > 0, "> 0 (1 means no penalty)"),
            ("max_new_tokens", self.max_new_tokens >= 1, "≥ 1"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise GenerateError(f"{name} must be {rule}, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "decoding") -> "Decoding":
        """From a mapping (the web page's request); unknown keys are refused by name."""
        known = sorted(f.name for f in fields(cls))
        unknown = sorted(set(data) - set(known))
        if unknown:
            hint = close_match(unknown[0], known)
            raise GenerateError(f"{where}: unknown decoding key {unknown[0]!r}{hint} (known: {', '.join(known)})")
        return cls(**dict(data))

    def generation_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_beams": self.num_beams, "repetition_penalty": self.repetition_penalty,
                                  "max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kwargs
