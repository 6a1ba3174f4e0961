"""Pure numpy DSP for the synthesiser: zero-phase FFT filters, reverb, compression, panning.

All signals are float arrays shaped ``(channels, samples)`` or ``(samples,)``; filtering acts on the
last axis. Whole-signal FFT filtering is fine here: songs are a few seconds long.
"""
from __future__ import annotations

import numpy as np


def _next_fast_length(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size


def apply_gain_curve(x: np.ndarray, samplerate: int, curve) -> np.ndarray:
    """Zero-phase filter: multiply the spectrum by ``curve(freqs_hz) -> linear gain``.

    ``x: (..., T)`` -> ``(..., T)``. The signal is zero-padded to limit circular wrap-around.
    """
    length = x.shape[-1]
    size = _next_fast_length(length + 2048)
    spectrum = np.fft.rfft(x, n=size, axis=-1)
    freqs = np.fft.rfftfreq(size, 1.0 / samplerate)
    spectrum *= curve(freqs)
    return np.fft.irfft(spectrum, n=size, axis=-1)[..., :length].astype(x.dtype, copy=False)


def lowpass_curve(cutoff: float, order: float = 4.0):
    """Butterworth-like magnitude response."""
    return lambda f: 1.0 / np.sqrt(1.0 + (f / cutoff) ** (2 * order))


def highpass_curve(cutoff: float, order: float = 2.0):
    return lambda f: 1.0 / np.sqrt(1.0 + (cutoff / np.maximum(f, 1e-3)) ** (2 * order))


def shelf_and_peak_curve(low_db: float, low_hz: float, high_db: float, high_hz: float,
                         peak_db: float, peak_hz: float, peak_octaves: float):
    """A smooth EQ: low shelf, high shelf and one bell, all in dB on a log-frequency axis."""
    def curve(f: np.ndarray) -> np.ndarray:
        logf = np.log2(np.maximum(f, 1.0))
        low = low_db / (1.0 + np.exp(4.0 * (logf - np.log2(low_hz))))
        high = high_db / (1.0 + np.exp(-4.0 * (logf - np.log2(high_hz))))
        peak = peak_db * np.exp(-0.5 * ((logf - np.log2(peak_hz)) / max(peak_octaves / 2, 0.1)) ** 2)
        return 10.0 ** ((low + high + peak) / 20.0)
    return curve


def bandlimit(x: np.ndarray, samplerate: int, low_hz: float | None, high_hz: float | None) -> np.ndarray:
    def curve(f: np.ndarray) -> np.ndarray:
        gain = np.ones_like(f)
        if high_hz is not None:
            gain = gain * lowpass_curve(high_hz, 8.0)(f)
        if low_hz is not None:
            gain = gain * highpass_curve(low_hz, 2.0)(f)
        return gain
    return apply_gain_curve(x, samplerate, curve)


def fft_convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Linear convolution along the last axis, cut to ``x``'s length. ``kernel`` broadcasts."""
    length = x.shape[-1]
    size = _next_fast_length(length + kernel.shape[-1])
    out = np.fft.irfft(np.fft.rfft(x, size, axis=-1) * np.fft.rfft(kernel, size, axis=-1), size, axis=-1)
    return out[..., :length]


def reverb_impulse(rng: np.random.Generator, samplerate: int, decay_seconds: float,
                   predelay: float, brightness_hz: float) -> np.ndarray:
    """A stereo room response: decorrelated exponentially decaying noise, darker as it decays.

    Returns ``(2, N)``, normalised to unit energy per channel.
    """
    n = int(samplerate * min(decay_seconds * 1.2, 3.5))
    t = np.arange(n) / samplerate
    noise = rng.standard_normal((2, n))
    envelope = np.exp(-6.9 * t / decay_seconds)  # -60 dB at decay_seconds
    early = apply_gain_curve(noise * envelope, samplerate, lowpass_curve(brightness_hz, 1.0))
    late = apply_gain_curve(noise * envelope, samplerate, lowpass_curve(brightness_hz / 3, 1.0))
    blend = np.clip(t / max(decay_seconds, 1e-3), 0.0, 1.0)
    impulse = early * (1 - blend) + late * blend
    impulse = np.concatenate([np.zeros((2, int(predelay * samplerate))), impulse], axis=1)
    return impulse / np.sqrt((impulse ** 2).sum(axis=1, keepdims=True) + 1e-12)


def envelope(x: np.ndarray, samplerate: int, window_seconds: float = 0.01) -> np.ndarray:
    """RMS envelope of ``x: (C, T)`` (max over channels), ``(T,)``, by frames then interpolation."""
    mono = np.max(np.abs(x), axis=0) if x.ndim == 2 else np.abs(x)
    hop = max(int(samplerate * window_seconds), 1)
    frames = int(np.ceil(mono.shape[-1] / hop))
    padded = np.pad(mono, (0, frames * hop - mono.shape[-1]))
    rms = np.sqrt((padded.reshape(frames, hop) ** 2).mean(axis=1) + 1e-12)
    centres = np.arange(frames) * hop + hop / 2
    return np.interp(np.arange(mono.shape[-1]), centres, rms)


def compress(x: np.ndarray, samplerate: int, threshold_db: float, ratio: float,
             attack: float = 0.005, release: float = 0.08) -> np.ndarray:
    """Downward compressor with a smoothed gain computer; ``x: (C, T)`` -> same shape."""
    level_db = 20 * np.log10(envelope(x, samplerate, 0.005) + 1e-9)
    over = np.maximum(level_db - threshold_db, 0.0)
    gain_db = -over * (1.0 - 1.0 / ratio)
    gain_db = _smooth_gain(gain_db, samplerate, attack, release)
    return x * 10.0 ** (gain_db / 20.0)


def _smooth_gain(gain_db: np.ndarray, samplerate: int, attack: float, release: float) -> np.ndarray:
    """Attack/release smoothing done on a 1 ms frame grid (vectorised enough for Python)."""
    hop = max(samplerate // 1000, 1)
    coarse = gain_db[::hop]
    out = np.empty_like(coarse)
    state = 0.0
    a_att = np.exp(-1.0 / (attack * 1000))
    a_rel = np.exp(-1.0 / (release * 1000))
    for i, target in enumerate(coarse):
        coef = a_att if target < state else a_rel
        state = coef * state + (1 - coef) * target
        out[i] = state
    return np.interp(np.arange(gain_db.shape[0]), np.arange(coarse.shape[0]) * hop, out)


def pan_mono(x: np.ndarray, pan: float) -> np.ndarray:
    """Constant-power pan of ``x: (T,)`` to ``(2, T)``; ``pan`` in [-1 (left), 1 (right)]."""
    angle = (pan + 1.0) * np.pi / 4.0
    return np.stack([x * np.cos(angle), x * np.sin(angle)]) * np.sqrt(2.0)


def balance(x: np.ndarray, pan: float) -> np.ndarray:
    """Stereo balance of ``x: (2, T)``: attenuate the opposite side only."""
    left = min(1.0, 1.0 - pan)
    right = min(1.0, 1.0 + pan)
    return x * np.array([[left], [right]])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))
