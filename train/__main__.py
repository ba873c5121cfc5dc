"""`python -m train`: no commands yet (see the package docstring)."""

import sys

import train

print(f"python -m train: no commands yet.\n\n{train.__doc__.strip()}", file=sys.stderr)
raise SystemExit(2)
