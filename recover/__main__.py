"""`python -m recover`: no commands yet (see the package docstring)."""

import sys

import recover

print(f"python -m recover: no commands yet.\n\n{recover.__doc__.strip()}", file=sys.stderr)
raise SystemExit(2)
