"""Is the tokenizer a run is given the one its data was made with? Checked before anything heavy loads.

A tokenizer of the same vocabulary size but other pieces passes every size and token-id check and
trains a model on text it reads differently, so the corpus records the sha256 of the
``tokenizer.model`` it tokenized with (``PREFIX.json``: ``tokenizer.sha256``; a mix its sources'
common one as ``tokenizer_sha256``, and each source its own; read by :mod:`corpus.identity`) and
training compares it with the tokenizer it is given.
LoRA's data is text, tokenized at training time: there the tokenizer the job names is compared with
the one saved next to the base model.

Reads JSON and hashes one file; no torch, so a mismatch is reported in well under a second.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.jsonl import read_json_object
from common.markers import file_sha256
from corpus import identity
from train.config import TrainError

SP_MODEL = "tokenizer.model"
DATA_SUFFIXES = (".mix.json", ".idx", ".bin")


def strip_suffix(path: str | os.PathLike) -> str:
    """The prefix of a path given with one of the suffixes the corpus writes (or none)."""
    text = os.fspath(path)
    for suffix in DATA_SUFFIXES:
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def resolve_source(prefix: str, mix_json: Path, error: type[Exception] = TrainError) -> str:
    """A source prefix as stored in a mix: absolute, or relative to the working directory of the
    build (how corpus.mix stores it), or relative to the mix's own folder (a moved build tree)."""
    candidates = [prefix] if os.path.isabs(prefix) else [prefix, str(mix_json.parent / prefix)]
    for candidate in candidates:
        if os.path.isfile(candidate + ".idx"):
            return candidate
    looked = ", ".join(f"{c}.idx" for c in candidates)
    raise error(f"{mix_json}: source {prefix!r} not found (looked for {looked})")


def tokenizer_file(path: str | os.PathLike) -> Path | None:
    """The sentencepiece file of a tokenizer given as the file itself or a folder holding one."""
    path = Path(path)
    if path.is_file():
        return path
    candidate = path / SP_MODEL
    return candidate if candidate.is_file() else None


def recorded_tokenizers(data: str | os.PathLike) -> list[tuple[Path, str, str | None]]:
    """``(report file, sha256, tokenizer path)`` for every report under ``data`` (a .bin/.idx prefix,
    or a mix prefix: the mix's own record and each source's) that records its tokenizer. Reports that
    record none (older builds) are left out; a missing dataset is left to the dataset loader, which
    names the files it looked for."""
    prefix = strip_suffix(data)
    prefixes = [prefix]
    mix = Path(prefix + ".mix.json")
    if mix.is_file():
        sources = read_json_object(mix, TrainError, "mix file", "mix JSON").get("sources")
        prefixes += [resolve_source(s["prefix"], mix) for s in (sources if isinstance(sources, list) else [])
                     if isinstance(s, dict) and isinstance(s.get("prefix"), str)]
    found = []
    for p in prefixes:
        tok = identity.recorded_tokenizer(p)
        if tok is not None:
            path = tok.get("path")
            found.append((identity.sidecar(p), tok["sha256"], str(path) if path is not None else None))
    return found


def check_data_tokenizer(tokenizer: str | os.PathLike, data: str | os.PathLike) -> str | None:
    """Refuse (TrainError naming both files and hashes) a tokenizer other than the one ``data`` was
    built with. Returns the tokenizer's sha256, or None where there is nothing to compare (a
    tokenizer without a ``tokenizer.model``, or data that records no tokenizer)."""
    sp = tokenizer_file(tokenizer)
    recorded = recorded_tokenizers(data)
    if sp is None or not recorded:
        return None
    sha = file_sha256(sp)
    for report, want, built_with in recorded:
        if want != sha:
            made = f" ({built_with})" if built_with else ""
            raise TrainError(
                f"tokenizer {sp} (sha256 {sha}) is not the one {report} was built with{made} (sha256 {want}): "
                "a tokenizer with other pieces would train the model on text it reads differently; "
                "use the corpus's tokenizer or rebuild the corpus with this one")
    return sha


def check_base_tokenizer(tokenizer: str | os.PathLike | None, base: str | os.PathLike) -> str | None:
    """Refuse a ``tokenizer`` that differs from the one saved with the ``base`` model (when both have
    a ``tokenizer.model``). Returns the sha256 compared, or None."""
    if tokenizer is None:
        return None
    mine, saved = tokenizer_file(tokenizer), tokenizer_file(base)
    if mine is None or saved is None:
        return None
    try:
        if os.path.samefile(mine, saved):
            return None
    except OSError:
        pass
    a, b = file_sha256(mine), file_sha256(saved)
    if a != b:
        raise TrainError(
            f"tokenizer {mine} (sha256 {a}) is not the one saved with the base model, {saved} (sha256 {b}): "
            "the base was trained on text split by its own tokenizer; drop 'tokenizer' to use it")
    return a
