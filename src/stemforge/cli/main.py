"""``stemforge`` command line: subcommands ``separate``, ``convert``, ``models``.

Heavy modules (torch, models) are imported inside the subcommands so ``stemforge --help`` is fast.
Errors a user can act on print one line and exit with status 2; ``-v`` shows the traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Optional, Sequence

EXIT_USER_ERROR = 2

logger = logging.getLogger("stemforge")


class UserError(Exception):
    """An error caused by the input or options; printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    from . import convert, separate

    parser = argparse.ArgumentParser(
        prog="stemforge", description="Separate music into stems (drums, bass, other, vocals).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    separate.add_parser(commands)
    convert.add_parser(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USER_ERROR
    configure_logging(getattr(args, "verbose", False), getattr(args, "quiet", False))
    return run_guarded(args.handler, args)


def run_guarded(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand; turn expected errors into one line on stderr and exit status 2."""
    verbose = getattr(args, "verbose", False)
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("stemforge: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the edge of the program: report, don't crash
        if verbose:
            logger.exception("failed")
        print(f"stemforge: error: {describe(error)}", file=sys.stderr)
        return EXIT_USER_ERROR


def describe(error: BaseException) -> str:
    """A one-line description of ``error`` for a person."""
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    if isinstance(error, (UserError,)) or _is_expected(error):
        return message or type(error).__name__
    return f"{type(error).__name__}: {message} (run with -v for details)"


def _is_expected(error: BaseException) -> bool:
    expected = ("AudioError", "CheckpointError", "ModelResolutionError", "ModelNotFoundError",
                "ChecksumError", "UnsafeCheckpointError", "QuantizedCheckpointError", "ValueError")
    return any(klass.__name__ in expected for klass in type(error).__mro__)


def configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        stream=sys.stderr)
    logging.getLogger("stemforge").setLevel(level)


def _version() -> str:
    from .. import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
