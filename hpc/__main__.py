"""`python -m hpc`: lists the commands (each is its own module)."""

import sys

import hpc

print(f"python -m hpc.<command>\n\n{hpc.__doc__.strip()}", file=sys.stderr)
raise SystemExit(2)
