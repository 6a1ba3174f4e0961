"""``stemforge train`` and ``stemforge export``: train or fine-tune on stem folders, export the result.

    stemforge train --config configs/builtin_small.yaml --data DIR --out RUN [--resume] [--init MODEL]
    stemforge export RUN model.safetensors

Multi-process: ``torchrun --nproc_per_node N -m stemforge.cli.main train ...``.
Standalone (before/without ``stemforge.cli.main``): ``python -m stemforge.cli.train train ...``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

logger = logging.getLogger("stemforge.train")


def add_parser(commands: argparse._SubParsersAction) -> None:
    _add_train(commands)
    _add_export(commands)


def _add_train(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train", help="train or fine-tune a model on stem folders",
        description="Train (or fine-tune) a separation model on MUSDB18-HQ-layout stem folders "
                    "(DIR/train/<song>/{mixture,drums,bass,other,vocals}.flac, DIR/valid/...).")
    parser.add_argument("--config", type=Path, help="training recipe (yaml), e.g. configs/builtin_small.yaml")
    parser.add_argument("--data", type=Path, help="dataset root (overrides data.root)")
    parser.add_argument("--out", type=Path, default=Path("runs/train"),
                        help="run folder for checkpoints and logs (default: runs/train)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--init", metavar="MODEL",
                        help="fine-tune from this model (name, .th or .safetensors path)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.batch_size=8 (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or info messages")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    parser.set_defaults(handler=run)


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export", help="export a training run as a stemforge model file",
        description="Write the best (or last) weights of a training run as a stemforge .safetensors "
                    "file with a model card (data, steps, metrics, licence).")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of stemforge train")
    parser.add_argument("output", type=Path, metavar="OUT.safetensors")
    parser.add_argument("--weights", choices=["best", "ema", "raw"], default="best",
                        help="best validated weights (default), or the last EMA / raw weights")
    parser.add_argument("--licence", help="licence of the weights (default: the config's card.licence)")
    parser.add_argument("--evaluation", type=Path, metavar="JSON",
                        help="results to add to the card's metrics (e.g. the JSON written by "
                             "benchmarks/builtin_quality.py)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no info messages")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    parser.set_defaults(handler=run_export)


def run(args: argparse.Namespace) -> int:
    from ..train import distributed
    from ..train.config import load_config
    from ..train.solver import train

    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    config = load_config(args.config, overrides)
    if not distributed.detect().is_main:
        logging.getLogger("stemforge").setLevel(logging.WARNING)
    summary = train(config, args.out, resume=args.resume, init=args.init, quiet=args.quiet)
    best = summary.get("best")
    if best:
        logger.info("step %d, best SDX SDR %.3f dB (epoch %d, %s weights)", summary["step"], best["score"],
                    best["epoch"], best["weights"])
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..train.export import export_run

    path = export_run(args.run_dir, args.output, weights=args.weights, licence=args.licence,
                      evaluation=args.evaluation)
    logger.info("wrote %s", path)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m stemforge.cli.train train|export ...``: these two subcommands on their own
    (what ``stemforge train|export`` runs once registered in :mod:`stemforge.cli.main`)."""
    from .main import configure_logging, run_guarded

    parser = argparse.ArgumentParser(prog="stemforge")
    add_parser(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    return run_guarded(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
