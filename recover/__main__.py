"""``python -m recover``: see :mod:`recover.cli`."""

from recover.cli import main

raise SystemExit(main())
