"""One family of errors that mean "fix your input or your config", not "the program has a bug".

Every package's user-facing error derives from :class:`UserError`; each CLI catches it once
(:func:`common.cli.run`) and prints one line, ``PROG: error: MESSAGE``, with exit status 2. Anything
else is a bug and keeps its traceback. The classes also derive from the builtin they replace
(``ValueError``, ``RuntimeError``) so callers that caught those keep working.
"""

from __future__ import annotations


class UserError(Exception):
    """Input, configuration or environment a user can fix; the message says which file, key or line."""


class ConfigError(UserError, ValueError):
    """A configuration file or value is wrong; the message names the file and the key."""


class InputDataError(UserError, ValueError):
    """An input file is unreadable or malformed; the message names the file (and line, where there is one)."""
