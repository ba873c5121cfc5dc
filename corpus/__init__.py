"""Corpus building: raw text → whole-sentence samples → Megatron .bin/.idx. No torch here.

The public face; ``python -m corpus --help`` is the command line.
"""

from corpus.identity import check_tokenizer, recorded_tokenizer_sha256
from corpus.indexed import IndexedReader, IndexedWriter, merge, validate
from corpus.pack import PackConfig, pack
from corpus.sentences import sentence_ends, split
from corpus.tokenizer import Tokenizer, train_tokenizer

__all__ = [
    "IndexedReader",
    "IndexedWriter",
    "PackConfig",
    "Tokenizer",
    "check_tokenizer",
    "merge",
    "pack",
    "recorded_tokenizer_sha256",
    "sentence_ends",
    "split",
    "train_tokenizer",
    "validate",
]
