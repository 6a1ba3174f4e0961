"""Band-limited resampling by a rational factor (windowed-sinc polyphase filter).

Follows J. O. Smith's bandlimited interpolation: for each of the ``new`` output phases a
Hann-squared windowed sinc with ``zeros`` zero crossings and cutoff ``rolloff * min(old, new) / 2``
is normalised to unit DC gain, and applied as a strided convolution on the replicate-padded input.
Numerically equivalent to ``julius.resample_frac`` (which stemforge does not depend on).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch.nn import functional as F


@lru_cache(maxsize=16)
def _polyphase_kernel(old: int, new: int, zeros: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """Filters ``(new, 1, 2 * width + old)`` (float32, CPU) and the half-width ``width``."""
    cutoff = min(old, new) * rolloff
    width = math.ceil(zeros * old / cutoff)
    taps = torch.arange(-width, width + old, dtype=torch.float32)
    phases = torch.arange(new, dtype=torch.float32)[:, None]
    t = ((taps[None, :] / old - phases / new) * cutoff).clamp(-zeros, zeros) * math.pi
    window = torch.cos(t / zeros / 2) ** 2
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    kernel = sinc * window
    kernel = kernel / kernel.sum(dim=-1, keepdim=True)
    return kernel[:, None, :], width


def resample_frac(x: torch.Tensor, old_sr: int, new_sr: int, zeros: int = 24,
                  rolloff: float = 0.945) -> torch.Tensor:
    """Resample ``x: (..., T)`` from ``old_sr`` to ``new_sr`` -> ``(..., floor(T * new / old))``."""
    gcd = math.gcd(old_sr, new_sr)
    old, new = old_sr // gcd, new_sr // gcd
    if old == new:
        return x
    kernel, width = _polyphase_kernel(old, new, zeros, rolloff)
    kernel = kernel.to(x)
    *lead, length = x.shape
    padded = F.pad(x.reshape(-1, 1, length), (width, width + old), mode="replicate")
    phases = F.conv1d(padded, kernel, stride=old)  # (N, new, frames)
    out = phases.transpose(1, 2).reshape(*lead, -1)
    return out[..., : new * length // old]


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Double the sample rate of ``x: (..., T)`` -> ``(..., 2T)``."""
    return resample_frac(x, 1, 2)


def downsample2(x: torch.Tensor) -> torch.Tensor:
    """Halve the sample rate of ``x: (..., T)`` -> ``(..., T // 2)``."""
    return resample_frac(x, 2, 1)
