"""``python -m stemforge``: the same as the ``stemforge`` command."""
import sys

from stemforge.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
