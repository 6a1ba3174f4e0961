"""SDX SDR of a model vs the constant-gain baseline, per stem, on folders of tracks with true stems.

The baseline estimates each stem as the mixture times the single best gain for that stem and track
(an oracle: ``g = <s, x> / <x, x>``). A model worth shipping beats it clearly on every stem.

    python benchmarks/builtin_quality.py MODEL_FILE DIR [DIR ...] --name builtin_quality
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import markdown_table, write_results  # noqa: E402

from stemforge.audio.io import read_audio  # noqa: E402
from stemforge.eval.metrics import sdx_sdr  # noqa: E402
from stemforge.inference.separator import Separator  # noqa: E402

STEMS = ["drums", "bass", "other", "vocals"]


def track_folders(root: Path) -> list[Path]:
    if (root / "mixture.wav").exists() or (root / "mixture.flac").exists():
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def load(folder: Path, name: str) -> np.ndarray:
    path = next(p for p in (folder / f"{name}.flac", folder / f"{name}.wav") if p.exists())
    return read_audio(path)[0]


def best_gain_estimate(mix: np.ndarray, stem: np.ndarray) -> np.ndarray:
    gain = float((stem * mix).sum() / max((mix * mix).sum(), 1e-12))
    return gain * mix


def score_set(separator: Separator, root: Path) -> dict[str, dict[str, float]]:
    """Mean SDX SDR per stem over the tracks of ``root``, for the model and the baseline."""
    model_scores, base_scores = [], []
    for folder in track_folders(root):
        mix = load(folder, "mixture")
        refs = np.stack([load(folder, stem) for stem in STEMS])
        estimates = separator.separate(mix, 44100)
        model_scores.append(sdx_sdr(refs, np.stack([estimates[s] for s in STEMS])))
        base_scores.append(sdx_sdr(refs, np.stack([best_gain_estimate(mix, r) for r in refs])))
    return {"model": dict(zip(STEMS, np.mean(model_scores, 0).tolist())),
            "baseline": dict(zip(STEMS, np.mean(base_scores, 0).tolist())),
            "tracks": len(model_scores)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="model name or file")
    parser.add_argument("sets", nargs="+", type=Path, help="folders of tracks (or one track folder)")
    parser.add_argument("--name", default="builtin_quality")
    args = parser.parse_args()
    separator = Separator(args.model, device="cpu", shifts=0)
    rows, payload = [], {"model": args.model, "sets": {}}
    for root in args.sets:
        scores = score_set(separator, root)
        payload["sets"][str(root)] = scores
        for kind in ("model", "baseline"):
            values = scores[kind]
            rows.append({"set": root.name, "tracks": scores["tracks"], "estimate": kind,
                         **{s: round(values[s], 2) for s in STEMS},
                         "mean": round(float(np.mean(list(values.values()))), 2)})
    markdown = (f"# SDX SDR (dB) of {args.model} vs the constant-gain baseline\n\n"
                f"{markdown_table(rows, ['set', 'tracks', 'estimate', *STEMS, 'mean'])}\n")
    print(markdown)
    write_results(args.name, payload, markdown)


if __name__ == "__main__":
    main()
