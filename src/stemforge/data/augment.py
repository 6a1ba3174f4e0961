"""Training augmentations as batch modules on stems ``(B, S, C, T)``.

Each module draws its randomness from torch's global generator (on the batch's device), so a
training run is repeatable from the saved RNG state. All are identity in eval mode except
:class:`Shift`, which then crops without moving (a fixed output length either way), and
:class:`Repitch`, which then only crops to its output length.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


def _uniform(shape: Sequence[int], low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(*shape, device=device) * (high - low) + low


def _coin(shape: Sequence[int], prob: float, device: torch.device) -> torch.Tensor:
    """Boolean tensor, True with probability ``prob``."""
    return torch.rand(*shape, device=device) < prob


class Shift(nn.Module):
    """Random crop of ``T - shift`` frames, independently per example and source
    (``same=True``: the same offset for every source of an example). ``(B, S, C, T) -> (B, S, C, T - shift)``."""

    def __init__(self, shift: int, same: bool = False):
        super().__init__()
        self.shift = int(shift)
        self.same = same

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if self.shift <= 0:
            return wav
        batch, sources, channels, length = wav.shape
        out_length = length - self.shift
        if not self.training:
            return wav[..., :out_length]
        offsets = torch.randint(self.shift, (batch, 1 if self.same else sources, 1, 1), device=wav.device)
        index = offsets.expand(batch, sources, channels, 1) + torch.arange(out_length, device=wav.device)
        return wav.gather(-1, index)


class FlipChannels(nn.Module):
    """Swap left and right of each (example, source) with probability 1/2 (stereo only)."""

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if not self.training or wav.shape[2] != 2:
            return wav
        batch, sources = wav.shape[:2]
        left = torch.randint(2, (batch, sources, 1, 1), device=wav.device)
        index = torch.cat([left, 1 - left], dim=2).expand(-1, -1, -1, wav.shape[-1])
        return wav.gather(2, index)


class FlipSign(nn.Module):
    """Multiply each (example, source) by -1 with probability 1/2."""

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return wav
        batch, sources = wav.shape[:2]
        signs = torch.randint(2, (batch, sources, 1, 1), device=wav.device, dtype=wav.dtype)
        return wav * (2 * signs - 1)


class Scale(nn.Module):
    """With probability ``prob`` multiply each (example, source) by a gain in ``[low, high]``."""

    def __init__(self, prob: float = 1.0, low: float = 0.25, high: float = 1.25):
        super().__init__()
        self.prob = prob
        self.low = low
        self.high = high

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if not self.training or self.prob <= 0:
            return wav
        batch, sources = wav.shape[:2]
        gains = _uniform((batch, sources, 1, 1), self.low, self.high, wav.device).to(wav.dtype)
        apply = _coin((batch, sources, 1, 1), self.prob, wav.device)
        return wav * torch.where(apply, gains, torch.ones_like(gains))


class Remix(nn.Module):
    """With probability ``prob``, shuffle each source across the examples of a group of
    ``group_size`` (new mixtures from the same stems). The batch size must be a multiple of it
    (otherwise the largest group dividing the batch is used)."""

    def __init__(self, prob: float = 1.0, group_size: int = 4):
        super().__init__()
        self.prob = prob
        self.group_size = group_size

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        batch, sources = wav.shape[:2]
        group = math.gcd(batch, max(1, self.group_size))
        if not self.training or self.prob <= 0 or group < 2:
            return wav
        if float(torch.rand(())) >= self.prob:
            return wav
        groups = batch // group
        # for each (group, source) a random permutation of the group's examples
        perm = torch.rand(groups, group, sources, device=wav.device).argsort(dim=1)
        example = perm + torch.arange(groups, device=wav.device)[:, None, None] * group
        example = example.reshape(batch, sources)
        return wav[example, torch.arange(sources, device=wav.device)[None, :]]


class Repitch(nn.Module):
    """Pitch and tempo together, cheaply: with probability ``prob`` an example (all its sources
    alike) is resampled by ``2 ** (k / 12)`` for ``k`` uniform in ``[-semitones, semitones]``
    (like playing a tape faster or slower), then every example is cropped to ``out_length``.

    ``(B, S, C, T) -> (B, S, C, out_length)`` with ``out_length = floor(T / 2 ** (semitones / 12))``
    so that a sped-up example still fills it. Linear interpolation: cheap, slightly aliasing.
    """

    def __init__(self, prob: float = 0.2, semitones: float = 2.0):
        super().__init__()
        self.prob = prob
        self.semitones = semitones

    @staticmethod
    def output_length(length: int, semitones: float) -> int:
        return int(length / 2 ** (semitones / 12))

    @staticmethod
    def input_length(out_length: int, semitones: float) -> int:
        """Frames to load so that the output has ``out_length`` frames."""
        return math.ceil(out_length * 2 ** (semitones / 12)) + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        out_length = self.output_length(wav.shape[-1], self.semitones)
        if not self.training or self.prob <= 0 or self.semitones <= 0:
            return wav[..., :out_length]
        batch = wav.shape[0]
        steps = _uniform((batch,), -self.semitones, self.semitones, wav.device)
        apply = _coin((batch,), self.prob, wav.device)
        out = []
        for example, step, use in zip(wav, steps.tolist(), apply.tolist()):
            out.append(self._resample(example, 2 ** (step / 12), out_length) if use
                       else example[..., :out_length])
        return torch.stack(out)

    @staticmethod
    def _resample(example: torch.Tensor, ratio: float, out_length: int) -> torch.Tensor:
        """``example: (S, C, T)`` read ``ratio`` times faster -> ``(S, C, out_length)``."""
        sources, channels, length = example.shape
        new_length = max(out_length, int(length / ratio))
        flat = example.reshape(1, sources * channels, length)
        resampled = F.interpolate(flat, size=new_length, mode="linear", align_corners=False)
        return resampled[..., :out_length].reshape(sources, channels, out_length)


def build_augment(shift: int = 0, flip_channels: bool = True, flip_sign: bool = True,
                  scale_prob: float = 1.0, scale_low: float = 0.25, scale_high: float = 1.25,
                  remix_prob: float = 1.0, remix_group: int = 4, repitch_prob: float = 0.0,
                  repitch_semitones: float = 2.0) -> nn.Sequential:
    """The Demucs augmentation chain: repitch, shift, channel swap, sign flip, remix, gain."""
    modules: list[nn.Module] = []
    if repitch_prob > 0:
        modules.append(Repitch(repitch_prob, repitch_semitones))
    if shift > 0:
        modules.append(Shift(shift))
    if flip_channels:
        modules.append(FlipChannels())
    if flip_sign:
        modules.append(FlipSign())
    if remix_prob > 0:
        modules.append(Remix(remix_prob, remix_group))
    if scale_prob > 0:
        modules.append(Scale(scale_prob, scale_low, scale_high))
    return nn.Sequential(*modules)
