"""Length and level helpers of the waveform U-Nets (``DemucsV2`` and v3 ``Demucs``)."""
from __future__ import annotations

import math

import torch


def conv_unet_valid_length(length: int, *, depth: int, kernel_size: int, stride: int,
                           resample: bool, extra_per_layer: int = 0) -> int:
    """Smallest input length >= ``length`` for which no strided convolution drops samples.

    ``depth`` unpadded ``Conv1d(kernel_size, stride)`` encoder layers are mirrored by transposed
    convolutions; ``resample`` runs them at twice the input rate. ``extra_per_layer`` samples are
    added to the length after each encoder layer (``context - 1`` for Demucs 2, whose
    ``context``-wide decoder convolutions are unpadded).
    """
    if resample:
        length *= 2
    for _ in range(depth):
        length = max(1, math.ceil((length - kernel_size) / stride) + 1)
        length += extra_per_layer
    for _ in range(depth):
        length = (length - 1) * stride + kernel_size
    if resample:
        length = math.ceil(length / 2)
    return int(length)


def standardise_by_mono(mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mix: (B, C, T)`` -> (``mix`` standardised by the mean and std of its mono downmix,
    mean ``(B, 1, 1)``, std ``(B, 1, 1)``); undo with ``x * std + mean``."""
    mono = mix.mean(dim=1, keepdim=True)
    mean = mono.mean(dim=-1, keepdim=True)
    std = mono.std(dim=-1, keepdim=True)
    return (mix - mean) / (1e-5 + std), mean, std
