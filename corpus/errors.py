"""The corpus side's user errors: inputs a corpus step cannot go on with.

Every class derives from :class:`common.errors.UserError` (``python -m corpus`` prints it as one line,
``corpus: error: …``, exit status 2) and from ``ValueError``, which callers caught before. The errors
of one file kind stay beside the code that reads it: :class:`corpus.reader.InputError`,
:class:`corpus.tokenizer.TokenizerError`, :class:`corpus.indexed.IndexFormatError`.
"""

from __future__ import annotations

from common.errors import UserError


class CorpusError(UserError, ValueError):
    """A build, merge or mix cannot go on: nothing survived, shards are missing or do not belong together."""


class TokenizerMismatchError(CorpusError):
    """A tokenizer meets data built with another one; the message names both files and both sha256."""
