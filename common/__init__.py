"""The suite's foundation: what every package needs and none should own.

Typed configs (:mod:`common.config`), the one family of user errors (:mod:`common.errors`), files that
appear complete or not at all (:mod:`common.atomic`), completion markers with fingerprints
(:mod:`common.markers`), JSON and JSON-lines reading with file:line errors (:mod:`common.jsonl`) and the
shared command-line frame (:mod:`common.cli`).

Only the standard library and PyYAML: corpus/, train/, recover/ and hpc/ import this, this imports none of
them (checked by ``tests/test_imports.py``).
"""

from common.errors import ConfigError, UserError

__all__ = ["ConfigError", "UserError"]
