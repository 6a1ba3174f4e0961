"""BSSEval v4 against museval 0.4.1 itself, on generated reference/estimate pairs of several kinds,
plus the SDX SDR and the helpers checked by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stemforge.eval.metrics import (FrameScores, bss_eval_v4, frame_bounds, nan_median, sdx_sdr,
                                    short_lag_xcorr)
from tests.eval.museval_oracle import load_museval_metrics, museval_frames

RATE = 44100
WINDOW = RATE // 4          # short frames keep the tests fast; one case uses museval's 1 s default
TOLERANCE_DB = 0.01

museval_metrics = load_museval_metrics()
needs_museval = pytest.mark.skipif(museval_metrics is None, reason="museval 0.4.1 not installed (test extra)")


def music(rng: np.random.Generator, sources: int, seconds: float, channels: int = 2) -> np.ndarray:
    """``(S, C, T)`` float64: decaying tones with random pans over a little noise, per source."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros((sources, channels, n))
    for source in range(sources):
        for _ in range(6):
            start = rng.uniform(0, seconds)
            envelope = np.exp(-np.clip(t - start, 0, None) * rng.uniform(1, 5)) * (t >= start)
            tone = np.sin(2 * np.pi * rng.uniform(40, 4000) * t + rng.uniform(0, 6.3)) * envelope
            pan = rng.uniform(0.1, 0.9)
            out[source, 0] += pan * tone
            out[source, 1 % channels] += (1 - pan) * tone
        out[source] += 0.01 * rng.standard_normal((channels, n))
    return out


def filtered(signal: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """``signal: (C, T)`` through the FIR ``taps`` (same length out)."""
    return np.stack([np.convolve(channel, taps)[: signal.shape[-1]] for channel in signal])


def noisy(rng, ref, level):
    return ref + level * rng.standard_normal(ref.shape)


def case_noisy(rng):
    ref = music(rng, 2, 1.5)
    return ref, np.stack([noisy(rng, ref[0], 0.05), noisy(rng, ref[1], 0.3)]), WINDOW, WINDOW


def case_scaled(rng):
    ref = music(rng, 2, 1.5)
    return ref, np.stack([noisy(rng, 0.5 * ref[0], 1e-3), noisy(rng, -2.0 * ref[1], 1e-3)]), WINDOW, WINDOW


def case_filtered(rng):
    ref = music(rng, 2, 1.5)
    short = rng.standard_normal(64) * np.exp(-np.arange(64) / 10)
    long = rng.standard_normal(2000) * np.exp(-np.arange(2000) / 600)   # longer than the 512 taps
    first = filtered(ref[0], short)
    first = first + 0.2 * first[::-1]                                   # channel crosstalk
    second = filtered(ref[1], long / np.abs(long).sum())
    return ref, np.stack([noisy(rng, first, 0.01), noisy(rng, second, 0.01)]), WINDOW, WINDOW


def case_leakage(rng):
    ref = music(rng, 3, 1.5)
    est = np.stack([ref[0] + 0.4 * ref[1], ref[1] + 0.2 * ref[0] + 0.1 * ref[2], ref[2] + 0.5 * ref[0]])
    return ref, noisy(rng, est, 0.02), WINDOW, WINDOW


def case_silent_frames(rng):
    """Frame 1: a silent reference; frame 5: a silent estimate; frame 6: a reference whose channels
    cancel (museval tests the channel sum); frame 3: a reference silent for part of the frame."""
    ref = music(rng, 2, 2.0)
    ref[1, :, WINDOW:2 * WINDOW] = 0
    ref[0, :, 3 * WINDOW:3 * WINDOW + WINDOW // 2] = 0
    ref[1, 1, 6 * WINDOW:7 * WINDOW] = -ref[1, 0, 6 * WINDOW:7 * WINDOW]
    est = noisy(rng, ref, 0.1)
    est[0, :, 5 * WINDOW:6 * WINDOW] = 0
    return ref, est, WINDOW, WINDOW


def case_overlapping_frames(rng):
    ref = music(rng, 2, 1.2)
    est = noisy(rng, ref + 0.1 * ref[::-1], 0.05)
    return ref, est, RATE // 5, RATE // 10


def case_single_frame(rng):
    ref = music(rng, 2, 0.8)
    return ref, noisy(rng, ref, 0.1), math.inf, math.inf


def case_mono_duplicated(rng):
    """A stem with identical channels makes the Gram matrix singular."""
    ref = music(rng, 2, 1.0)
    ref[0, 1] = ref[0, 0]
    return ref, noisy(rng, ref, 0.1), WINDOW, WINDOW


CASES = [case_noisy, case_scaled, case_filtered, case_leakage, case_silent_frames,
         case_overlapping_frames, case_single_frame,
         # singular Gram matrix: both sides fall back to least squares (an SVD), ~15 s of museval
         pytest.param(case_mono_duplicated, marks=pytest.mark.slow)]


def assert_matches_museval(ours: FrameScores, expected: dict[str, np.ndarray]) -> float:
    worst = 0.0
    for metric, want in expected.items():
        got = ours.as_dict()[metric]
        assert got.shape == want.shape, metric
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{metric}: NaN frames differ")
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=f"{metric}: inf frames differ")
        finite = np.isfinite(want)
        if finite.any():
            worst = max(worst, float(np.max(np.abs(got[finite] - want[finite]))))
    assert worst <= TOLERANCE_DB, f"max difference {worst:.3g} dB"
    return worst


@needs_museval
@pytest.mark.parametrize("case", CASES, ids=lambda case: getattr(case, "__name__", "")[5:])
def test_matches_museval(case):
    ref, est, window, hop = case(np.random.default_rng(sum(map(ord, case.__name__))))
    expected = museval_frames(museval_metrics, ref, est, window, hop)
    ours = bss_eval_v4(ref, est, window=window, hop=hop)
    assert_matches_museval(ours, expected)


@needs_museval
def test_silent_frames_are_nan_for_every_source():
    ref, est, window, hop = case_silent_frames(np.random.default_rng(0))
    scores = bss_eval_v4(ref, est, window=window, hop=hop)
    nan_frames = np.nonzero(np.isnan(scores.sdr).all(axis=0))[0].tolist()
    assert nan_frames == [1, 5, 6]
    assert not np.isnan(scores.sdr[:, 3]).any()


@needs_museval
def test_four_stems_default_window():
    """museval's defaults: 4 stems, 1 s windows and hops, 512 taps; float32 input as from a model."""
    rng = np.random.default_rng(4)
    ref = music(rng, 4, 2.3).astype(np.float32)
    est = (ref + 0.3 * ref[[1, 2, 3, 0]] + 0.05 * rng.standard_normal(ref.shape)).astype(np.float32)
    expected = museval_frames(museval_metrics, ref, est, RATE, RATE)
    ours = bss_eval_v4(torch.from_numpy(ref), torch.from_numpy(est))
    assert ours.sdr.shape == (4, 2)
    assert_matches_museval(ours, expected)


def test_sdx_sdr_by_hand():
    ref = np.array([[[1.0, 2.0, 0.0, -1.0]], [[0.5, 0.5, 0.5, 0.5]]])
    est = np.array([[[1.0, 1.0, 0.0, -1.0]], [[0.0, 0.0, 0.0, 0.0]]])
    expected = [10 * math.log10((6 + 1e-7) / (1 + 1e-7)), 10 * math.log10((1 + 1e-7) / (1 + 1e-7))]
    np.testing.assert_allclose(sdx_sdr(ref, est), expected, rtol=0, atol=1e-12)
    assert sdx_sdr(ref, ref)[0] == pytest.approx(10 * math.log10((6 + 1e-7) / 1e-7))


def test_sdx_sdr_matches_demucs_definition():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((4, 2, 1000))
    est = ref + 0.3 * rng.standard_normal(ref.shape)
    num = np.sum(ref ** 2, axis=(1, 2)) + 1e-7
    den = np.sum((ref - est) ** 2, axis=(1, 2)) + 1e-7
    np.testing.assert_allclose(sdx_sdr(ref, est), 10 * np.log10(num / den), rtol=1e-12)


@pytest.mark.parametrize("length, window, hop", [(10, 4, 4), (12, 4, 4), (11, 4, 2), (3, 4, 4),
                                                 (100, 30, 15), (7, math.inf, math.inf)])
def test_frame_bounds_like_museval(length, window, hop):
    if museval_metrics is None:
        pytest.skip("museval not installed")
    framer = museval_metrics.Framing(window, hop, length)
    expected = [(frame.start, frame.stop) for frame in framer]
    assert frame_bounds(length, window, hop) == expected


def test_short_lag_xcorr_against_numpy():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3000))
    y = rng.standard_normal((3, 3000))
    corr = short_lag_xcorr(torch.from_numpy(x), torch.from_numpy(y), 40).numpy()
    for m in range(2):
        for k in range(3):
            full = np.correlate(x[m], y[k], mode="full")            # lag -(T-1)..(T-1)
            middle = len(full) // 2
            np.testing.assert_allclose(corr[m, k], full[middle - 40: middle + 41], atol=1e-9)


def test_medians_ignore_nan_frames():
    values = np.array([[1.0, np.nan, 3.0, 10.0], [np.nan, np.nan, np.nan, np.nan]])
    np.testing.assert_array_equal(nan_median(values), [3.0, np.nan])
    scores = FrameScores(values, values, values, values)
    assert scores.medians()["SDR"][0] == 3.0


def test_silent_source_is_refused():
    ref = np.ones((2, 2, 1000))
    ref[1] = 0
    with pytest.raises(ValueError, match="reference source 1 is silent"):
        bss_eval_v4(ref, ref + 0.1)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        bss_eval_v4(np.ones((2, 2, 1000)), np.ones((2, 2, 900)))
