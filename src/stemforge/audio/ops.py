"""Pure array/tensor DSP on ``(C, T)`` audio: channel conversion, normalisation, clipping.

Nothing here touches files.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)

CLIP_MODES = ("rescale", "clamp", "none")


def channels_of(block: np.ndarray, channels: int) -> np.ndarray:
    """``block: (C, n)`` -> ``(channels, n)``: mono duplicated, extra channels downmixed."""
    have = block.shape[0]
    if have == channels:
        return block
    if channels == 1:
        return block.mean(axis=0, keepdims=True)
    if have == 1:
        return np.repeat(block, channels, axis=0)
    if channels == 2:
        return downmix_to_stereo(block)
    return block[:channels]


def downmix_to_stereo(block: np.ndarray) -> np.ndarray:
    """Multichannel ``(C, n)`` to stereo: even channels averaged to the left,
    odd channels to the right (so 5.1/7.1 front pairs stay on their side)."""
    left = block[0::2].sum(axis=0)
    right = block[1::2].sum(axis=0)
    scale = 1.0 / max(math.ceil(block.shape[0] / 2), 1)
    return np.stack([left, right]) * scale


@dataclass(frozen=True)
class Normalisation:
    """Whole-track statistics Demucs normalises by: mean and std of the mono mix."""

    mean: float
    std: float

    @classmethod
    def of(cls, wav: torch.Tensor) -> "Normalisation":
        """Statistics of ``wav: (C, T)`` (unbiased std, plus 1e-8 as Demucs does)."""
        mono = wav.mean(0)
        std = float(mono.std()) if mono.numel() > 1 else 0.0
        return cls(float(mono.mean()), std + 1e-8)

    def apply(self, wav: torch.Tensor) -> torch.Tensor:
        return (wav - self.mean) / self.std

    def invert(self, wav: torch.Tensor) -> torch.Tensor:
        return self.invert_(wav.clone())

    def invert_(self, wav: torch.Tensor) -> torch.Tensor:
        """:meth:`invert` in place; returns ``wav``."""
        return wav.mul_(self.std).add_(self.mean)


def prevent_clip(wav: torch.Tensor, mode: str = "rescale") -> torch.Tensor:
    """Avoid clipping in ``wav: (..., T)``: ``rescale`` scales the whole signal down if it peaks
    above 1 (to 1/1.01 of full scale), ``clamp`` hard-clips to +-0.99, ``none`` leaves it."""
    if mode == "none":
        return wav
    if mode == "rescale":
        return wav / max(1.01 * float(wav.abs().max()), 1.0)
    if mode == "clamp":
        return wav.clamp(-0.99, 0.99)
    raise ValueError(f"unknown clip mode {mode!r} (choose from {', '.join(CLIP_MODES)})")
