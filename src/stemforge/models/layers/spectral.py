"""STFT helpers with the conventions of the Demucs hybrid models.

``spectro``: normalised, centred STFT with a Hann window of ``n_fft`` samples (reflect padding).
``ispectro``: its inverse. Both accept any leading dimensions. Devices without complex support
(MPS, XPU) compute on the CPU.
"""
from __future__ import annotations

import torch

_NO_COMPLEX_DEVICES = ("mps", "xpu")


def _complex_capable(x: torch.Tensor) -> torch.Tensor:
    return x.cpu() if x.device.type in _NO_COMPLEX_DEVICES else x


def spectro(x: torch.Tensor, n_fft: int = 512, hop_length: int | None = None,
            pad: int = 0) -> torch.Tensor:
    """Complex STFT of ``x: (..., T)`` -> ``(..., n_fft * (1 + pad) // 2 + 1, frames)``.

    ``pad`` zero-pads each frame to ``n_fft * (1 + pad)`` FFT points.
    """
    *lead, length = x.shape
    flat = _complex_capable(x.reshape(-1, length))
    spec = torch.stft(
        flat,
        n_fft * (1 + pad),
        hop_length or n_fft // 4,
        window=torch.hann_window(n_fft).to(flat),
        win_length=n_fft,
        normalized=True,
        center=True,
        return_complex=True,
        pad_mode="reflect",
    )
    return spec.view(*lead, spec.shape[-2], spec.shape[-1])


def ispectro(z: torch.Tensor, hop_length: int | None = None, length: int | None = None,
             pad: int = 0) -> torch.Tensor:
    """Inverse of :func:`spectro`: ``z: (..., F, frames)`` complex -> ``(..., T)``."""
    *lead, freqs, frames = z.shape
    n_fft = 2 * freqs - 2
    win_length = n_fft // (1 + pad)
    flat = _complex_capable(z.reshape(-1, freqs, frames))
    wave = torch.istft(
        flat,
        n_fft,
        hop_length,
        window=torch.hann_window(win_length).to(flat.real),
        win_length=win_length,
        normalized=True,
        length=length,
        center=True,
    )
    return wave.view(*lead, wave.shape[-1])
