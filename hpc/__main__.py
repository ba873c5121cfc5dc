"""`python -m hpc`: no commands yet (see the package docstring)."""

import sys

import hpc

print(f"python -m hpc: no commands yet.\n\n{hpc.__doc__.strip()}", file=sys.stderr)
raise SystemExit(2)
