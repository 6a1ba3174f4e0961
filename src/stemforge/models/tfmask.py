"""TF-mask U-Net: a small spectrogram-masking separator for laptop CPUs (stemforge's own design).

The mixture's STFT magnitude goes through a convolutional U-Net that shrinks the frequency axis
(never time), with a dilated temporal convolution stack at the bottom for a few seconds of context.
The head predicts, for every stem, channel, frequency bin and frame, a logit; a softmax over stems
turns them into ratio masks that sum to one, so the stems always add up to the mixture. Each stem is
its mask times the complex mixture STFT, brought back with the inverse STFT (mixture phase).

Masking learns much faster than waveform or complex-spectrogram regression, which matters for a
model trained on CPU. The model is length-agnostic (no ``max_segment``): ``segment`` only sets the
chunk the inference engine feeds it.

Shapes: ``forward(mix: (B, C, T)) -> (B, S, C, T)``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from stemforge.models.layers.spectral import ispectro, spectro


class TimeBlock(nn.Module):
    """Residual context along time on ``x: (B, ch, F, N)``: depthwise temporal conv + pointwise mix."""

    def __init__(self, channels: int, kernel: int = 5, dilation: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, (1, kernel), padding=(0, dilation * (kernel // 2)),
                                   dilation=(1, dilation), groups=channels)
        self.norm = nn.GroupNorm(1, channels)
        self.pointwise = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pointwise(F.gelu(self.norm(self.depthwise(x))))


class Bottleneck(nn.Module):
    """Dilated 1-D convolutions over frames on the flattened ``(ch * F)`` features of each frame."""

    def __init__(self, features: int, hidden: int, layers: int, kernel: int = 3):
        super().__init__()
        self.inp = nn.Conv1d(features, hidden, 1)
        self.layers = nn.ModuleList()
        for index in range(layers):
            dilation = 2 ** index
            self.layers.append(nn.Sequential(
                nn.Conv1d(hidden, hidden, kernel, padding=dilation * (kernel // 2), dilation=dilation),
                nn.GroupNorm(1, hidden),
                nn.GELU(),
                nn.Conv1d(hidden, hidden, 1),
            ))
        self.out = nn.Conv1d(hidden, features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, ch, F, N)`` -> same shape (residual)."""
        batch, channels, freqs, frames = x.shape
        y = self.inp(x.reshape(batch, channels * freqs, frames))
        for layer in self.layers:
            y = y + layer(y)
        return x + self.out(y).view(batch, channels, freqs, frames)


class TFMaskUNet(nn.Module):
    """Ratio-mask U-Net on the magnitude spectrogram.

    Args:
        sources: stem names, in output order.
        audio_channels: channels of the mixture and of each stem.
        samplerate: working rate in Hz.
        segment: seconds per chunk at inference.
        nfft: STFT size (hop ``nfft // 4``); the Nyquist bin shares the mask of the bin below.
        channels: channels of each encoder level (the frequency axis shrinks by ``strides``).
        strides: frequency stride of each encoder level (kernel ``2 * stride``); their product
            must divide ``nfft // 2``.
        head_channels: channels of the full-resolution head.
        bottleneck_hidden: width of the temporal stack at the bottom.
        bottleneck_layers: dilated layers at the bottom (dilations 1, 2, 4, ...).
        time_kernel: kernel of the per-level temporal blocks.
    """

    def __init__(
        self,
        sources: Sequence[str],
        audio_channels: int = 2,
        samplerate: int = 44100,
        segment: float = 8.0,
        nfft: int = 2048,
        channels: Sequence[int] = (16, 32, 64, 128),
        strides: Sequence[int] = (2, 4, 4, 4),
        head_channels: int = 16,
        bottleneck_hidden: int = 256,
        bottleneck_layers: int = 6,
        time_kernel: int = 5,
    ):
        super().__init__()
        if len(channels) != len(strides) or not channels:
            raise ValueError("channels and strides must be non-empty and of the same length")
        bins = nfft // 2
        total_stride = 1
        for stride in strides:
            total_stride *= stride
        if bins % total_stride:
            raise ValueError(f"the product of strides ({total_stride}) must divide nfft // 2 ({bins})")
        self.sources = list(sources)
        self.audio_channels = audio_channels
        self.samplerate = samplerate
        self.segment = segment
        self.nfft = nfft
        self.hop_length = nfft // 4

        in_channels = audio_channels + 1  # log magnitudes + a frequency coordinate
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        previous = in_channels
        for index, (width, stride) in enumerate(zip(channels, strides)):
            self.encoder.append(nn.Sequential(
                nn.Conv2d(previous, width, (2 * stride, 1), (stride, 1), padding=(stride // 2, 0)),
                nn.GroupNorm(1, width),
                nn.GELU(),
                TimeBlock(width, time_kernel),
            ))
            target = head_channels if index == 0 else channels[index - 1]
            self.decoder.insert(0, nn.Sequential(
                TimeBlock(width, time_kernel),
                nn.ConvTranspose2d(width, target, (2 * stride, 1), (stride, 1), padding=(stride // 2, 0)),
                nn.GroupNorm(1, target),
                nn.GELU(),
            ))
            previous = width
        self.bottleneck = Bottleneck(channels[-1] * (bins // total_stride), bottleneck_hidden,
                                     bottleneck_layers)
        self.head = nn.Sequential(
            nn.Conv2d(head_channels + in_channels, head_channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(head_channels, len(self.sources) * audio_channels, 1),
        )

    @property
    def max_segment(self) -> None:
        return None

    def features(self, magnitude: torch.Tensor) -> torch.Tensor:
        """``magnitude: (B, C, F, N)`` (Nyquist bin dropped) -> ``(B, C + 1, F, N)`` network input.

        Log-compressed magnitudes relative to the example's mean magnitude (scale-invariant), plus
        a channel holding the bin's position in [-1, 1] so that convolutions know the frequency.
        """
        batch, _, freqs, frames = magnitude.shape
        scale = magnitude.mean(dim=(1, 2, 3), keepdim=True) + 1e-8
        logmag = torch.log1p(magnitude / scale)
        position = torch.linspace(-1, 1, freqs, device=magnitude.device, dtype=magnitude.dtype)
        position = position.view(1, 1, freqs, 1).expand(batch, 1, freqs, frames)
        return torch.cat([logmag, position], dim=1)

    def masks(self, magnitude: torch.Tensor) -> torch.Tensor:
        """``magnitude: (B, C, F, N)`` -> ratio masks ``(B, S, C, F, N)`` summing to one over S."""
        x = inputs = self.features(magnitude)
        skips = []
        for layer in self.encoder:
            x = layer(x)
            skips.append(x)
        x = self.bottleneck(x)
        for layer in self.decoder:
            x = layer(x + skips.pop())
        logits = self.head(torch.cat([x, inputs], dim=1))
        batch, _, freqs, frames = logits.shape
        logits = logits.view(batch, len(self.sources), self.audio_channels, freqs, frames)
        return torch.softmax(logits, dim=1)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix: (B, C, T)`` -> stems ``(B, S, C, T)``."""
        length = mix.shape[-1]
        spec = spectro(mix, self.nfft, self.hop_length)  # (B, C, F + 1, N) complex
        masks = self.masks(spec[:, :, :-1].abs())
        masks = torch.cat([masks, masks[..., -1:, :]], dim=-2)  # Nyquist bin: same as the bin below
        stems = masks * spec.unsqueeze(1)
        return ispectro(stems, self.hop_length, length)
