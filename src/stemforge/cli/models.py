"""``stemforge models``: the named models (stems, size, licence, cached) and a ``--repo`` folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence, TextIO


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "models", help="list the pretrained models",
        description="List the named pretrained models: stems, download size, licence and whether "
                    "they are already in the cache (STEMFORGE_CACHE). Models are downloaded on "
                    "first use.")
    parser.add_argument("--repo", type=Path, help="also list the models found in this folder")
    parser.add_argument("-l", "--long", action="store_true",
                        help="show each model's card: description, architecture, files, licence")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from ..pretrained.cards import CARDS
    from ..pretrained.hub import models_dir

    out = sys.stdout if out is None else out
    cards = list(CARDS.values())
    if args.long:
        for card in cards:
            out.write(card_details(card) + "\n\n")
        for text in builtin_details():
            out.write(text + "\n\n")
    else:
        out.write(format_table(model_rows(cards) + builtin_rows()) + "\n")
    out.write(f"\ncache: {models_dir()}\n")
    if args.repo is not None:
        out.write(f"\nmodels in {args.repo}:\n{format_table(repo_rows(args.repo))}\n")
    return 0


def builtin_rows() -> list[list[str]]:
    """Rows for the models shipped inside the package (always available offline)."""
    from ..pretrained.builtin import BUILTIN_MODELS, builtin_path

    rows = []
    for model in BUILTIN_MODELS.values():
        path = builtin_path(model.name)
        if path is not None:
            rows.append([model.name, "drums,bass,other,vocals", _size(path.stat().st_size / 1e6), "built-in",
                         "MIT (stemforge's own)"])
    return rows


def builtin_details() -> list[str]:
    """The model cards stored in the built-in model files, a few lines each."""
    from ..pretrained.builtin import BUILTIN_MODELS, DEFAULT_MODEL, builtin_path
    from ..pretrained.checkpoint import read_stemforge

    texts = []
    for model in BUILTIN_MODELS.values():
        path = builtin_path(model.name)
        if path is None:
            continue
        header, _ = read_stemforge(path)
        card = header.get("meta", {})
        training = card.get("training", {})
        default = " (the default model)" if model.name == DEFAULT_MODEL else ""
        lines = [f"{model.name}{default}: {model.description}",
                 f"  architecture: {header['arch']}, {card.get('parameters', '?')} parameters",
                 f"  stems: {', '.join(header['sources'])}",
                 f"  file: {path} (built in, no download)",
                 f"  trained: {training.get('steps', '?')} steps on {card.get('data', {}).get('description', '?')}",
                 f"  licence: {card.get('licence') or model.licence}"]
        evaluation = card.get("metrics", {}).get("evaluation", {}).get("sets", {})
        for name, scores in evaluation.items():
            model_sdr = ", ".join(f"{stem} {value:.2f}" for stem, value in scores["model"].items())
            base_sdr = ", ".join(f"{stem} {value:.2f}" for stem, value in scores["baseline"].items())
            lines.append(f"  SDX SDR on {Path(name).name} ({scores['tracks']} tracks): {model_sdr} dB "
                         f"(constant-gain baseline: {base_sdr})")
        texts.append("\n".join(lines))
    return texts


def model_rows(cards: Sequence) -> list[list[str]]:
    """Table rows (with a header) for model cards."""
    from ..pretrained.hub import missing_files

    rows = [["NAME", "STEMS", "SIZE", "CACHED", "LICENCE"]]
    for card in cards:
        cached = "yes" if not missing_files(card) else "no"
        rows.append([card.name, ",".join(card.sources), _size(card.size_mb), cached,
                     card.licence_short + (" (quantized: not loadable)" if card.quantized else "")])
    return rows


def repo_rows(repo: Path) -> list[list[str]]:
    """Table rows (with a header) for the models and bags of a ``--repo`` folder."""
    from ..pretrained.repo import list_repo

    rows = [["NAME", "KIND", "SIZE", "FILE"]]
    for name, path in list_repo(repo).items():
        kind = "bag" if path.suffix == ".yaml" else "model"
        rows.append([name, kind, _size(path.stat().st_size / 1e6), path.name])
    return rows


def card_details(card) -> str:
    """A model card as a few indented lines of text."""
    from ..pretrained.hub import file_url

    lines = [f"{card.name}: {card.description}",
             f"  architecture: {card.architecture}",
             f"  stems: {', '.join(card.sources)}",
             f"  size: {_size(card.size_mb)}",
             f"  default segment: {card.default_segment} s"]
    if card.is_bag and len(card.files) > 1:
        lines.append(f"  bag of {len(card.files)} models")
    lines += [f"  file: {file_url(file)} (sha256 {file.sha256_prefix}...)" for file in card.files]
    lines.append(f"  licence: {card.licence}")
    return "\n".join(lines)


def format_table(rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


def _size(megabytes: float | None) -> str:
    if megabytes is None:
        return "?"
    return f"{megabytes / 1000:.1f} GB" if megabytes >= 1000 else f"{megabytes:.0f} MB"
