"""Entry point for the torchrun test: ``stemforge train`` with a marker of which rank saved."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from stemforge.cli import train as cli
    from stemforge.train import solver

    write = solver.atomic_torch_save

    def marked_save(obj, path: Path) -> None:
        (Path(path).parent / f"saved_by_rank{os.environ.get('RANK', '?')}").touch()
        write(obj, path)

    solver.atomic_torch_save = marked_save
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
