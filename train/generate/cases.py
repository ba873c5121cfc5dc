"""Case files (JSON lines of ``{"prompt"}`` or ``{"instruction", "input"?}``, optional ``"id"``) and
generating their answers in batches of similar length. A bad line is ``file:line: reason``, skipped."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from train.generate.decoding import Decoding, GenerateError
from train.generate.generator import Generator

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class Case:
    where: str           # file:line
    record: dict[str, Any]
    mode: str            # instruction | continuation

    @property
    def id(self) -> Any:
        return self.record.get("id")


def _check_case(obj: Any) -> tuple[str | None, str]:
    """The case's mode, or None and why it is refused."""
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    if "prompt" in obj and "instruction" in obj:
        return None, "both 'prompt' and 'instruction' (one case is either a continuation or an instruction)"
    key = "prompt" if "prompt" in obj else "instruction" if "instruction" in obj else None
    if key is None:
        return None, "neither 'prompt' (continuation) nor 'instruction'"
    if not isinstance(obj[key], str) or not obj[key].strip():
        return None, f"'{key}' must be a non-empty string"
    if "input" in obj and obj["input"] is not None and not isinstance(obj["input"], str):
        return None, "'input' must be a string"
    if key == "prompt" and obj.get("input"):
        return None, "'input' goes with 'instruction', not with 'prompt'"
    if "id" in obj and not isinstance(obj["id"], (str, int)):
        return None, "'id' must be a string or an integer"
    return ("continuation" if key == "prompt" else "instruction"), ""


def read_cases(path: PathLike) -> tuple[list[Case], list[str]]:
    """Valid cases and the ``file:line: reason`` of each bad line (skipped). Raises GenerateError
    for a missing file or one without a valid case."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise GenerateError(f"case file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GenerateError(f"{path}: not readable UTF-8 text ({exc})") from exc
    cases, bad = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"{where}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        mode, reason = _check_case(obj)
        if mode is None:
            bad.append(f"{where}: {reason}")
            continue
        cases.append(Case(where, obj, mode))
    if not cases:
        detail = f"; {len(bad)} bad line(s), the first: {bad[0]}" if bad else " (the file is empty)"
        raise GenerateError(f"{path}: no valid case{detail}")
    return cases, bad


def run_cases(generator: Generator, cases: Sequence[Case], decoding: Decoding, batch_size: int = 8,
              progress: bool = False) -> list[dict[str, Any]]:
    """Each case's record with ``output``, ``finish`` and ``new_tokens`` added, in file order.

    Cases are generated in batches of similar prompt length (less padding); batched beam search
    with left padding may differ in the last digits from one-by-one generation."""
    if batch_size < 1:
        raise GenerateError(f"batch_size must be ≥ 1, got {batch_size}")
    prompts = [generator.prompt(c.record.get("instruction"), c.record.get("input"), c.record.get("prompt"))
               for c in cases]
    lengths = [len(generator.tokenizer(p)["input_ids"]) for p in prompts]
    order = sorted(range(len(cases)), key=lambda i: lengths[i])
    results: list[dict[str, Any] | None] = [None] * len(cases)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cases), unit="case", file=sys.stderr)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        outputs = generator.generate([prompts[i] for i in chunk], decoding)
        for i, out in zip(chunk, outputs):
            results[i] = {**cases[i].record, "mode": cases[i].mode, "output": out.text, "finish": out.finish,
                          "new_tokens": out.new_tokens}
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return [r for r in results if r is not None]
