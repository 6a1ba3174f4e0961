"""Pure tensor/array DSP on ``(C, T)`` audio: channel conversion, normalisation, clipping.

Nothing here touches files.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

CLIP_MODES = ("rescale", "clamp", "none")


def to_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert ``wav: (C, T)`` to ``(channels, T)``.

    Mono is duplicated; more channels than asked are downmixed (mean) when asking for mono, else the
    first ``channels`` are kept, with a warning (Demucs' rule).
    """
    have = wav.shape[0]
    if have == channels:
        return wav
    if channels == 1:
        return wav.mean(dim=0, keepdim=True)
    if have == 1:
        return wav.expand(channels, -1)
    if have > channels:
        logger.warning("input has %d channels; keeping the first %d", have, channels)
        return wav[:channels]
    raise ValueError(f"cannot make {channels} channels from {have}")


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
        return wav * self.std + self.mean


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
