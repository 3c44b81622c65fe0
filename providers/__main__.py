"""`python -m providers generate|list` (see providers/cli.py)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
