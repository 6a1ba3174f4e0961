"""Per-stem mixing (level, EQ, compression, reverb, band-limiting) and the final mixture.

Everything applied after the stems are mixed is linear and shared (one gain), so the mixture stays
exactly the sum of the stems. Every stem, vocals included, is randomly band-limited, so bandwidth
alone never tells which stem a sound belongs to.
"""
from __future__ import annotations

import numpy as np

from . import dsp

LEVEL_DB = {"drums": (0.0, 3.0), "bass": (-1.5, 3.0), "other": (-2.0, 3.5), "vocals": (1.0, 3.0)}
REVERB_SEND = {"drums": (0.0, 0.25), "bass": (0.0, 0.06), "other": (0.05, 0.4), "vocals": (0.08, 0.45)}
TARGET_RMS_DB = -20.0


def mix_stems(stems: dict[str, np.ndarray], samplerate: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Process each ``(2, T)`` stem and scale all of them by one gain for a safe mixture peak."""
    room = dsp.reverb_impulse(rng, samplerate, float(rng.uniform(0.4, 2.6)), float(rng.uniform(0.0, 0.04)),
                              float(rng.uniform(3000.0, 12000.0)))
    song_lowpass = float(np.exp(rng.uniform(np.log(9000.0), np.log(19000.0)))) if rng.random() < 0.2 else None
    processed = {name: _process_stem(name, audio, samplerate, room, song_lowpass, rng)
                 for name, audio in stems.items()}
    return _normalise_together(processed, rng)


def _process_stem(name: str, audio: np.ndarray, samplerate: int, room: np.ndarray, song_lowpass: float | None,
                  rng: np.random.Generator) -> np.ndarray:
    audio = audio.astype(np.float64)
    if dsp.rms(audio) < 1e-6:
        return np.zeros_like(audio)
    audio = _random_eq(audio, samplerate, rng)
    if rng.random() < 0.6:
        peak_db = 20 * np.log10(float(np.abs(audio).max()) + 1e-9)
        audio = dsp.compress(audio, samplerate, peak_db - float(rng.uniform(6.0, 18.0)), float(rng.uniform(2.0, 6.0)))
    low, high = REVERB_SEND[name]
    send = float(rng.uniform(low, high))
    if send > 0.01:
        audio = audio + send * dsp.fft_convolve(audio, room)  # the room response has unit energy
    audio = _random_bandlimit(name, audio, samplerate, song_lowpass, rng)
    mean_db, spread_db = LEVEL_DB[name]
    level_db = TARGET_RMS_DB + mean_db + float(rng.normal(0.0, spread_db))
    if rng.random() < 0.08:
        level_db -= float(rng.uniform(6.0, 14.0))  # a stem far back in the mix
    return audio * (10 ** (level_db / 20) / dsp.rms(audio))


def _random_eq(audio: np.ndarray, samplerate: int, rng: np.random.Generator) -> np.ndarray:
    curve = dsp.shelf_and_peak_curve(
        low_db=float(rng.uniform(-5, 4)), low_hz=float(rng.uniform(80, 300)),
        high_db=float(rng.uniform(-6, 4)), high_hz=float(rng.uniform(3000, 9000)),
        peak_db=float(rng.uniform(-5, 5)), peak_hz=float(np.exp(rng.uniform(np.log(200), np.log(5000)))),
        peak_octaves=float(rng.uniform(0.5, 2.5)))
    return dsp.apply_gain_curve(audio, samplerate, curve)


def _random_bandlimit(name: str, audio: np.ndarray, samplerate: int, song_lowpass: float | None,
                      rng: np.random.Generator) -> np.ndarray:
    high = float(np.exp(rng.uniform(np.log(5000.0), np.log(20000.0)))) if rng.random() < 0.5 else None
    if song_lowpass is not None:
        high = song_lowpass if high is None else min(high, song_lowpass)
    low = None
    if rng.random() < 0.35:
        low = float(rng.uniform(20.0, 45.0)) if name == "bass" else float(np.exp(rng.uniform(np.log(30.0), np.log(250.0))))
    if high is None and low is None:
        return audio
    return dsp.bandlimit(audio, samplerate, low, high)


def _normalise_together(stems: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    mixture = sum(stems.values())
    peak = max(float(np.abs(mixture).max()), max(float(np.abs(s).max()) for s in stems.values()), 1e-9)
    gain = float(rng.uniform(0.5, 0.97)) / peak
    return {name: (audio * gain).astype(np.float32) for name, audio in stems.items()}
