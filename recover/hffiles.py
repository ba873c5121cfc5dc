"""The non-tensor files of a checkpoint: config.json, generation config, tokenizer files.

Tokenizer files travel with the diff (the tuned model's tokenizer is what the user needs). A diff
without them, or a tokenizer whose vocabulary size differs from the embedding's rows, is refused:
CaMA's ``recover`` run on a diff without tokenizer files silently saved a 3-token tokenizer that
encodes every text to nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from common.atomic import write_json
from common.jsonl import read_json_object
from recover.checkpoint import dtype_name
from recover.errors import RecoverError

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja", "chat_template.json")
TOKENIZER_CORE = ("tokenizer.model", "tokenizer.json")
EMBED_SUFFIX = "embed_tokens.weight"


def read_config(directory: Path) -> dict[str, Any]:
    return read_json_object(Path(directory) / "config.json", RecoverError, missing="checkpoint config")


def write_config(src_dir: Path, out_dir: Path, dtype: torch.dtype, fsync: bool = True) -> None:
    """config.json from ``src_dir`` with its dtype set to what was written (and generation_config.json)."""
    config = read_config(src_dir)
    keys = [k for k in ("torch_dtype", "dtype") if k in config] or ["torch_dtype"]
    for k in keys:
        config[k] = dtype_name(dtype)
    write_json(Path(out_dir) / "config.json", config, indent=2, sort_keys=True, fsync=fsync)
    gen = Path(src_dir) / "generation_config.json"
    if gen.is_file():
        shutil.copyfile(gen, out_dir / gen.name)


def tokenizer_files(directory: Path) -> list[Path]:
    """Every tokenizer file present (what travels with a checkpoint)."""
    return [Path(directory) / n for n in TOKENIZER_FILES if (Path(directory) / n).is_file()]


def core_tokenizer_files(directory: Path) -> list[Path]:
    """The files a tokenizer is made of (tokenizer.model, tokenizer.json). tokenizer_config.json and the
    rest only configure one: alone, transformers builds a tokenizer of 3 tokens that encodes every
    text to nothing."""
    return [Path(directory) / n for n in TOKENIZER_CORE if (Path(directory) / n).is_file()]


def tokenizer_vocab_size(directory: Path) -> tuple[int, str]:
    """Number of token ids the tokenizer in ``directory`` can produce (max id + 1), and the file that says so."""
    directory = Path(directory)
    sizes: list[tuple[int, str]] = []
    added = directory / "added_tokens.json"
    added_ids: list[int] = []
    if added.is_file():
        mapping = read_json_object(added, RecoverError, expect="a mapping of token → id")
        try:
            added_ids = [int(v) for v in mapping.values()]
        except (TypeError, ValueError) as exc:
            raise RecoverError(f"{added}: not a mapping of token → id ({exc})") from None
    spm_path = directory / "tokenizer.model"
    if spm_path.is_file():
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor()
        try:
            sp.Load(str(spm_path))
        except (OSError, RuntimeError) as exc:
            raise RecoverError(f"{spm_path}: not a sentencepiece model ({exc})") from None
        sizes.append((max([sp.GetPieceSize() - 1, *added_ids]) + 1, str(spm_path)))
    tj = directory / "tokenizer.json"
    if tj.is_file():
        data = read_json_object(tj, RecoverError, kind="tokenizer.json")
        try:
            vocab = data["model"]["vocab"]
            ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
            ids += [int(t["id"]) for t in data.get("added_tokens") or []]
        except (KeyError, TypeError, ValueError) as exc:
            raise RecoverError(f"{tj}: cannot read the vocabulary ({exc})") from None
        sizes.append((max([*ids, *added_ids], default=-1) + 1, str(tj)))
    if not sizes:
        raise RecoverError(f"{directory}: no tokenizer files (tokenizer.model or tokenizer.json): the restored "
                           f"model would have no usable tokenizer")
    if len({s for s, _ in sizes}) > 1:
        raise RecoverError(f"{directory}: tokenizer files disagree on the vocabulary size: "
                           + ", ".join(f"{w} has {s}" for s, w in sizes))
    return sizes[0]


def check_tokenizer(directory: Path, config: dict[str, Any], embed_rows: int | None, where: str) -> int:
    """The tokenizer in ``directory`` must cover exactly the model's embedding rows (and config vocab_size)."""
    size, file = tokenizer_vocab_size(directory)
    vocab = config.get("vocab_size")
    if embed_rows is not None and size != embed_rows:
        raise RecoverError(f"{file}: the tokenizer has {size} tokens but the model's embedding ({where}) has "
                           f"{embed_rows} rows")
    if isinstance(vocab, int) and size != vocab:
        raise RecoverError(f"{file}: the tokenizer has {size} tokens but config.json says vocab_size {vocab}")
    return size


def copy_tokenizer(src: Path, out_dir: Path) -> list[str]:
    files = tokenizer_files(src)
    for f in files:
        shutil.copyfile(f, out_dir / f.name)
    return [f.name for f in files]


def embed_rows(tensors: dict[str, Any]) -> tuple[int | None, str]:
    for name, info in tensors.items():
        if name.endswith(EMBED_SUFFIX) or name == "tok_embeddings.weight":
            return info.shape[0], name
    return None, ""
