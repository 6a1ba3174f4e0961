"""``stemforge eval``: score separations with museval-exact BSSEval v4 and the SDX SDR.

Two modes:
  ``stemforge eval --references REF_DIR --estimates EST_DIR [--json OUT]`` scores existing stems;
  ``stemforge eval -n MODEL --tracks DIR [--repo DIR] [--subset test]`` separates each track's
  mixture first (MUSDB18-HQ folders, or ``.stem.mp4`` files with PyAV installed).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

logger = logging.getLogger("stemforge.eval")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "eval", help="score separations (SDR, SIR, ISR, SAR as museval; SDX SDR)",
        description="Score separations against reference stems: BSSEval v4 exactly as museval 0.4.1 "
                    "(median over 1 s frames, then over tracks) and the SDX challenge SDR (mean over "
                    "tracks). Either give --references and --estimates, or -n MODEL and --tracks.")
    given = parser.add_argument_group("score existing separations")
    given.add_argument("--references", type=Path, metavar="REF_DIR",
                       help="folder of tracks, one folder per track with <stem>.wav|flac")
    given.add_argument("--estimates", type=Path, metavar="EST_DIR",
                       help="folder of estimates with the same track folder and stem names")
    model = parser.add_argument_group("separate, then score")
    model.add_argument("-n", "--name", help="model name, or a .th/.safetensors/.yaml path")
    model.add_argument("--tracks", type=Path, metavar="DIR",
                       help="MUSDB18-HQ root (or a folder of track folders / .stem.mp4 files)")
    model.add_argument("--repo", type=Path, help="folder of model files to resolve -n in (offline)")
    model.add_argument("-d", "--device", default=None, help="cpu, cuda or mps (default: best available)")
    model.add_argument("--shifts", type=int, default=1, help="random shifts (0: deterministic; default 1)")
    model.add_argument("--overlap", type=float, default=0.25, help="overlap between segments (default 0.25)")
    model.add_argument("--segment", type=float, default=None, help="segment length in seconds")
    parser.add_argument("--subset", default="test",
                        help="MUSDB subset folder to use when present under the root (default: test)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the scores as JSON to OUT")
    parser.add_argument("--frames", action="store_true", help="include the per-frame scores in the JSON")
    parser.add_argument("--window", type=float, default=1.0, help="BSSEval window in seconds (default 1)")
    parser.add_argument("--hop", type=float, default=1.0, help="BSSEval hop in seconds (default 1)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-track info messages")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..eval.evaluate import (EvalSettings, EvaluationError, evaluate_folders, evaluate_model,
                                 format_table, aggregate, results_json)
    from .errors import UserError

    mode = validate_options(args)
    settings = EvalSettings(window=args.window, hop=args.hop)
    try:
        if mode == "folders":
            results = evaluate_folders(args.references, args.estimates, args.subset, settings)
        else:
            results = evaluate_model(make_separator(args), args.tracks, args.subset, settings)
    except EvaluationError as error:
        raise UserError(str(error)) from error
    if not results:
        raise UserError(f"no tracks found in {args.tracks}")
    print(format_table(aggregate(results)))
    print(f"({len(results)} track{'s' if len(results) != 1 else ''}; SDR SIR ISR SAR: median over "
          "frames then tracks; nSDR: SDX SDR, mean over tracks)")
    if args.json is not None:
        write_json(args.json, results_json(results, settings, include_frames=args.frames))
        logger.info("scores written to %s", args.json)
    return 0


def validate_options(args: argparse.Namespace) -> str:
    """``"folders"`` or ``"model"``; a :class:`UserError` for a wrong combination."""
    from .errors import UserError

    folders = args.references is not None or args.estimates is not None
    model = args.name is not None or args.tracks is not None
    if folders and model:
        raise UserError("give either --references/--estimates or -n/--tracks, not both")
    if folders and (args.references is None or args.estimates is None):
        raise UserError("--references and --estimates go together")
    if model and (args.name is None or args.tracks is None):
        raise UserError("-n MODEL and --tracks DIR go together")
    if not folders and not model:
        raise UserError("nothing to score: give --references and --estimates, or -n and --tracks")
    if args.window <= 0 or args.hop <= 0:
        raise UserError("--window and --hop must be positive")
    for path in (args.references, args.estimates, args.tracks):
        if path is not None and not path.is_dir():
            raise UserError(f"{path}: no such folder")
    return "folders" if folders else "model"


def make_separator(args: argparse.Namespace):
    from ..inference.separator import Separator

    if args.shifts < 0:
        from .errors import UserError

        raise UserError("--shifts must be 0 or more")
    return Separator(model=args.name, repo=args.repo, device=args.device, shifts=args.shifts,
                     overlap=args.overlap, segment=args.segment)


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` atomically (temporary file in the same folder, then rename)."""
    from ..atomic import atomic_path

    with atomic_path(path) as temporary, open(temporary, "w") as stream:
        json.dump(payload, stream, indent=2, allow_nan=False)
        stream.write("\n")
