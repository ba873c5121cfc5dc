"""`python -m train`: the training commands (each is its own module)."""

import train

print(train.__doc__.strip())
