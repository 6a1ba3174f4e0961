"""SDX SDR of a model vs the constant-gain baseline, per stem, on folders of tracks with true stems.

Tracks whose reference stem is silent (peak below -80 dBFS) are left out of that stem's mean: the
SDR of a silent reference is undefined (the SDX formula gives about -90 dB for any non-zero estimate
and 0 dB for silence, so one such track would decide the mean); museval likewise skips silent frames.

The baseline estimates each stem as the mixture times the single best gain for that stem and track
(an oracle: ``g = <s, x> / <x, x>``). A model worth shipping beats it clearly on every stem.

    python benchmarks/builtin_quality.py MODEL_FILE DIR [DIR ...] --name builtin_quality

With ``--rtf-seconds N`` it also times ``stemforge separate`` (the CLI, decode to encode, default
settings) on an N-second song made by chaining the first set's mixtures: wall time / duration.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
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


SILENT_PEAK = 1e-4


def score_set(separator: Separator, root: Path) -> dict[str, dict[str, float]]:
    """Mean SDX SDR per stem over the tracks of ``root`` (silent references left out), for the
    model and the baseline."""
    model_scores, base_scores, audible = [], [], []
    for folder in track_folders(root):
        mix = load(folder, "mixture")
        refs = np.stack([load(folder, stem) for stem in STEMS])
        estimates = separator.separate(mix, 44100)
        model_scores.append(sdx_sdr(refs, np.stack([estimates[s] for s in STEMS])))
        base_scores.append(sdx_sdr(refs, np.stack([best_gain_estimate(mix, r) for r in refs])))
        audible.append(np.abs(refs).reshape(len(STEMS), -1).max(axis=1) >= SILENT_PEAK)
    keep = np.array(audible)

    def means(scores: list[np.ndarray]) -> dict[str, float]:
        values = np.array(scores)
        return {stem: float(values[keep[:, i], i].mean()) for i, stem in enumerate(STEMS)}

    return {"model": means(model_scores), "baseline": means(base_scores), "tracks": len(model_scores),
            "silent_references_left_out": {stem: int((~keep[:, i]).sum()) for i, stem in enumerate(STEMS)},
            "model_including_silent": dict(zip(STEMS, np.mean(model_scores, 0).tolist()))}


def time_cli(model: str, root: Path, seconds: float) -> dict[str, float]:
    """Wall time of ``stemforge separate -n model`` on ``seconds`` of chained mixtures."""
    import soundfile

    pieces, total = [], 0
    while total < seconds * 44100:
        for folder in track_folders(root):
            pieces.append(load(folder, "mixture"))
            total += pieces[-1].shape[-1]
    song = np.concatenate(pieces, axis=-1)[:, : int(seconds * 44100)]
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "song.wav"
        soundfile.write(str(path), song.T, 44100, subtype="PCM_16")
        command = [sys.executable, "-m", "stemforge", "separate", "-q", "-n", model, "-o", work, str(path)]
        start = time.perf_counter()
        subprocess.run(command, check=True, env=dict(os.environ))
        wall = time.perf_counter() - start
    return {"seconds": seconds, "wall": round(wall, 2), "rtf": round(wall / seconds, 4),
            "cores": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="model name or file")
    parser.add_argument("sets", nargs="+", type=Path, help="folders of tracks (or one track folder)")
    parser.add_argument("--name", default="builtin_quality")
    parser.add_argument("--rtf-seconds", type=float, default=0,
                        help="also time the CLI on a song of this length (0: skip)")
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
    left_out = "; ".join(f"{Path(root).name}: " + ", ".join(f"{stem} {count}" for stem, count in
                                                          scores["silent_references_left_out"].items() if count)
                         for root, scores in payload["sets"].items()
                         if any(scores["silent_references_left_out"].values()))
    markdown = (f"# SDX SDR (dB) of {args.model} vs the constant-gain baseline\n\n"
                f"{markdown_table(rows, ['set', 'tracks', 'estimate', *STEMS, 'mean'])}\n\n"
                f"Tracks with a silent reference stem left out of that stem's mean: {left_out or 'none'}.\n")
    if args.rtf_seconds > 0:
        payload["cli_speed"] = speed = time_cli(args.model, args.sets[0], args.rtf_seconds)
        markdown += (f"\n`stemforge separate -n {args.model}` on {speed['seconds']:.0f} s: "
                     f"{speed['wall']:.1f} s wall, RTF {speed['rtf']:.3f} ({speed['cores']} cores)\n")
    print(markdown)
    write_results(args.name, payload, markdown)


if __name__ == "__main__":
    main()
