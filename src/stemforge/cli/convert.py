"""``stemforge convert``: an official Demucs checkpoint (or bag member) to stemforge's own format."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger("stemforge.convert")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "convert", help="convert an official Demucs .th file to stemforge's safetensors format",
        description="Convert an official Demucs checkpoint (read safely, no code executed) to a "
                    "stemforge .safetensors file: config + tensors.")
    parser.add_argument("source", type=Path, help="official .th checkpoint")
    parser.add_argument("destination", type=Path, help="output .safetensors file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..pretrained.convert import convert
    from .errors import UserError

    if args.destination.suffix != ".safetensors":
        raise UserError("the destination must end in .safetensors")
    convert(args.source, args.destination)
    logger.info("wrote %s", args.destination)
    return 0
