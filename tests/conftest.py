"""Shared fixtures: a small LLaMA-like tokenizer trained once on the bundled samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corpus.tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "data" / "corpus"


def sample_texts() -> list[str]:
    texts = []
    for path in sorted(SAMPLES.glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            texts.extend(json.loads(line)["text"] for line in f if line.strip())
    return texts


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
    return train_tokenizer(sample_texts(), path, vocab_size=3000)


# The real local Slurm cluster, for every test that asks for it (session-scoped; see slurm_fixtures).
from slurm_fixtures import slurm_cluster  # noqa: E402,F401
