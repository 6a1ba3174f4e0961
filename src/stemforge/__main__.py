"""``python -m stemforge``: the same as the ``stemforge`` command."""
from stemforge.cli.main import console

if __name__ == "__main__":
    console()
