"""``stemforge separate``: the Demucs command line, with Demucs' defaults and output layout."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

logger = logging.getLogger("stemforge.separate")

DEFAULT_MODEL = "htdemucs"
DEFAULT_TEMPLATE = "{track}/{stem}.{ext}"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("separate", help="separate tracks into stems",
                                 description="Separate audio files into stems.")
    parser.add_argument("tracks", nargs="+", type=Path, metavar="FILE", help="audio files to separate")
    parser.add_argument("-n", "--name", default=DEFAULT_MODEL,
                        help=f"model name, or a .th/.safetensors/.yaml path (default: {DEFAULT_MODEL})")
    parser.add_argument("--repo", type=Path, help="folder of model files to resolve -n in (offline)")
    parser.add_argument("-o", "--out", type=Path, default=Path("separated"),
                        help="output folder; a subfolder named after the model is made (default: separated)")
    parser.add_argument("--filename", default=DEFAULT_TEMPLATE,
                        help="output file name template with {track} {trackext} {stem} {ext} "
                             f"(default: {DEFAULT_TEMPLATE})")
    parser.add_argument("-d", "--device", default=None, help="cpu, cuda or mps (default: best available)")
    parser.add_argument("--shifts", type=int, default=1,
                        help="random shifts averaged for equivariance (0: deterministic; default 1)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the random shifts")
    parser.add_argument("--overlap", type=float, default=0.25, help="overlap between segments (default 0.25)")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--no-split", action="store_false", dest="split", default=True,
                       help="run the model on the whole track at once (uses a lot of memory)")
    split.add_argument("--segment", type=float, default=None, help="segment length in seconds")
    parser.add_argument("--two-stems", dest="stem", metavar="STEM",
                        help="write only STEM and no_STEM (the sum of the other stems)")
    depth = parser.add_mutually_exclusive_group()
    depth.add_argument("--int24", action="store_true", help="write 24-bit wav")
    depth.add_argument("--float32", action="store_true", help="write 32-bit float wav")
    parser.add_argument("--flac", action="store_true", help="write flac instead of wav")
    parser.add_argument("--clip-mode", default="rescale", choices=["rescale", "clamp", "none"],
                        help="avoid clipping by rescaling a stem (default) or hard clamping")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or info messages")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..audio.io import OutputFormat
    from ..inference.separator import Separator
    from ..pretrained.resolve import model_display_name
    from .errors import UserError
    from .output import StemWriter

    validate_options(args)
    tracks = list(args.tracks)
    separator = Separator(model=args.name, repo=args.repo,
                          device=args.device, shifts=args.shifts, overlap=args.overlap, split=args.split,
                          segment=args.segment, seed=args.seed,
                          download_progress=not args.quiet)
    if args.stem is not None and args.stem not in separator.sources:
        raise UserError(f'--two-stems: stem "{args.stem}" is not in this model; choose one of {", ".join(separator.sources)}')
    fmt = OutputFormat(kind="flac" if args.flac else "wav", bits=24 if args.int24 else 16,
                       float32=args.float32 and not args.flac)
    writer = StemWriter(args.out / model_display_name(args.name), args.filename, fmt, args.clip_mode)
    failures = 0
    for track in tracks:
        if not separate_track(separator, track, writer, args.stem, args.quiet):
            failures += 1
    if failures and len(tracks) > 1:
        logger.error("%d of %d files failed", failures, len(tracks))
    return 2 if failures else 0


def validate_options(args: argparse.Namespace) -> None:
    from .errors import UserError

    if args.shifts < 0:
        raise UserError("--shifts must be 0 or more")
    if not 0 <= args.overlap < 1:
        raise UserError("--overlap must be at least 0 and less than 1")
    if args.segment is not None and args.segment <= 0:
        raise UserError("--segment must be a positive number of seconds")
    if args.flac and args.float32:
        raise UserError("--float32 is for wav output; flac stores 16 or 24 bits")


def separate_track(separator, track: Path, writer, stem: Optional[str], quiet: bool) -> bool:
    """Separate one file and write its stems; report a failure as one line and return False."""
    from ..audio.io import read_audio
    from .errors import describe
    from .progress import progress_bar

    try:
        wav, rate = read_audio(track)
        with progress_bar(wav.shape[-1] / rate, desc=track.name, disable=quiet) as progress:
            separator.progress = progress
            stems = separator.separate(wav, rate)
        if stem is not None:
            stems = two_stems(stems, stem)
        paths = writer.write(track, stems, rate)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
        logger.debug("failure on %s", track, exc_info=True)
        print(f"stemforge: error: {describe(error)}", file=sys.stderr)
        return False
    finally:
        separator.progress = None
    logger.info("%s -> %s", track, paths[0].parent if paths else "(nothing)")
    return True


def two_stems(stems: dict, stem: str) -> dict:
    """``{stem, no_stem}`` where ``no_stem`` is the sum of all the other stems."""
    others = [audio for name, audio in stems.items() if name != stem]
    return {stem: stems[stem], f"no_{stem}": sum(others[1:], others[0].copy())}
