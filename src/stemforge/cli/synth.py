"""``stemforge synth``: write a synthetic multitrack dataset in the MUSDB18-HQ layout."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

logger = logging.getLogger("stemforge.synth")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "synth", help="generate procedural songs with true stems (training data)",
        description="Write procedural songs as OUT_DIR/{train,valid}/song_NNNNN/{mixture,drums,bass,other,"
                    "vocals}.flac. Deterministic for a seed; re-running resumes and skips finished songs.")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="dataset folder (created if needed)")
    parser.add_argument("--songs", type=int, default=100, help="number of training songs (default 100)")
    parser.add_argument("--valid", type=int, default=10, help="number of validation songs (default 10)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each song (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--voice", choices=["auto", "kokoro", "espeak"], default="auto",
                        help="singing voice backend (default: kokoro if installed, else espeak-ng)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or info messages")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..data.synth import DatasetSpec, missing_dependencies, write_dataset
    from .errors import UserError

    if args.songs < 0 or args.valid < 0:
        raise UserError("--songs and --valid must be >= 0")
    if not 0.5 <= args.seconds <= 600:
        raise UserError("--seconds must be between 0.5 and 600")
    if args.jobs < 1:
        raise UserError("--jobs must be >= 1")
    missing = missing_dependencies(args.voice)
    if missing:
        raise UserError("synth needs: " + "; ".join(missing) + " (see scripts/install_synth_deps.sh)")
    spec = DatasetSpec(args.out_dir, args.songs, args.valid, args.seconds, args.seed, args.voice)
    written = write_dataset(spec, jobs=args.jobs, progress=not args.quiet)
    logger.info("wrote %d song(s) to %s", written, args.out_dir)
    return 0
