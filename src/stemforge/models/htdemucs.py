"""Hybrid Transformer Demucs (v4).

Two U-Nets run side by side: one on the complex spectrogram (frequency layers shrink the
frequency axis down to a single bin), one on the waveform. At the bottom, a cross-domain
transformer lets the two branches attend to each other; each decoder then produces its own
estimate and the outputs are summed (spectrogram estimate through the inverse STFT).

The constructor takes exactly the keyword arguments of ``demucs.htdemucs.HTDemucs`` (same names
and defaults) and ``state_dict()`` keys match, so official checkpoints load with ``strict=True``.

Limitations: sparse transformer attention is not implemented (official models use dense
attention); without complex-as-channels (``cac=False``) only ``wiener_iters <= 0`` (phase of the
mixture, no Wiener EM iterations) is supported.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from stemforge.models.base import Segment
from stemforge.models.layers.conv_blocks import rescale_module
from stemforge.models.layers.hybrid import ScaledEmbedding, build_hybrid_unet, pad1d
from stemforge.models.layers.spectral import (
    complex_time_major,
    istft_time_major,
    spectro,
    time_major,
)
from stemforge.models.layers.transformer import CrossTransformerEncoder

_NO_COMPLEX_DEVICES = ("mps", "xpu")


class HTDemucs(nn.Module):
    """Hybrid Transformer Demucs: ``forward(mix: (B, C, T)) -> (B, S, C, T)``.

    With ``use_train_segment`` (the default), the model only runs on inputs of the training
    length ``int(segment * samplerate)``: in eval mode shorter inputs are zero padded to it and the
    output is cut back; in training mode ``segment`` is updated to the length seen.
    See the reference docstring for the meaning of every argument.
    """

    def __init__(
        self,
        sources: Sequence[str],
        # Channels
        audio_channels: int = 2,
        channels: int = 48,
        channels_time: Optional[int] = None,
        growth: int = 2,
        # STFT
        nfft: int = 4096,
        wiener_iters: int = 0,
        end_iters: int = 0,
        wiener_residual: bool = False,
        cac: bool = True,
        # Main structure
        depth: int = 4,
        rewrite: bool = True,
        # Frequency branch
        multi_freqs: Optional[Sequence[float]] = None,
        multi_freqs_depth: int = 3,
        freq_emb: float = 0.2,
        emb_scale: float = 10,
        emb_smooth: bool = True,
        # Convolutions
        kernel_size: int = 8,
        time_stride: int = 2,
        stride: int = 4,
        context: int = 1,
        context_enc: int = 0,
        # Normalization
        norm_starts: int = 4,
        norm_groups: int = 4,
        # DConv residual branch
        dconv_mode: int = 1,
        dconv_depth: int = 2,
        dconv_comp: int = 8,
        dconv_init: float = 1e-3,
        # Before the Transformer
        bottom_channels: int = 0,
        # Transformer
        t_layers: int = 5,
        t_emb: str = "sin",
        t_hidden_scale: float = 4.0,
        t_heads: int = 8,
        t_dropout: float = 0.0,
        t_max_positions: int = 10000,
        t_norm_in: bool = True,
        t_norm_in_group: bool = False,
        t_group_norm: bool = False,
        t_norm_first: bool = True,
        t_norm_out: bool = True,
        t_max_period: float = 10000.0,
        t_weight_decay: float = 0.0,
        t_lr: Optional[float] = None,
        t_layer_scale: bool = True,
        t_gelu: bool = True,
        t_weight_pos_embed: float = 1.0,
        t_sin_random_shift: int = 0,
        t_cape_mean_normalize: bool = True,
        t_cape_augment: bool = True,
        t_cape_glob_loc_scale: Sequence[float] = [5000.0, 1.0, 1.4],  # noqa: B006 (reference API)
        t_sparse_self_attn: bool = False,
        t_sparse_cross_attn: bool = False,
        t_mask_type: str = "diag",
        t_mask_random_seed: int = 42,
        t_sparse_attn_window: int = 500,
        t_global_window: int = 100,
        t_sparsity: float = 0.95,
        t_auto_sparsity: bool = False,
        # Particular parameters
        t_cross_first: bool = False,
        # Weight init
        rescale: float = 0.1,
        # Metadata
        samplerate: int = 44100,
        segment: Segment = 10,
        use_train_segment: bool = True,
    ) -> None:
        super().__init__()
        if wiener_iters != end_iters:
            raise ValueError(f"wiener_iters ({wiener_iters}) must equal end_iters ({end_iters})")
        if not cac and wiener_iters > 0:
            raise NotImplementedError(
                "Wiener filtering iterations (cac=False, wiener_iters > 0) are not supported; "
                "use cac=True or wiener_iters <= 0")
        self.cac = cac
        self.wiener_residual = wiener_residual
        self.audio_channels = audio_channels
        self.sources = list(sources)
        self.kernel_size = kernel_size
        self.context = context
        self.stride = stride
        self.depth = depth
        self.bottom_channels = bottom_channels
        self.channels = channels
        self.samplerate = samplerate
        self.segment = segment
        self.use_train_segment = use_train_segment
        self.nfft = nfft
        self.hop_length = nfft // 4
        self.wiener_iters = wiener_iters
        self.end_iters = end_iters
        # Memory layout of the U-Net activations; the fast bf16 mode switches both to channels
        # last (what oneDNN's bf16 convolutions want), the exact path keeps them contiguous.
        self.channels_last = False

        self.freq_emb: Optional[ScaledEmbedding] = None
        self.freq_emb_scale = freq_emb
        unet = build_hybrid_unet(
            audio_channels=audio_channels, n_sources=len(self.sources), cac=cac, nfft=nfft,
            depth=depth, hybrid=True, channels=channels, channels_time=channels_time,
            growth=growth, kernel_size=kernel_size, stride=stride, time_stride=time_stride,
            context=context, context_enc=context_enc, rewrite=rewrite, norm_starts=norm_starts,
            norm_groups=norm_groups, dconv_mode=dconv_mode, dconv_depth=dconv_depth,
            dconv_comp=dconv_comp, dconv_init=dconv_init, multi_freqs=multi_freqs,
            multi_freqs_depth=multi_freqs_depth, freq_emb=freq_emb, emb_scale=emb_scale,
            emb_smooth=emb_smooth)
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.tencoder = unet.tencoder
        self.tdecoder = unet.tdecoder
        if unet.freq_emb is not None:
            self.freq_emb = unet.freq_emb
        if rescale:
            rescale_module(self, reference=rescale)

        dim = channels * growth ** (depth - 1)
        if bottom_channels:
            self.channel_upsampler = nn.Conv1d(dim, bottom_channels, 1)
            self.channel_downsampler = nn.Conv1d(bottom_channels, dim, 1)
            self.channel_upsampler_t = nn.Conv1d(dim, bottom_channels, 1)
            self.channel_downsampler_t = nn.Conv1d(bottom_channels, dim, 1)
            dim = bottom_channels

        self.crosstransformer: Optional[CrossTransformerEncoder] = None
        if t_layers > 0:
            self.crosstransformer = CrossTransformerEncoder(
                dim=dim, emb=t_emb, hidden_scale=t_hidden_scale, num_heads=t_heads,
                num_layers=t_layers, cross_first=t_cross_first, dropout=t_dropout,
                max_positions=t_max_positions, norm_in=t_norm_in, norm_in_group=t_norm_in_group,
                group_norm=t_group_norm, norm_first=t_norm_first, norm_out=t_norm_out,
                max_period=t_max_period, weight_decay=t_weight_decay, lr=t_lr,
                layer_scale=t_layer_scale, gelu=t_gelu, sin_random_shift=t_sin_random_shift,
                weight_pos_embed=t_weight_pos_embed, cape_mean_normalize=t_cape_mean_normalize,
                cape_augment=t_cape_augment, cape_glob_loc_scale=t_cape_glob_loc_scale,
                sparse_self_attn=t_sparse_self_attn, sparse_cross_attn=t_sparse_cross_attn,
                mask_type=t_mask_type, mask_random_seed=t_mask_random_seed,
                sparse_attn_window=t_sparse_attn_window, global_window=t_global_window,
                sparsity=t_sparsity, auto_sparsity=t_auto_sparsity)

    # ----------------------------------------------------------------------------------------
    # Public attributes
    # ----------------------------------------------------------------------------------------

    @property
    def max_segment(self) -> float:
        """The model cannot run on inputs longer than its training segment (seconds)."""
        return float(self.segment)

    def _training_length(self) -> int:
        return int(self.segment * self.samplerate)

    def valid_length(self, length: int) -> int:
        """Input length to feed for ``length`` samples: the training length (or ``length``
        itself without ``use_train_segment``). Raises ``ValueError`` if ``length`` is longer."""
        if not self.use_train_segment:
            return length
        training_length = self._training_length()
        if training_length < length:
            raise ValueError(
                f"Given length {length} is longer than training length {training_length}")
        return training_length

    # ----------------------------------------------------------------------------------------
    # Spectrogram helpers
    # ----------------------------------------------------------------------------------------

    def _spec(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, T)`` -> complex ``(B, C, nfft // 2, ceil(T / hop))``.

        The signal is reflect padded so that frame ``i`` is centred on sample ``(i + 1/2) * hop``
        and the frame count is exactly ``ceil(T / hop)``; the Nyquist bin is dropped.
        """
        hop = self.hop_length
        frames = math.ceil(x.shape[-1] / hop)
        pad = hop // 2 * 3
        x = pad1d(x, (pad, pad + frames * hop - x.shape[-1]), mode="reflect")
        z = spectro(x, self.nfft, hop)[..., :-1, :]
        return z[..., 2:2 + frames]

    def _ispec(self, frames: torch.Tensor, length: int) -> torch.Tensor:
        """Inverse of :meth:`_spec` for time-major ``frames: (..., frames, nfft // 2 + 1)``
        complex (Nyquist bin included) -> ``(..., length)``. The two edge frames :meth:`_spec`
        dropped on each side count as zeros."""
        hop = self.hop_length
        pad = hop // 2 * 3
        return istft_time_major(frames, hop, length, zero_frames=(2, 2), start=pad)

    def _magnitude(self, z: torch.Tensor) -> torch.Tensor:
        """Network input from ``z: (B, C, F, T)`` complex: real/imag as channels
        ``(B, 2C, F, T)`` with ``cac``, else the magnitude ``(B, C, F, T)``."""
        if not self.cac:
            return z.abs()
        b, c, fr, t = z.shape
        return torch.view_as_real(z).permute(0, 1, 4, 2, 3).reshape(b, c * 2, fr, t)

    def _mask(self, z: torch.Tensor, m: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor
              ) -> torch.Tensor:
        """Complex source spectrograms, time-major with a zero Nyquist bin, ``(B, S, C, T, F + 1)``,
        from the normalised network output ``m: (B, S, C', F, T)`` (de-normalised as
        ``m * scale + shift``) and the mixture ``z: (B, C, F, T)``."""
        if self.cac:
            return complex_time_major(m, scale, shift)
        m = m * scale + shift
        niters = self.end_iters if self.training else self.wiener_iters
        z = z[:, None]
        if niters < 0:
            masked = z / (1e-8 + z.abs()) * m
        else:  # niters == 0: Wiener filtering without iterations keeps the mixture phase.
            masked = torch.polar(m, torch.angle(z))
        return time_major(masked)

    # ----------------------------------------------------------------------------------------
    # Forward
    # ----------------------------------------------------------------------------------------

    def _fit_to_training_length(self, mix: torch.Tensor) -> torch.Tensor:
        """Apply ``use_train_segment``: record the segment (training) or pad to it (eval)."""
        if not self.use_train_segment:
            return mix
        if self.training:
            self.segment = Fraction(mix.shape[-1], self.samplerate)
            return mix
        training_length = self._training_length()
        if mix.shape[-1] > training_length:
            raise ValueError(f"input of {mix.shape[-1]} samples is longer than the training "
                             f"length {training_length} (segment={float(self.segment)} s)")
        return F.pad(mix, (0, training_length - mix.shape[-1]))

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``mix: (B, C, T)`` -> ``(B, S, C, T)`` stems."""
        original_length = mix.shape[-1]
        mix = self._fit_to_training_length(mix)
        length = mix.shape[-1]

        z = self._spec(mix)
        x = self._magnitude(z).to(mix.device)
        batch, _, freqs, frames = x.shape
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / (1e-5 + std)
        meant = mix.mean(dim=(1, 2), keepdim=True)
        stdt = mix.std(dim=(1, 2), keepdim=True)
        xt = (mix - meant) / (1e-5 + stdt)

        if self.channels_last:
            x, xt = x.contiguous(memory_format=torch.channels_last), _channels_last_1d(xt)
        x, xt = self._unet(x, xt)
        if self.channels_last:  # one pass back to float32 rows (the masking permutes them)
            x = x.to(torch.float32, memory_format=torch.contiguous_format)

        n_sources = len(self.sources)
        x = x.reshape(batch, n_sources, -1, freqs, frames)
        out = self._spectral_output(z, x, length, std[:, None], mean[:, None])
        # out += xt * stdt + meant, in two passes over the stems instead of three
        out.addcmul_(xt.reshape(batch, n_sources, -1, length), stdt[:, None]).add_(meant[:, None])
        return out[..., :original_length]

    def _spectral_output(self, z: torch.Tensor, x: torch.Tensor, length: int,
                         scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(B, S, C, length)`` of the spectrogram branch output ``x`` (normalised:
        the spectrogram is ``x * scale + shift``)."""
        device = x.device
        if device.type in _NO_COMPLEX_DEVICES:
            x, scale, shift = x.cpu(), scale.cpu(), shift.cpu()
        return self._ispec(self._mask(z, x, scale, shift), length).to(device)

    def _unet(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run both branches: ``x: (B, C', F, T')`` normalised spectrogram, ``xt: (B, C, T)``
        normalised waveform -> ``(B, S * C', F, T')`` and ``(B, S * C, T)``."""
        saved, saved_t, lengths, lengths_t = [], [], [], []
        for idx, encode in enumerate(self.encoder):
            lengths.append(x.shape[-1])
            inject = None
            if idx < len(self.tencoder):
                lengths_t.append(xt.shape[-1])
                tenc = self.tencoder[idx]
                xt = tenc(xt)
                if tenc.empty:  # time branch now has the frequency branch's shape: merge
                    inject = xt
                else:
                    saved_t.append(xt)
            x = encode(x, inject)
            if idx == 0 and self.freq_emb is not None:
                x = x + self.freq_emb_scale * self._frequency_embedding(x)
            saved.append(x)

        x, xt = self._bottleneck(x, xt)

        offset = self.depth - len(self.tdecoder)
        for idx, decode in enumerate(self.decoder):
            x, pre = decode(x, saved.pop(-1), lengths.pop(-1))
            if idx < offset:
                continue
            tdec = self.tdecoder[idx - offset]
            if tdec.empty:  # branches split again: the time decoder starts from `pre`
                xt, _ = tdec(pre[:, :, 0], None, lengths_t.pop(-1))
            else:
                xt, _ = tdec(xt, saved_t.pop(-1), lengths_t.pop(-1))
        return x, xt

    def _frequency_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Learnt embedding of the frequency index, broadcast to ``x: (B, C, F, T)``."""
        assert self.freq_emb is not None
        emb = self.freq_emb(torch.arange(x.shape[-2], device=x.device))  # (F, C)
        return emb.t()[None, :, :, None].expand_as(x)

    def _bottleneck(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross transformer (with optional channel change around it).

        ``x: (B, C, F, T)``, ``xt: (B, C, T2)`` -> same shapes.
        """
        if self.crosstransformer is None:
            return x, xt
        if self.bottom_channels:
            x = self._pointwise_2d(self.channel_upsampler, x)
            xt = self.channel_upsampler_t(xt)
        x, xt = self.crosstransformer(x, xt)
        if self.bottom_channels:
            x = self._pointwise_2d(self.channel_downsampler, x)
            xt = self.channel_downsampler_t(xt)
        return x, xt

    @staticmethod
    def _pointwise_2d(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Apply a 1x1 ``Conv1d`` to ``x: (B, C, F, T)`` by flattening ``F`` and ``T``."""
        b, c, fr, t = x.shape
        return conv(x.reshape(b, c, fr * t)).view(b, -1, fr, t)


def _channels_last_1d(x: torch.Tensor) -> torch.Tensor:
    """``x: (B, C, T)`` with channels as the fastest axis (strides ``(T * C, 1, C)``)."""
    return x.transpose(1, 2).contiguous().transpose(1, 2)
