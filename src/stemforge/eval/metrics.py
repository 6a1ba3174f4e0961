"""Separation metrics: BSSEval v4 (museval 0.4.1 compatible) and the SDX challenge SDR.

BSSEval v4 ("images" variant, time-invariant distortion filters) works in two steps:

1. On the whole track, least-squares FIR filters (``filter_length`` taps, every channel to every
   channel) are fitted that map the references to each estimate: one set using all references
   (``all``), one using only the matching reference (``own``). The normal equations use the Gram
   matrix of delayed reference channels, which we build from short-lag cross-correlations.
2. For every frame (default 1 s windows, 1 s hop) the frame of the references is filtered with those
   filters, giving ``P_own`` (the estimate explained by its own reference) and ``P_all``. With ``s``
   the reference frame and ``e`` the estimate frame (both zero padded by ``filter_length - 1``):

   ``SDR = |s|² / |e - s|²``, ``ISR = |s|² / |P_own - s|²``,
   ``SIR = |P_own|² / |P_all - P_own|²``, ``SAR = |P_all|² / |e - P_all|²`` (all in dB).

A frame in which any reference or any estimate is silent (its channel sum is zero everywhere) gets
NaN for every source, as in museval. Everything is float64, vectorised over sources, channels and
frames: torch FFTs and batched per-bin matmuls, one Cholesky factorisation of the Gram matrix for all
estimates (museval solves one system per estimate), energies from spectra (Parseval) with numpy.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Union

import numpy as np
import torch

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, torch.Tensor]

FILTER_LENGTH = 512
"""Taps of the distortion filters (museval's ``filters_len``)."""
SDX_EPS = 1e-7
"""Added to both energies of the SDX SDR."""
METRICS = ("SDR", "SIR", "ISR", "SAR")
_FRAME_BATCH_SAMPLES = 8 * 44100
_XCORR_BLOCK_BATCH = 8


@dataclass(frozen=True)
class FrameScores:
    """BSSEval v4 scores in dB per source and frame: each field ``(S, n_frames)`` float64."""

    sdr: np.ndarray
    sir: np.ndarray
    isr: np.ndarray
    sar: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """``{"SDR": (S, n_frames), "SIR": ..., "ISR": ..., "SAR": ...}``."""
        return {"SDR": self.sdr, "SIR": self.sir, "ISR": self.isr, "SAR": self.sar}

    def medians(self) -> dict[str, np.ndarray]:
        """Track scores: median over frames ignoring NaN frames, ``{metric: (S,)}``."""
        return {name: nan_median(values) for name, values in self.as_dict().items()}


def nan_median(values: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring NaN; NaN where every value is NaN (no warning)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape[:-1], np.nan)
    valid = ~np.all(np.isnan(values), axis=-1)
    if np.any(valid):
        out[valid] = np.nanmedian(values[valid], axis=-1)
    return out


def sdx_sdr(references: ArrayLike, estimates: ArrayLike, eps: float = SDX_EPS) -> np.ndarray:
    """SDX challenge SDR per source: ``10 log10((Σs² + eps) / (Σ(s - ŝ)² + eps))``.

    ``references, estimates: (S, C, T)``; sums run over channels and time. Returns ``(S,)`` float64.
    """
    ref = _as_float64(references)
    est = _as_float64(estimates)
    _check_same_shape(ref, est)
    num = ref.square().sum(dim=(1, 2)) + eps
    den = (ref - est).square().sum(dim=(1, 2)) + eps
    return (10 * torch.log10(num / den)).numpy()


def frame_bounds(length: int, window: float, hop: float) -> list[tuple[int, int]]:
    """museval's framing: full windows only, or one frame of the whole signal if it is shorter."""
    if not window < length:
        return [(0, length)]
    count = int(np.floor((length - window + hop) / hop))
    return [(int(np.floor(i * hop)), int(np.floor(min(i * hop + window, length)))) for i in range(count)]


def bss_eval_v4(references: ArrayLike, estimates: ArrayLike, window: float = 44100, hop: float = 44100,
                filter_length: int = FILTER_LENGTH, threads: Optional[int] = None) -> FrameScores:
    """BSSEval v4 images metrics per source and frame, as ``museval.metrics.bss_eval`` computes them
    with ``framewise_filters=False, bsseval_sources_version=False, compute_permutation=False``.

    ``references, estimates: (S, C, T)`` (estimate ``j`` is scored against reference ``j``).
    ``window``/``hop`` in samples (``np.inf``: the whole track). ``threads``: torch threads used
    meanwhile (default ``None``: torch's setting, all cores — 1.7x faster than one thread on an idle
    2-core machine; on a machine busy with other work, 1 thread can be faster). Raises ``ValueError`` if a
    whole reference or estimate is silent (museval refuses those too).
    """
    ref = _as_float64(references)
    est = _as_float64(estimates)
    _check_same_shape(ref, est)
    with _torch_threads(threads):
        ref_active, est_active = _active_samples(ref), _active_samples(est)
        _check_not_silent(ref_active, "reference")
        _check_not_silent(est_active, "estimate")
        filters_all, filters_own = distortion_filters(ref, est, filter_length)
        bounds = frame_bounds(ref.shape[-1], window, hop)
        silent = _silent_frames(ref_active, bounds) | _silent_frames(est_active, bounds)
        energies = _frame_energies(ref, est, filters_all, filters_own, bounds)
    return _scores_from_energies(energies, silent)


# ---------------------------------------------------------------------------------------------
# Distortion filters (whole track)
# ---------------------------------------------------------------------------------------------

def distortion_filters(ref: torch.Tensor, est: torch.Tensor, filter_length: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares FIR filters from references to each estimate.

    ``ref, est: (S, C, T)`` float64. Returns ``all: (S_est, S_ref, C_in, C_out, L)`` (every reference
    to estimate ``j``) and ``own: (S, C_in, C_out, L)`` (reference ``j`` alone to estimate ``j``).
    """
    sources, channels, _ = ref.shape
    taps = filter_length
    corr = short_lag_xcorr(ref.reshape(sources * channels, -1),
                           torch.cat([ref, est]).reshape(2 * sources * channels, -1), taps - 1)
    ref_corr = corr[:, : sources * channels]
    est_corr = corr[:, sources * channels:]
    gram = _gram_matrix(ref_corr, taps)                                  # (S*C*L, S*C*L)
    target = _target_correlations(est_corr, taps)                        # (S*C*L, S*C)
    solved_all = _solve_normal_equations(gram, target)
    filters_all = solved_all.reshape(sources, channels, taps, sources, channels)
    filters_all = filters_all.permute(3, 0, 1, 4, 2)                     # (j, i, c_in, c_out, L)
    block = channels * taps
    own_gram = torch.stack([gram[j * block:(j + 1) * block, j * block:(j + 1) * block]
                            for j in range(sources)])
    own_target = torch.stack([target[j * block:(j + 1) * block, j * channels:(j + 1) * channels]
                              for j in range(sources)])
    solved_own = _solve_normal_equations(own_gram, own_target)         # (S, C*L, C)
    filters_own = solved_own.reshape(sources, channels, taps, channels).permute(0, 1, 3, 2)
    return filters_all, filters_own


def short_lag_xcorr(x: torch.Tensor, y: torch.Tensor, max_lag: int) -> torch.Tensor:
    """Linear cross-correlations at lags ``-max_lag..max_lag``.

    ``x: (M, T)``, ``y: (K, T)`` -> ``r: (M, K, 2*max_lag + 1)`` with
    ``r[m, k, max_lag + lag] = Σ_n x[m, n + lag] · y[k, n]`` (signals are zero outside ``[0, T)``).
    Computed blockwise in the frequency domain: ``y`` is cut into blocks of ``B`` samples, each
    correlated with the ``B + 2*max_lag`` samples of ``x`` around it; the cross-spectra are summed
    over blocks and only ``2*max_lag + 1`` lags are ever transformed back.
    """
    length = x.shape[-1]
    fft_size = _pow2_at_least(max(4 * (2 * max_lag + 1), 1024))
    block = fft_size - 2 * max_lag
    n_blocks = -(-length // block)
    spectrum = torch.zeros(fft_size // 2 + 1, x.shape[0], y.shape[0], dtype=torch.complex128)
    for first in range(0, n_blocks, _XCORR_BLOCK_BATCH):
        count = min(_XCORR_BLOCK_BATCH, n_blocks - first)
        start = first * block
        x_part = _padded_slice(x, start - max_lag, start + count * block + max_lag)
        y_part = _padded_slice(y, start, start + count * block)
        x_blocks = x_part.unfold(-1, block + 2 * max_lag, block)                 # (M, nb, B + 2 lag)
        y_blocks = y_part.reshape(y.shape[0], count, block)                      # (K, nb, B)
        xf = torch.fft.rfft(x_blocks, n=fft_size).permute(2, 0, 1).contiguous()  # (F, M, nb)
        yf = torch.fft.rfft(y_blocks, n=fft_size).conj().permute(2, 1, 0).contiguous()  # (F, nb, K)
        spectrum += torch.matmul(xf, yf)
    corr = torch.fft.irfft(spectrum.permute(1, 2, 0), n=fft_size)
    return corr[..., : 2 * max_lag + 1]


def _padded_slice(signal: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """``signal[..., start:stop]`` with zeros where the range leaves ``[0, T)``."""
    length = signal.shape[-1]
    inside = signal[..., max(start, 0):min(stop, length)]
    before, after = max(-start, 0), max(stop - length, 0)
    if before or after:
        inside = torch.nn.functional.pad(inside, (before, after))
    return inside


def _gram_matrix(ref_corr: torch.Tensor, taps: int) -> torch.Tensor:
    """Gram matrix of delayed reference channels.

    ``ref_corr: (M, M, 2L-1)`` short-lag correlations -> ``(M*L, M*L)`` with entry
    ``[(m, a), (k, b)] = <x_m delayed by a, x_k delayed by b> = r[m, k, b - a]``.
    """
    channels = ref_corr.shape[0]
    delays = torch.arange(taps)
    lag_index = delays[None, :] - delays[:, None] + taps - 1          # [a, b] -> b - a + L - 1
    blocks = ref_corr[:, :, lag_index]                                 # (M, M, L_a, L_b)
    return blocks.permute(0, 2, 1, 3).reshape(channels * taps, channels * taps)


def _target_correlations(est_corr: torch.Tensor, taps: int) -> torch.Tensor:
    """Correlations of delayed reference channels with estimate channels.

    ``est_corr: (M, K, 2L-1)`` -> ``(M*L, K)``, entry ``[(m, a), k] = <x_m delayed by a, y_k> = r[m, k, -a]``.
    """
    channels, outputs, _ = est_corr.shape
    negative_lags = est_corr[:, :, : taps].flip(-1)                    # index a -> lag -a
    return negative_lags.permute(0, 2, 1).reshape(channels * taps, outputs)


def _solve_normal_equations(gram: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Solve ``(G + eps·I) X = D`` like museval (tiny ridge, least squares if singular).

    ``gram: (..., N, N)`` symmetric, ``target: (..., N, K)``. Cholesky when ``G`` is positive
    definite; otherwise LU; otherwise least squares (museval's fallback for singular systems).
    """
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype)
    regularised = gram + np.finfo(np.float64).eps * eye
    factor, info = torch.linalg.cholesky_ex(regularised)
    if not bool(torch.any(info)):
        with _torch_threads(1):  # multi-threaded triangular solves are pathologically slow in MKL
            return torch.cholesky_solve(target, factor)
    logger.debug("Gram matrix not positive definite; using LU")
    with _torch_threads(1):
        solution, info = torch.linalg.solve_ex(regularised, target)
    if not bool(torch.any(info)):
        return solution
    logger.debug("Gram matrix singular; using least squares")
    if gram.dim() == 2:
        return _lstsq(gram, target)
    return torch.stack([_lstsq(g, d) for g, d in zip(gram, target)])


def _lstsq(gram: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """numpy's minimum-norm least squares, as museval uses for singular systems."""
    return torch.from_numpy(np.linalg.lstsq(gram.numpy(), target.numpy())[0])


@contextmanager
def _torch_threads(count: Optional[int]) -> Iterator[None]:
    """Run the block with ``count`` torch threads (``None``: unchanged), then restore."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------

@dataclass
class _Energies:
    """Per source and frame energies, each ``(S, n_frames)``."""

    target: torch.Tensor        # |s|²
    distortion: torch.Tensor    # |e - s|²
    spatial: torch.Tensor       # |P_own - s|²
    own: torch.Tensor           # |P_own|²
    interference: torch.Tensor  # |P_all - P_own|²
    projected: torch.Tensor     # |P_all|²
    artifacts: torch.Tensor     # |e - P_all|²


def _frame_energies(ref: torch.Tensor, est: torch.Tensor, filters_all: torch.Tensor,
                    filters_own: torch.Tensor, bounds: list[tuple[int, int]]) -> _Energies:
    """Energies of every frame, in small batches of frames (bounded memory, cache-friendly).

    Frames are zero padded to an FFT size of at least ``W + L - 1`` so the products of spectra are
    the linear convolutions of each frame with the filters, and the energies of the
    ``W + L - 1``-sample signals are taken from their spectra (Parseval).
    """
    taps = filters_all.shape[-1]
    sources, channels = ref.shape[:2]
    frame_length = bounds[0][1] - bounds[0][0]
    fft_size = _fast_size(frame_length + taps - 1)
    bins = fft_size // 2 + 1
    spectra_all = torch.fft.rfft(filters_all, n=fft_size)              # (j, i, c_in, c_out, F)
    spectra_own = torch.fft.rfft(filters_own, n=fft_size)              # (j, c_in, c_out, F)
    # batched matmul layouts, one (out x in) matrix per frequency bin
    h_all = spectra_all.permute(4, 0, 3, 1, 2).reshape(bins, sources * channels, sources * channels)
    h_own = spectra_own.permute(3, 0, 2, 1).contiguous()              # (F, j, c_out, c_in)
    batch_size = max(1, _FRAME_BATCH_SAMPLES // max(frame_length, 1))
    parts = []
    for first in range(0, len(bounds), batch_size):
        batch = bounds[first:first + batch_size]
        ref_spec = _frame_spectra(ref, batch, fft_size)               # (F, S, C, t)
        est_spec = _frame_spectra(est, batch, fft_size)
        parts.append(_batch_energies(ref_spec, est_spec, h_all, h_own, fft_size))
    return _Energies(*(torch.cat([getattr(p, name) for p in parts], dim=-1)
                       for name in _Energies.__dataclass_fields__))


def _frame_spectra(signal: torch.Tensor, bounds: list[tuple[int, int]], fft_size: int) -> torch.Tensor:
    """``signal: (S, C, T)`` -> spectra of its frames ``(F, S, C, t)`` (equal-length, equally spaced)."""
    width = bounds[0][1] - bounds[0][0]
    if len(bounds) == 1:
        frames = signal[..., bounds[0][0]:bounds[0][1]].unsqueeze(2)
    else:
        step = bounds[1][0] - bounds[0][0]
        frames = signal[..., bounds[0][0]:bounds[-1][1]].unfold(-1, width, step)
    return torch.fft.rfft(frames, n=fft_size).permute(3, 0, 1, 2).contiguous()


def _batch_energies(ref_spec: torch.Tensor, est_spec: torch.Tensor, h_all: torch.Tensor,
                    h_own: torch.Tensor, fft_size: int) -> _Energies:
    """Energies from frame spectra ``ref_spec, est_spec: (F, S, C, t)``.

    ``h_all: (F, S*C_out, S*C_in)`` and ``h_own: (F, S, C_out, C_in)`` are the filter spectra;
    ``P_all = h_all · R`` and ``P_own = h_own · R_j`` per bin.
    """
    bins, sources, channels, frames = ref_spec.shape
    p_all = torch.matmul(h_all, ref_spec.reshape(bins, sources * channels, frames))
    p_all = p_all.reshape(bins, sources, channels, frames).numpy()
    p_own = torch.matmul(h_own, ref_spec).numpy()                      # (F, j, c_out, t)
    r, e = ref_spec.numpy(), est_spec.numpy()

    def energy(spectrum: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(_parseval_energy(spectrum, fft_size))

    return _Energies(target=energy(r), distortion=energy(e - r), spatial=energy(p_own - r),
                     own=energy(p_own), interference=energy(p_all - p_own), projected=energy(p_all),
                     artifacts=energy(e - p_all))


def _parseval_energy(spectrum: np.ndarray, fft_size: int) -> np.ndarray:
    """Energy of real signals from their one-sided spectra ``(F, S, C, t)`` -> ``(S, t)``.

    Every bin but DC (and Nyquist, for even sizes) stands for two conjugate bins.
    """
    bins, sources, channels, frames = spectrum.shape
    parts = np.ascontiguousarray(spectrum).reshape(bins, -1).view(np.float64)  # (F, S*C*t*2)
    total = 2 * np.einsum("fk,fk->k", parts, parts) - parts[0] ** 2
    if fft_size % 2 == 0:
        total -= parts[-1] ** 2
    return total.reshape(sources, channels, frames, 2).sum(axis=(1, 3)) / fft_size


def _scores_from_energies(energies: _Energies, silent: np.ndarray) -> FrameScores:
    """dB ratios; every source of a ``silent: (n_frames,)`` frame is NaN."""
    def ratio(num: torch.Tensor, den: torch.Tensor) -> np.ndarray:
        values = _ratio_db(num.numpy(), den.numpy())
        values[:, silent] = np.nan
        return values

    return FrameScores(sdr=ratio(energies.target, energies.distortion),
                       sir=ratio(energies.own, energies.interference),
                       isr=ratio(energies.target, energies.spatial),
                       sar=ratio(energies.projected, energies.artifacts))


def _ratio_db(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``10 log10(num / den)``, ``+inf`` where ``den == 0`` (museval's ``_safe_db``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        values = 10 * np.log10(num / den)
    return np.where(den == 0, np.inf, values)


def _active_samples(signal: torch.Tensor) -> torch.Tensor:
    """``(S, T)`` True where a source's channel sum is not zero (museval's silence test)."""
    return signal.sum(dim=1) != 0


def _silent_frames(active: torch.Tensor, bounds: list[tuple[int, int]]) -> np.ndarray:
    """``(n_frames,)`` True where some source has no active sample in the whole frame."""
    starts = [start for start, _ in bounds]
    width = bounds[0][1] - bounds[0][0]
    if len(bounds) == 1 or starts[1] - starts[0] == width:             # adjacent frames: reshape
        frames = active[:, starts[0]:starts[0] + len(bounds) * width].reshape(active.shape[0], len(bounds), width)
        return (~frames.any(dim=-1)).any(dim=0).numpy()
    counts = torch.nn.functional.pad(torch.cumsum(active, dim=-1, dtype=torch.int64), (1, 0))
    stops = torch.tensor([stop for _, stop in bounds])
    per_frame = counts[:, stops] - counts[:, torch.tensor(starts)]     # (S, n_frames)
    return torch.any(per_frame == 0, dim=0).numpy()


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _as_float64(audio: ArrayLike) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(audio) if not isinstance(audio, torch.Tensor) else audio)
    tensor = tensor.detach().to("cpu", torch.float64)
    if tensor.dim() == 2:
        tensor = tensor[:, None]
    if tensor.dim() != 3:
        raise ValueError(f"expected sources as (S, C, T) (or (S, T) for mono), got shape {tuple(tensor.shape)}")
    return tensor.contiguous()


def _check_same_shape(ref: torch.Tensor, est: torch.Tensor) -> None:
    if ref.shape != est.shape:
        raise ValueError(f"references {tuple(ref.shape)} and estimates {tuple(est.shape)} differ in shape")


def _check_not_silent(active: torch.Tensor, what: str) -> None:
    silent = ~active.any(dim=-1)
    if bool(torch.any(silent)):
        index = int(torch.nonzero(silent)[0])
        raise ValueError(f"{what} source {index} is silent (all zeros): BSSEval is undefined for it")


def _pow2_at_least(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def _fast_size(n: int) -> int:
    """Smallest ``2^a 3^b 5^c >= n`` (fast FFT length)."""
    best = _pow2_at_least(n)
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best
