"""Instruction data for LoRA tuning: prompt templates, reading alpaca-style records, tokenizing.

Semantics follow alpaca-lora (``utils/prompter.py`` and ``generate_and_tokenize_prompt``):

- A :class:`Template` is a JSON file with ``description``, ``prompt_input`` (slots
  ``{instruction}`` and ``{input}``), ``prompt_no_input`` (slot ``{instruction}``) and
  ``response_split`` (``"### Response:"``), which both prompts must contain: the answer is what
  follows it. Slots are filled in one pass with a regular expression, never with ``str.format``:
  braces in user text (code, JSON) stay as they are, and a user text containing ``{input}`` is
  not substituted again.
- :func:`tokenize_example` tokenizes prompt + output truncated at ``cutoff_len``, appends EOS
  unless that truncation happened, and (unless ``train_on_inputs``) sets the labels of the prompt
  tokens to -100 so the loss only covers the answer.

Records are ``{"instruction", "input" (optional), "output"}``, as JSON lines or one JSON array
(``alpaca_data.json``), and multi-turn conversations (``{"messages": [...]}`` or ShareGPT's
``{"conversations": [...]}``, :mod:`train.chat`) may stand among them: those are rendered with the
tokenizer's chat template and trained on their assistant turns only. A bad record is skipped and
counted by reason; the first few are logged with ``file:line``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from torch.utils.data import Dataset

from common.errors import UserError
from common.jsonl import BadLine, iter_jsonl, read_json_object
from train.chat import IGNORE_INDEX, check_conversation, is_conversation, tokenize_conversations
from train.skipped import Skipped, bad_line

__all__ = [
    "IGNORE_INDEX",
    "InstructionDataError",
    "InstructionDataset",
    "Skipped",
    "Template",
    "TemplateError",
    "load_template",
    "read_instructions",
    "split",
    "tokenize_example",
    "tokenize_examples",
]

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
_SLOT = re.compile(r"\{(instruction|input)\}")


class TemplateError(UserError, ValueError):
    """A template file is missing or malformed; names the file and the key or slot."""


class InstructionDataError(UserError, ValueError):
    """An instruction file cannot be used at all (missing, empty, no valid record)."""


@dataclass(frozen=True)
class Template:
    """An alpaca-lora prompt template (see the module docstring)."""

    prompt_input: str
    prompt_no_input: str
    response_split: str
    description: str = ""
    path: str = "<template>"

    def __post_init__(self) -> None:
        for key, slots in (("prompt_input", ("{instruction}", "{input}")), ("prompt_no_input", ("{instruction}",))):
            text = getattr(self, key)
            for slot in slots:
                if slot not in text:
                    raise TemplateError(f"{self.path}: {key!r} lacks the slot {slot}")
        if not self.response_split:
            raise TemplateError(f"{self.path}: 'response_split' must not be empty")
        for key in ("prompt_input", "prompt_no_input"):
            if self.response_split not in getattr(self, key):
                raise TemplateError(f"{self.path}: {key!r} does not contain response_split {self.response_split!r}")

    def prompt(self, instruction: str, input: str | None = None, output: str | None = None) -> str:
        """The prompt for an instruction (and input, if non-empty), followed by ``output`` if given."""
        values = {"instruction": instruction, "input": input or ""}
        text = self.prompt_input if input else self.prompt_no_input
        filled = _SLOT.sub(lambda m: values[m.group(1)], text)
        return filled + output if output else filled

    def response(self, text: str, prompt: str | None = None) -> str:
        """The answer in a generated text: what follows the prompt (when ``prompt`` is given and the
        text starts with it), else what follows the first ``response_split``, up to a next one the
        model may have gone on to write."""
        if prompt is not None and text.startswith(prompt):
            answer = text[len(prompt):]
        else:
            head, sep, answer = text.partition(self.response_split)
            if not sep:
                raise ValueError(f"{self.path}: no {self.response_split!r} in the generated text")
        return answer.split(self.response_split, 1)[0].strip()


def load_template(name_or_path: PathLike) -> Template:
    """A template by name (a file ``train/templates/<name>.json``) or by path to a JSON file."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if not (path.suffix == ".json" or os.sep in text or path.is_file()):
        path = TEMPLATES_DIR / f"{text}.json"
        if not path.is_file():
            known = sorted(p.stem for p in TEMPLATES_DIR.glob("*.json") if not p.stem.startswith("ie_"))
            raise TemplateError(f"unknown template {text!r} (no {path}; known: {', '.join(known)})")
    data = read_json_object(path, TemplateError, "template file", "JSON template",
                            "a JSON object with prompt_input, prompt_no_input, response_split")
    known_keys = {"description", "prompt_input", "prompt_no_input", "response_split"}
    unknown = sorted(set(data) - known_keys)
    if unknown:
        raise TemplateError(f"{path}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(known_keys))})")
    for key in ("prompt_input", "prompt_no_input", "response_split"):
        if key not in data:
            raise TemplateError(f"{path}: missing key {key!r}")
    for key, value in data.items():
        if not isinstance(value, str):
            raise TemplateError(f"{path}: key {key!r} must be a string, got {type(value).__name__}")
    return Template(data["prompt_input"], data["prompt_no_input"], data["response_split"],
                    data.get("description", ""), str(path))


# --------------------------------------------------------------------------------------------
# Reading records


def _check_record(obj: Any) -> tuple[dict[str, Any] | None, str, str]:
    """The normalized record, or None, the reason it is refused and a detail (which message)."""
    if not isinstance(obj, dict):
        return None, "not a JSON object", ""
    if is_conversation(obj):
        return check_conversation(obj)
    for key in ("instruction", "input", "output"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            return None, f"'{key}' is not a string", ""
    for key in ("instruction", "output"):
        if key not in obj or obj[key] is None:
            return None, f"missing '{key}'", ""
        if not obj[key].strip():
            return None, f"empty '{key}'", ""
    return {"instruction": obj["instruction"], "input": obj.get("input") or "", "output": obj["output"]}, "", ""


def _array_items(text: str, path: Path) -> list[tuple[int, Any]]:
    """(line, value) of every element of a JSON array, decoded one by one to keep line numbers."""
    decoder = json.JSONDecoder()
    items: list[tuple[int, Any]] = []
    pos = text.index("[") + 1
    ws = re.compile(r"\s*")

    def skip(p: int) -> int:
        return ws.match(text, p).end()  # type: ignore[union-attr]

    pos = skip(pos)
    if pos < len(text) and text[pos] == "]":
        return items
    while True:
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InstructionDataError(f"{path}:{exc.lineno}: the JSON array is malformed ({exc.msg})") from None
        except RecursionError:  # a few thousand '[': the decoder's recursion, not a crash
            raise InstructionDataError(f"{path}:{line}: the JSON array is malformed (nested too deeply)") from None
        items.append((line, value))
        pos = skip(pos)
        if pos < len(text) and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]" and not text[pos + 1:].strip():
            return items
        line = text.count("\n", 0, pos) + 1
        raise InstructionDataError(f"{path}:{line}: the JSON array is malformed (expected ',' or a final ']')")


def read_instructions(path: PathLike) -> tuple[list[dict[str, Any]], Skipped]:
    """Records ``{"instruction", "input", "output"}`` (input "" when absent) or ``{"messages": [...]}``
    (conversations, roles system/user/assistant: :func:`train.chat.check_conversation`) and the
    skipped counts.

    JSON lines, or one JSON array when the file's first non-blank character is ``[``. Raises
    InstructionDataError for a missing or empty file or one without a single valid record.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InstructionDataError(f"instruction file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise InstructionDataError(f"{path}: not UTF-8 text ({exc})") from exc
    if not text.strip():
        raise InstructionDataError(f"{path}: the file is empty")
    skipped = Skipped()
    records: list[dict[str, Any]] = []
    if text.lstrip().startswith("["):
        items = _array_items(text, path)
    else:
        items = []
        for n, obj in iter_jsonl(path, on_error="skip"):
            if isinstance(obj, BadLine):
                skipped.add(f"{path}:{n}", bad_line(obj)[0])
            else:
                items.append((n, obj))
    for n, obj in items:
        record, reason, detail = _check_record(obj)
        if record is None:
            skipped.add(f"{path}:{n}", reason, detail)
        else:
            records.append(record)
    if not records:
        reasons = ", ".join(f"{k}: {v}" for k, v in skipped.most_common()) or "no records"
        raise InstructionDataError(f"{path}: no valid instruction record ({reasons})")
    if skipped:
        log.warning("%s: %d records, %d skipped (%s)", path, len(records), sum(skipped.values()),
                    ", ".join(f"{k}: {v}" for k, v in skipped.most_common()))
    return records, skipped


# --------------------------------------------------------------------------------------------
# Tokenizing


def _ids(tokenizer: Any, texts: list[str], cutoff_len: int) -> list[list[int]]:
    encoded = tokenizer(texts, truncation=True, max_length=cutoff_len, padding=False)["input_ids"]
    return [list(ids) for ids in encoded]


def tokenize_examples(
    tokenizer: Any,
    template: Template,
    records: Sequence[Mapping[str, Any]],
    cutoff_len: int = 512,
    train_on_inputs: bool = False,
    add_eos: bool = True,
    batch_size: int = 1000,
    chat_template: str | None = None,
) -> list[dict[str, list[int]]]:
    """:func:`tokenize_example` over many records, tokenized in batches (the Rust tokenizer is an
    order of magnitude faster on a list than text by text). Conversations among them go through
    :func:`train.chat.tokenize_conversations` (``chat_template``, else the tokenizer's, else the
    default; the template closes assistant turns, so ``add_eos`` does not apply to them)."""
    if cutoff_len <= 1:
        raise ValueError(f"cutoff_len must be > 1, got {cutoff_len}")
    chats = [i for i, r in enumerate(records) if "messages" in r]
    if chats:
        alpaca = [i for i, r in enumerate(records) if "messages" not in r]
        merged: list[Any] = [None] * len(records)
        done = tokenize_conversations(tokenizer, [records[i]["messages"] for i in chats], cutoff_len,
                                      train_on_inputs, chat_template, batch_size)
        done += tokenize_examples(tokenizer, template, [records[i] for i in alpaca], cutoff_len, train_on_inputs,
                                  add_eos, batch_size)
        for i, example in zip(chats + alpaca, done):
            merged[i] = example
        return merged
    eos = tokenizer.eos_token_id
    out = []
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        fulls = _ids(tokenizer, [template.prompt(r["instruction"], r.get("input"), r["output"]) for r in batch],
                     cutoff_len)
        prompts = (None if train_on_inputs else
                   _ids(tokenizer, [template.prompt(r["instruction"], r.get("input")) for r in batch], cutoff_len))
        for k, full in enumerate(fulls):
            if add_eos and len(full) < cutoff_len and (not full or full[-1] != eos):
                full.append(eos)
            labels = list(full)
            if prompts is not None:
                n_prompt = min(len(prompts[k]), len(labels))
                labels[:n_prompt] = [IGNORE_INDEX] * n_prompt
            out.append({"input_ids": full, "attention_mask": [1] * len(full), "labels": labels})
    return out


def tokenize_example(
    tokenizer: Any,
    template: Template,
    record: Mapping[str, str],
    cutoff_len: int = 512,
    train_on_inputs: bool = False,
    add_eos: bool = True,
) -> dict[str, list[int]]:
    """alpaca-lora's ``generate_and_tokenize_prompt``: ``input_ids``, ``attention_mask``, ``labels``.

    The full prompt (with bos) is truncated at ``cutoff_len`` tokens; EOS is appended when the
    result is shorter than ``cutoff_len`` and does not end with EOS already ("EOS appended unless
    truncated"). Without ``train_on_inputs`` the labels of the prompt part — as many tokens as the
    prompt alone tokenizes to, without EOS — are -100.
    """
    return tokenize_examples(tokenizer, template, [record], cutoff_len, train_on_inputs, add_eos)[0]


class InstructionDataset(Dataset):
    """Instruction records (and conversations) tokenized up front, in batches (instruction sets are
    small: alpaca's 52k records take seconds); ``ds[i]`` is a dict of int lists for
    :class:`train.data.Collator`.

    Records whose prompt alone fills ``cutoff_len`` (so no answer token would be trained on) are
    dropped and counted in ``skipped`` as well, unless ``train_on_inputs``; so are conversations
    whose first assistant turn starts beyond it.
    """

    def __init__(
        self,
        path: PathLike,
        tokenizer: Any,
        template: Template,
        cutoff_len: int = 512,
        train_on_inputs: bool = False,
        add_eos: bool = True,
        chat_template: str | None = None,
    ) -> None:
        self.path = str(path)
        self.records, self.skipped = read_instructions(path)
        self.examples: list[dict[str, list[int]]] = []
        kept = []
        examples = tokenize_examples(tokenizer, template, self.records, cutoff_len, train_on_inputs, add_eos,
                                     chat_template=chat_template)
        for n, (record, example) in enumerate(zip(self.records, examples)):
            if not train_on_inputs and all(label == IGNORE_INDEX for label in example["labels"]):
                reason = "no assistant token within cutoff_len" if "messages" in record else "prompt fills cutoff_len"
                self.skipped.add(f"{self.path}: record {n}", f"{reason} {cutoff_len}")
                continue
            kept.append(record)
            self.examples.append(example)
        self.records = kept
        if not self.examples:
            reasons = sorted({r for r in self.skipped if "cutoff_len" in r})
            raise InstructionDataError(f"{self.path}: no record has a token to train on within cutoff_len "
                                       f"{cutoff_len} ({'; '.join(reasons)})")

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(e["input_ids"]) for e in self.examples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.examples[i]


class _Subset(Dataset):
    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = [int(i) for i in indices]

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray(self.dataset.lengths)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]


def split(dataset: Any, n: int, seed: int) -> tuple[Dataset, Dataset]:
    """(train, validation) with ``n`` seeded-random records held out (alpaca-lora's val_set_size)."""
    size = len(dataset)
    if not 0 < n < size:
        raise ValueError(f"val_set_size must be in [1, {size - 1}] for {size} records, got {n}")
    order = np.random.default_rng(seed).permutation(size)
    return _Subset(dataset, np.sort(order[n:])), _Subset(dataset, np.sort(order[:n]))
