"""Corpus building: raw text → whole-sentence samples → Megatron .bin/.idx. No torch here.

The public face; ``python -m corpus --help`` is the command line.
"""

from corpus.indexed import IndexedReader, IndexedWriter, merge, validate
from corpus.pack import PackConfig, pack
from corpus.sentences import sentence_ends, split
from corpus.tokenizer import Tokenizer, train_tokenizer

__all__ = [
    "IndexedReader",
    "IndexedWriter",
    "PackConfig",
    "Tokenizer",
    "merge",
    "pack",
    "sentence_ends",
    "split",
    "train_tokenizer",
    "validate",
]
