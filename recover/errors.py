"""The one exception every recover command raises for input a user can act on."""

from __future__ import annotations

from common.errors import UserError


class RecoverError(UserError, ValueError):
    """Bad or inconsistent input (missing shard, shape mismatch, checksum failure…).

    The message names the file and, where there is one, the tensor; nothing was written when it is
    raised (outputs are built in a temporary directory that is removed on any error).
    """


class IntegrityError(RecoverError):
    """A checksum or the whole-model sum does not match what was expected."""
