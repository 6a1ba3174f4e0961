"""Hybrid Demucs v3 (``HDemucs``): a spectrogram U-Net with an optional parallel waveform U-Net.

The frequency branch convolves along frequency until one bin is left, then along time. In hybrid
mode a time branch runs alongside; where both have the same stride its last conv output is
injected into the frequency branch, and the decoder splits them again symmetrically.
The spectrogram output is either complex-as-channels (``cac=True``) or a magnitude combined with
the mixture phase (``cac=False``, ``wiener_iters <= 0``).

Takes exactly the keyword arguments of the reference ``demucs.hdemucs.HDemucs`` and has the same
state-dict layout. ``forward(mix: (B, C, T)) -> (B, S, C, T)`` for any ``T``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from stemforge.models.layers.conv_blocks import rescale_module
from stemforge.models.layers.hybrid import build_hybrid_unet, pad1d
from stemforge.models.layers.spectral import (
    complex_time_major,
    istft_time_major,
    spectro,
    time_major,
)


class HDemucs(nn.Module):
    """Spectrogram / hybrid Demucs (v3). See the module docstring; arguments as in the reference."""

    def __init__(self, sources: Sequence[str], audio_channels: int = 2, channels: int = 48,
                 channels_time: int | None = None, growth: int = 2, nfft: int = 4096,
                 wiener_iters: int = 0, end_iters: int = 0, wiener_residual: bool = False,
                 cac: bool = True, depth: int = 6, rewrite: bool = True, hybrid: bool = True,
                 hybrid_old: bool = False, multi_freqs: Sequence[float] | None = None,
                 multi_freqs_depth: int = 2, freq_emb: float = 0.2, emb_scale: float = 10,
                 emb_smooth: bool = True, kernel_size: int = 8, time_stride: int = 2,
                 stride: int = 4, context: int = 1, context_enc: int = 0, norm_starts: int = 4,
                 norm_groups: int = 4, dconv_mode: int = 1, dconv_depth: int = 2,
                 dconv_comp: int = 4, dconv_attn: int = 4, dconv_lstm: int = 4,
                 dconv_init: float = 1e-4, rescale: float = 0.1, samplerate: int = 44100,
                 segment: float = 4 * 10) -> None:
        super().__init__()
        if hybrid_old and not hybrid:
            raise ValueError("hybrid_old requires hybrid=True")
        if hybrid and wiener_iters != end_iters:
            raise ValueError("hybrid models need wiener_iters == end_iters")
        self.cac = cac
        self.wiener_residual = wiener_residual
        self.audio_channels = audio_channels
        self.sources = sources
        self.kernel_size = kernel_size
        self.context = context
        self.stride = stride
        self.depth = depth
        self.channels = channels
        self.samplerate = samplerate
        self.segment = segment
        self.nfft = nfft
        self.hop_length = nfft // 4
        self.wiener_iters = wiener_iters
        self.end_iters = end_iters
        self.hybrid = hybrid
        self.hybrid_old = hybrid_old
        self.freq_emb = None

        unet = build_hybrid_unet(
            audio_channels=audio_channels, n_sources=len(sources), cac=cac, nfft=nfft,
            depth=depth, hybrid=hybrid, channels=channels, channels_time=channels_time,
            growth=growth, kernel_size=kernel_size, stride=stride, time_stride=time_stride,
            context=context, context_enc=context_enc, rewrite=rewrite, norm_starts=norm_starts,
            norm_groups=norm_groups, dconv_mode=dconv_mode, dconv_depth=dconv_depth,
            dconv_comp=dconv_comp, dconv_init=dconv_init, dconv_attn=dconv_attn,
            dconv_lstm=dconv_lstm, multi_freqs=multi_freqs, multi_freqs_depth=multi_freqs_depth,
            freq_emb=freq_emb, emb_scale=emb_scale, emb_smooth=emb_smooth)
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        if hybrid:
            self.tencoder = unet.tencoder
            self.tdecoder = unet.tdecoder
        if unet.freq_emb is not None:
            self.freq_emb = unet.freq_emb
            self.freq_emb_scale = freq_emb
        if rescale:
            rescale_module(self, reference=rescale)

    @property
    def max_segment(self) -> None:
        """HDemucs runs on inputs of any length."""
        return None

    # ------------------------------------------------------------------ spectrograms
    def _spec(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, T)`` -> complex ``(B, C, nfft / 2, frames)``.

        Hybrid models pad so that there are exactly ``ceil(T / hop)`` frames, aligned with the
        time branch (its convolutions also divide the length by their stride).
        """
        hop = self.hop_length
        if not self.hybrid:
            return spectro(x, self.nfft, hop)[..., :-1, :]
        frames = math.ceil(x.shape[-1] / hop)
        pad = hop // 2 * 3
        mode = "constant" if self.hybrid_old else "reflect"
        x = pad1d(x, (pad, pad + frames * hop - x.shape[-1]), mode=mode)
        z = spectro(x, self.nfft, hop)[..., :-1, :]
        return z[..., 2:2 + frames]

    def _ispec(self, frames: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse of :meth:`_spec` for time-major ``frames: (..., frames, nfft // 2 + 1)``
        complex (Nyquist bin included) -> ``(..., length)``. For hybrid models the two edge
        frames :meth:`_spec` dropped on each side count as zeros."""
        hop = self.hop_length
        if not self.hybrid:
            return istft_time_major(frames, hop, length)
        start = 0 if self.hybrid_old else hop // 2 * 3
        return istft_time_major(frames, hop, length, zero_frames=(2, 2), start=start)

    def _magnitude(self, z: torch.Tensor) -> torch.Tensor:
        """Network input from ``z: (B, C, F, T)``: real/imag as channels ``(B, 2C, F, T)`` (cac)
        or the magnitude ``(B, C, F, T)``."""
        if not self.cac:
            return z.abs()
        batch, channels, freqs, frames = z.shape
        parts = torch.view_as_real(z).permute(0, 1, 4, 2, 3)
        return parts.reshape(batch, channels * 2, freqs, frames)

    def _mask(self, z: torch.Tensor, m: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor
              ) -> torch.Tensor:
        """Complex source spectrograms, time-major with a zero Nyquist bin, ``(B, S, C, T, F + 1)``,
        from the normalised network output ``m: (B, S, C', F, T)`` (de-normalised as
        ``m * scale + shift``) and the mixture ``z: (B, C, F, T)``."""
        if self.cac:
            return complex_time_major(m, scale, shift)
        m = m * scale + shift
        iters = self.end_iters if self.training else self.wiener_iters
        if iters < 0:
            z = z[:, None]
            masked = z / (1e-8 + z.abs()) * m
        elif iters == 0:
            # Wiener filtering without EM iterations: magnitudes with the mixture phase.
            masked = torch.polar(m, torch.angle(z)[:, None].expand_as(m))
        else:
            raise NotImplementedError(
                "HDemucs with cac=False and wiener_iters > 0 (multichannel Wiener EM) is not "
                "supported by stemforge")
        return time_major(masked)

    # ------------------------------------------------------------------ forward
    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix: (B, C, T)`` -> stems ``(B, S, C, T)``."""
        length = mix.shape[-1]
        z = self._spec(mix)
        x = self._magnitude(z).to(mix.device)
        batch, _, freqs, frames = x.shape
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / (1e-5 + std)

        xt = meant = stdt = None
        if self.hybrid:
            meant = mix.mean(dim=(1, 2), keepdim=True)
            stdt = mix.std(dim=(1, 2), keepdim=True)
            xt = (mix - meant) / (1e-5 + stdt)

        x, xt = self._unet(x, xt)

        n_sources = len(self.sources)
        x = x.view(batch, n_sources, -1, freqs, frames)
        scale, shift = std[:, None], mean[:, None]
        device = x.device
        if device.type in ("mps", "xpu"):
            x, scale, shift = x.cpu(), scale.cpu(), shift.cpu()
        out = self._ispec(self._mask(z, x, scale, shift), length).to(device)
        if self.hybrid:  # out += xt * stdt + meant, in two passes over the stems
            out.addcmul_(xt.view(batch, n_sources, -1, length), stdt[:, None]).add_(meant[:, None])
        return out

    def _unet(self, x: torch.Tensor, xt: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run both branches. ``x: (B, C, F, T')`` normalised spectrogram, ``xt: (B, C, T)``
        normalised waveform (hybrid only). Returns the decoded spectrogram and waveform."""
        skips, lengths, skips_t, lengths_t = [], [], [], []
        n_time = len(self.tencoder) if self.hybrid else 0
        for index, encode in enumerate(self.encoder):
            lengths.append(x.shape[-1])
            inject = None
            if index < n_time:
                lengths_t.append(xt.shape[-1])
                tenc = self.tencoder[index]
                xt = tenc(xt)
                if tenc.empty:
                    inject = xt  # same shape as the frequency branch: merge here
                else:
                    skips_t.append(xt)
            x = encode(x, inject)
            if index == 0 and self.freq_emb is not None:
                bins = torch.arange(x.shape[-2], device=x.device)
                emb = self.freq_emb(bins).t()[None, :, :, None].expand_as(x)
                x = x + self.freq_emb_scale * emb
            skips.append(x)

        # the decoders start from zeros: all the signal comes through the skip connections
        x = torch.zeros_like(x)
        if self.hybrid:
            xt = torch.zeros_like(x)
        offset = self.depth - n_time
        for index, decode in enumerate(self.decoder):
            x, pre = decode(x, skips.pop(), lengths.pop())
            if index < offset:
                continue
            tdec = self.tdecoder[index - offset]
            length_t = lengths_t.pop()
            if tdec.empty:
                # branches split again: the time decoder starts from the merged features
                xt, _ = tdec(pre[:, :, 0], None, length_t)
            else:
                xt, _ = tdec(xt, skips_t.pop(), length_t)
        return x, xt
