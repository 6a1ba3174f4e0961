"""Shared fixtures: deterministic seeds and generated audio (tests never use real recordings)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.reference import official_package, save_official


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run fastest on one intra-op thread (and results do not depend on it)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def make_music(seconds: float, samplerate: int = 44100, channels: int = 2, seed: int = 0) -> np.ndarray:
    """A few seconds of stereo 'music' (decaying tones + noise bursts), ``(channels, samples)`` float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * samplerate)
    t = np.arange(n) / samplerate
    out = np.zeros((channels, n), dtype=np.float64)
    for _ in range(12):
        f = rng.uniform(50, 2000)
        start = rng.uniform(0, max(seconds - 0.5, 0.01))
        env = np.exp(-np.clip(t - start, 0, None) * rng.uniform(1, 6)) * (t >= start)
        pan = rng.uniform(0.2, 0.8)
        tone = np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28)) * env * rng.uniform(0.05, 0.2)
        out[0] += tone * pan
        out[1 % channels] += tone * (1 - pan)
    out += rng.normal(0, 0.01, size=out.shape)
    return out.astype(np.float32)


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """A folder holding ``tiny-<sha8>.th``: a small random v3 Demucs in the official format."""
    from demucs.demucs import Demucs

    folder = tmp_path_factory.mktemp("tiny_repo")
    torch.manual_seed(0)
    model = Demucs(sources=["drums", "bass", "other", "vocals"], channels=4, depth=2, segment=2)
    save_official(official_package(model), folder, "tiny")
    return folder
