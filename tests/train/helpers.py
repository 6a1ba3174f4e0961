"""Tiny generated stem folders and tiny model configs for training tests."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

SOURCES = ["drums", "bass", "other", "vocals"]
RATE = 8000


def write_song(folder: Path, seconds: float, seed: int, sources: Sequence[str] = SOURCES,
               rate: int = RATE, mixture: bool = True) -> None:
    """A song folder: one decaying tone/noise stem per source (distinct per seed) and their sum."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    folder.mkdir(parents=True, exist_ok=True)
    total = np.zeros((n, 2), dtype=np.float32)
    for i, source in enumerate(sources):
        freq = 60 * (i + 1) * rng.uniform(0.8, 1.25)
        tone = np.sin(2 * np.pi * freq * t) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        noise = rng.normal(0, 0.02, n) * (i == 0)
        stem = (0.15 * tone + noise)[:, None] * np.array([rng.uniform(0.5, 1), rng.uniform(0.5, 1)])
        stem = stem.astype(np.float32)
        sf.write(str(folder / f"{source}.flac"), stem, rate, subtype="PCM_24")
        total += sf.read(str(folder / f"{source}.flac"), dtype="float32")[0]
    if mixture:
        sf.write(str(folder / "mixture.flac"), total, rate, subtype="PCM_24")


def make_dataset(root: Path, train: int = 4, valid: int = 2, seconds: float = 2.0,
                 sources: Sequence[str] = SOURCES, rate: int = RATE) -> Path:
    for i in range(train):
        write_song(root / "train" / f"song_{i:03d}", seconds, seed=i, sources=sources, rate=rate)
    for i in range(valid):
        write_song(root / "valid" / f"song_{i:03d}", seconds, seed=1000 + i, sources=sources, rate=rate)
    return root


def tiny_htdemucs(sources: Sequence[str] = SOURCES, rate: int = RATE, segment: float = 1.0) -> dict:
    """Constructor kwargs of a very small HTDemucs."""
    return dict(sources=list(sources), samplerate=rate, segment=segment, channels=8, depth=2, nfft=256, dconv_comp=4,
                t_layers=1, t_heads=2, bottom_channels=0, dconv_depth=1)


def tiny_config(root: Path, **train) -> dict:
    """Config dict for a few fast steps on ``make_dataset(root)``."""
    values = {
        "model": {"arch": "HTDemucs", "kwargs": {k: v for k, v in tiny_htdemucs().items()
                                                 if k not in ("sources", "samplerate", "segment")}},
        "data": {"root": str(root), "samplerate": RATE, "segment": 1.0, "examples_per_epoch": 8},
        "augment": {"shift": 0.1, "repitch_prob": 0.5, "remix_group": 2},
        "optim": {"lr": 1e-3},
        "train": {"batch_size": 2, "epochs": 2, "checkpoint_minutes": 1000, "log_every": 0,
                  "threads": 1, **train},
        "valid": {"songs": 1},
    }
    return values
