"""The LLaMA tokenizer for training: a transformers tokenizer that encodes exactly like sentencepiece.

The corpus was tokenized with sentencepiece itself (``corpus.tokenizer``); instruction data is
tokenized here through transformers. The two must agree token for token, or the model sees at
tuning time text split differently from pretraining. transformers 5 builds ``LlamaTokenizer``
(the ``tokenizers``-backed class; ``LlamaTokenizerFast`` is an alias) from a ``tokenizer.model``
with a ``Metaspace(prepend_scheme="first")`` pre-tokenizer, and rebuilds that pipeline when it
reloads a saved ``tokenizer.json``. It then differs from sentencepiece on any text that starts with
a space (``" a"`` → ``▁a`` instead of ``▁▁a``). :func:`load_tokenizer` installs the pipeline the
original LLaMA converter used — normalizer ``Prepend("▁")`` + ``Replace(" ", "▁")``, no
pre-tokenizer — and, whenever a ``tokenizer.model`` is at hand, checks a set of zh/en/code probes
against sentencepiece's own ``encode`` before returning.

Conventions (alpaca-lora's): bos added, eos not (the instruction builder appends it), pad = unk
(id 0; LLaMA has no pad token), padding on the right for training. Batched generation pads on the
left instead: ``tokenizer.padding_side = "left"`` before calling ``generate``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Union

from transformers import LlamaTokenizerFast, PreTrainedTokenizerBase

from common.atomic import atomic_path
from common.errors import UserError

__all__ = ["TokenizerError", "check_vocab", "load_tokenizer", "save_tokenizer", "verify_against_sentencepiece"]

PathLike = Union[str, "os.PathLike[str]"]

SP_MODEL = "tokenizer.model"
HF_FILES = ("tokenizer.json", "tokenizer_config.json")

# Texts where a tokenizer pipeline that is almost sentencepiece's would show the difference:
# leading and repeated spaces, tabs and newlines, the visible-space character itself, digits
# (split one by one), CJK with full-width punctuation, byte-fallback characters, code.
PROBES = (
    "Hello world, this is a test.",
    " leading space",
    "  two leading spaces and   three inside",
    "\tTab\tseparated\n\nnew paragraph ",
    "▁literal visible space",
    "数字 12345 与 3.14159，还有 2023 年。",
    "中文测试：今天天气很好！「引号」里的话。",
    "混合 mixed 文本 text，English inside 中文。",
    "def f(x):\n    return {'a': x ** 2}  # comment\n",
    "emoji 😀 and rare 龘 characters",
    "### Instruction:\n{braces} stay\n\n### Response:\n",
)


class TokenizerError(UserError, ValueError):
    """A tokenizer is missing, unreadable, or does not match sentencepiece or the model."""


def _sentencepiece_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    candidate = path / SP_MODEL
    return candidate if candidate.is_file() else None


def load_tokenizer(
    path: PathLike,
    padding_side: str = "right",
    verify: bool = True,
) -> PreTrainedTokenizerBase:
    """A LLaMA tokenizer from a directory (``tokenizer.model`` and/or HF tokenizer files) or a
    sentencepiece ``.model`` file.

    Returns a ``transformers.LlamaTokenizer`` (``LlamaTokenizerFast`` in transformers 4) with
    ``add_bos_token=True``, ``add_eos_token=False``, ``pad_token`` = ``unk`` (id 0) and the given
    ``padding_side``. The sentencepiece file it came from, if any, is kept as
    ``tokenizer.sentencepiece_file`` so :func:`save_tokenizer` can put it next to a checkpoint.
    With ``verify`` (and a ``tokenizer.model`` available), :data:`PROBES` must encode exactly as
    sentencepiece encodes them with bos prepended.
    """
    path = Path(path)
    if not path.exists():
        raise TokenizerError(f"tokenizer not found: {path}")
    sp_file = _sentencepiece_file(path)
    kwargs = {"add_bos_token": True, "add_eos_token": False}
    try:
        if path.is_file():
            # transformers reads a tokenizer from a folder only (a vocab_file argument is ignored
            # by the transformers 5 classes), so the file is copied into one for the load.
            with tempfile.TemporaryDirectory(prefix="tokenizer-") as tmp:
                shutil.copyfile(path, Path(tmp) / SP_MODEL)
                tokenizer = LlamaTokenizerFast.from_pretrained(tmp, **kwargs)
        else:
            if sp_file is None and not (path / HF_FILES[0]).is_file():
                raise TokenizerError(f"{path}: no {SP_MODEL} or {HF_FILES[0]} in this folder")
            tokenizer = LlamaTokenizerFast.from_pretrained(str(path), **kwargs)
    except TokenizerError:
        raise
    except Exception as exc:  # transformers raises many types for an unreadable file
        raise TokenizerError(f"{path}: cannot load a LLaMA tokenizer ({type(exc).__name__}: {exc})") from exc

    _install_sentencepiece_pipeline(tokenizer)
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer.padding_side = padding_side
    tokenizer.sentencepiece_file = str(sp_file) if sp_file is not None else None
    probe = tokenizer("a")["input_ids"]
    if not probe or probe[0] != tokenizer.bos_token_id or probe[-1] == tokenizer.eos_token_id:
        raise TokenizerError(f"{path}: the tokenizer does not add bos / omits eos as expected (got {probe})")
    if verify and sp_file is not None:
        verify_against_sentencepiece(tokenizer, sp_file)
    return tokenizer


def _install_sentencepiece_pipeline(tokenizer: PreTrainedTokenizerBase) -> None:
    """The original LLaMA converter's pipeline: one dummy-prefix ``▁``, every space → ``▁``, and BPE
    over the whole text (sentencepiece does not pre-split a LLaMA model's input)."""
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None


def verify_against_sentencepiece(tokenizer: PreTrainedTokenizerBase, model_file: PathLike,
                                 texts: tuple[str, ...] = PROBES) -> None:
    """Raise TokenizerError unless ``tokenizer`` encodes every text as sentencepiece does (bos first)
    and has sentencepiece's vocabulary size and bos/eos ids."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(str(model_file))
    except (OSError, RuntimeError) as exc:
        raise TokenizerError(f"{model_file}: not a sentencepiece model ({exc})") from exc
    if (tokenizer.bos_token_id, tokenizer.eos_token_id) != (sp.bos_id(), sp.eos_id()):
        raise TokenizerError(f"{model_file}: bos/eos are {sp.bos_id()}/{sp.eos_id()} in sentencepiece but "
                             f"{tokenizer.bos_token_id}/{tokenizer.eos_token_id} in the transformers tokenizer")
    if len(tokenizer) != sp.GetPieceSize():
        raise TokenizerError(f"{model_file}: sentencepiece has {sp.GetPieceSize()} pieces but the transformers "
                             f"tokenizer has {len(tokenizer)} entries")
    for text in texts:
        expected = [sp.bos_id(), *sp.encode(text)]
        got = tokenizer(text)["input_ids"]
        if got != expected:
            raise TokenizerError(f"{model_file}: the transformers tokenizer encodes {text!r} as {got} but "
                                 f"sentencepiece as {expected}")


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: PathLike) -> None:
    """``save_pretrained`` plus the sentencepiece ``tokenizer.model`` it came from, so a checkpoint
    holds the file LLaMA tooling (and :func:`load_tokenizer`'s verification) expects.

    The chat template (the tokenizer's, else :data:`train.chat.DEFAULT_CHAT_TEMPLATE`) is stored as
    ``chat_template`` in ``tokenizer_config.json``, where every transformers version reads it (5.x
    would write a separate ``chat_template.jinja``, which older ones ignore)."""
    from train.chat import template_of

    out = Path(out_dir)
    own = tokenizer.chat_template
    tokenizer.chat_template = template_of(tokenizer)
    try:
        tokenizer.save_pretrained(str(out), save_jinja_files=False)
    finally:
        tokenizer.chat_template = own
    stale = out / "chat_template.jinja"  # from an earlier save: it would win over tokenizer_config.json on load
    if stale.exists():
        stale.unlink()
    source = getattr(tokenizer, "sentencepiece_file", None)
    if source and Path(source).is_file():
        target = out / SP_MODEL
        if not (target.exists() and os.path.samefile(source, target)):
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)


def check_vocab(tokenizer: PreTrainedTokenizerBase, model_vocab_size: int, where: str) -> None:
    """The tokenizer must have exactly the model's embedding rows (``config.vocab_size``).

    LLaMA checkpoints and this suite do not expand the vocabulary, so any difference means the
    tokenizer belongs to another model: ids past the embedding would crash on GPU, and a smaller
    tokenizer would silently leave rows untrained — both are refused.
    """
    size = len(tokenizer)
    if size != model_vocab_size:
        raise TokenizerError(
            f"{where}: the tokenizer has {size} entries but the model's vocabulary (embedding rows, "
            f"config.vocab_size) is {model_vocab_size}; they must be equal: use the tokenizer the "
            "model was trained with")
