"""Demucs v3 waveform model (time-domain U-Net with DConv residual branches).

``Demucs(sources, ...)`` takes exactly the keyword arguments of the reference
``demucs.demucs.Demucs`` and has the same state-dict layout, so official checkpoints load with
``strict=True``.
``forward(mix: (B, C, T)) -> (B, S, C, T)``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from stemforge.models.layers.conv_blocks import BLSTM, DConv, rescale_module
from stemforge.models.layers.resample import downsample2, upsample2
from stemforge.models.layers.utils import center_trim, unet_pass
from stemforge.models.layers.waveform import conv_unet_valid_length, standardise_by_mono


class Demucs(nn.Module):
    """Waveform Demucs: ``depth`` strided conv encoder layers, an optional BLSTM, mirrored decoder.

    Key options: ``channels``/``growth`` (width), ``rewrite``/``glu`` (1x1 conv + GLU per layer),
    ``dconv_mode`` (1: DConv in encoder, 2: decoder, 3: both), ``dconv_attn``/``dconv_lstm``
    (first layer index using attention/LSTM inside DConv), ``normalize`` (standardise the input by
    its mono mean/std and undo it on the output), ``resample`` (run the network at 2x the rate).
    """

    def __init__(self, sources: Sequence[str], audio_channels: int = 2, channels: int = 64,
                 growth: float = 2.0, depth: int = 6, rewrite: bool = True, lstm_layers: int = 0,
                 kernel_size: int = 8, stride: int = 4, context: int = 1, gelu: bool = True,
                 glu: bool = True, norm_starts: int = 4, norm_groups: int = 4,
                 dconv_mode: int = 1, dconv_depth: int = 2, dconv_comp: int = 4,
                 dconv_attn: int = 4, dconv_lstm: int = 4, dconv_init: float = 1e-4,
                 normalize: bool = True, resample: bool = True, rescale: float = 0.1,
                 samplerate: int = 44100, segment: float = 4 * 10) -> None:
        super().__init__()
        self.audio_channels = audio_channels
        self.sources = sources
        self.kernel_size = kernel_size
        self.context = context
        self.stride = stride
        self.depth = depth
        self.resample = resample
        self.channels = channels
        self.normalize = normalize
        self.samplerate = samplerate
        self.segment = segment
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()

        def dconv(dim: int, index: int) -> DConv:
            return DConv(dim, depth=dconv_depth, init=dconv_init, compress=dconv_comp,
                         attn=index >= dconv_attn, lstm=index >= dconv_lstm)

        def gate() -> nn.Module:
            """Activation after the 1x1 'rewrite' conv (GLU halves its doubled channels)."""
            return nn.GLU(dim=1) if glu else nn.ReLU()

        scale = 2 if glu else 1
        act: Callable[[], nn.Module] = nn.GELU if gelu else nn.ReLU
        chin = audio_channels
        chout = channels
        for index in range(depth):
            def norm(dim: int, index: int = index) -> nn.Module:
                return nn.GroupNorm(norm_groups, dim) if index >= norm_starts else nn.Identity()

            enc: list[nn.Module] = [nn.Conv1d(chin, chout, kernel_size, stride), norm(chout), act()]
            if dconv_mode & 1:
                enc.append(dconv(chout, index))
            if rewrite:
                enc += [nn.Conv1d(chout, scale * chout, 1), norm(scale * chout), gate()]
            self.encoder.append(nn.Sequential(*enc))

            dec_out = chin if index > 0 else len(sources) * audio_channels
            dec: list[nn.Module] = []
            if rewrite:
                dec += [nn.Conv1d(chout, scale * chout, 2 * context + 1, padding=context),
                        norm(scale * chout), gate()]
            if dconv_mode & 2:
                dec.append(dconv(chout, index))
            dec.append(nn.ConvTranspose1d(chout, dec_out, kernel_size, stride))
            if index > 0:
                dec += [norm(dec_out), act()]
            self.decoder.insert(0, nn.Sequential(*dec))
            chin = chout
            chout = int(growth * chout)

        self.lstm = BLSTM(chin, lstm_layers) if lstm_layers else None
        if rescale:
            rescale_module(self, reference=rescale)

    @property
    def max_segment(self) -> None:
        """Demucs runs on inputs of any length."""
        return None

    def valid_length(self, length: int) -> int:
        """Smallest input length >= ``length`` for which no convolution drops samples."""
        return conv_unet_valid_length(length, depth=self.depth, kernel_size=self.kernel_size,
                                      stride=self.stride, resample=self.resample)

    def _standardise(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float,
                                                        torch.Tensor | float]:
        """``mix: (B, C, T)`` -> (normalised mix, mean ``(B, 1, 1)``, std ``(B, 1, 1)``)."""
        if not self.normalize:
            return mix, 0.0, 1.0
        return standardise_by_mono(mix)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix: (B, C, T)`` -> stems ``(B, S, C, T)``."""
        length = mix.shape[-1]
        x, mean, std = self._standardise(mix)
        missing = self.valid_length(length) - length
        x = F.pad(x, (missing // 2, missing - missing // 2))
        if self.resample:
            x = upsample2(x)

        x = unet_pass(x, self.encoder, self.decoder, self.lstm)

        if self.resample:
            x = downsample2(x)
        x = center_trim(x * std + mean, length)
        return x.view(x.shape[0], len(self.sources), self.audio_channels, x.shape[-1])

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also accept first-generation v3 checkpoints, whose rewrite conv sat at index 2."""
        state = dict(state_dict)
        for index in range(self.depth):
            for part in ("encoder", "decoder"):
                for name in ("weight", "bias"):
                    old, new = f"{part}.{index}.2.{name}", f"{part}.{index}.3.{name}"
                    if old in state and new not in state:
                        state[new] = state.pop(old)
        return super().load_state_dict(state, strict=strict, assign=assign)
