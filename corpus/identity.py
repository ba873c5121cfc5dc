"""Which tokenizer a dataset was built with, and the check wherever a tokenizer meets data.

A build records the sha256 of its ``tokenizer.model`` in ``PREFIX.json`` (``tokenizer.sha256``), a mix
in ``PREFIX.mix.json`` (``tokenizer_sha256``). Two tokenizers with the same vocabulary size give
token files that look equally valid, so the hash is the only thing that tells them apart:
``corpus validate --tokenizer``, ``corpus inspect --tokenizer``, ``corpus merge``, ``corpus mix`` and
the training side (:func:`recorded_tokenizer_sha256`, :func:`check_tokenizer`) compare it.

Standard library and :mod:`common` only: train/ imports this without pulling in sentencepiece.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.errors import InputDataError
from common.jsonl import read_json_object
from common.markers import file_sha256
from corpus.errors import TokenizerMismatchError


def sidecar(prefix: str | os.PathLike) -> Path:
    """The JSON that describes a dataset: ``PREFIX.mix.json`` for a mix, else ``PREFIX.json``."""
    mix = Path(f"{os.fspath(prefix)}.mix.json")
    return mix if mix.is_file() else Path(f"{os.fspath(prefix)}.json")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return read_json_object(path)
    except InputDataError:
        return None


def recorded_tokenizer(prefix: str | os.PathLike) -> dict[str, Any] | None:
    """``{"path", "sha256", …}`` of the tokenizer a build (or a mix) records, or None when it records none."""
    path = sidecar(prefix)
    data = _read(path)
    if data is None:
        return None
    if path.name.endswith(".mix.json"):
        sha = data.get("tokenizer_sha256")
        return {"path": data.get("tokenizer_path"), "sha256": sha} if isinstance(sha, str) else None
    tok = data.get("tokenizer")
    return tok if isinstance(tok, dict) and isinstance(tok.get("sha256"), str) else None


def recorded_tokenizer_sha256(prefix: str | os.PathLike) -> str | None:
    """The sha256 of the tokenizer ``prefix`` (a .bin/.idx prefix or a mix prefix) was built with, or None."""
    tok = recorded_tokenizer(prefix)
    return tok["sha256"] if tok else None


@functools.lru_cache(maxsize=16)
def _sha_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def tokenizer_sha256(path: str | os.PathLike) -> str:
    """sha256 of a tokenizer file (cached by size and mtime: a check may run once per source)."""
    st = os.stat(path)
    return _sha_of(os.fspath(path), st.st_size, st.st_mtime_ns)


def check_tokenizer(prefix: str | os.PathLike, tokenizer: str | os.PathLike) -> str | None:
    """Fail unless ``tokenizer`` is the one ``prefix`` records; returns the recorded sha256 (None: none
    recorded, nothing to compare)."""
    tok = recorded_tokenizer(prefix)
    if tok is None:
        return None
    actual = tokenizer_sha256(tokenizer)
    if actual != tok["sha256"]:
        built_with = f"{tok['path']} (sha256 {tok['sha256']})" if tok.get("path") else f"sha256 {tok['sha256']}"
        raise TokenizerMismatchError(
            f"tokenizer mismatch: {tokenizer} (sha256 {actual}) is not the tokenizer {prefix} was built with: "
            f"{sidecar(prefix)} records {built_with}")
    return tok["sha256"]


def common_tokenizer(prefixes: Sequence[str | os.PathLike], what: str = "inputs") -> dict[str, Any] | None:
    """The one tokenizer record the datasets share (None when none records one); TokenizerMismatchError,
    naming each dataset and its hash, when their records differ. Datasets without a record are not
    counted either way."""
    records = [(os.fspath(p), recorded_tokenizer(p)) for p in prefixes]
    known = [(p, t) for p, t in records if t is not None]
    shas = {t["sha256"] for _, t in known}
    if len(shas) > 1:
        listing = "; ".join(f"{p}: {t['sha256']}" + (f" ({t['path']})" if t.get("path") else "") for p, t in known)
        raise TokenizerMismatchError(f"the {what} were built with different tokenizers (sha256 per dataset: {listing})")
    return known[0][1] if known else None


def unrecorded(prefixes: Sequence[str | os.PathLike]) -> list[str]:
    """The datasets among ``prefixes`` that record no tokenizer (built before hashes were kept, or by hand)."""
    return [os.fspath(p) for p in prefixes if recorded_tokenizer(p) is None]
